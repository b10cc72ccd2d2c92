package runc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/runc/libcontainer/exeseal"
	"golang.org/x/sys/unix"
)

// leanInitName is the lean container init, cmd/kolejka-runc-init; it must
// match LEAN_INIT_NAME in hop.go.
const leanInitName = "kolejka-runc-init"

// defaultLeanInit is kolejka-runc-init beside the running executable, or ""
// when there is none (a test binary): then containers start through the
// running binary's own init, as libcontainer does by itself.
func defaultLeanInit() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), leanInitName)
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	return p
}

// UseLeanInit makes every later container start its init from the binary
// at path (kolejka-runc-init, built from the same tree as the running
// binary), handed over in `<self> init` before the running binary's own
// start-up (hop.go). Without it, the runtime does this with
// kolejka-runc-init beside the running executable when there is one, from
// its first container on (sealedLeanInit). It must not be called while
// containers start.
//
// The binary is sealed once, here, as libcontainer seals the running
// binary for each container: what the container's processes could reach
// through /proc/<pid>/exe while its init runs is a read-only overlay of
// the binary (or, where overlayfs cannot be mounted so, a sealed memfd
// copy), never the host's file, so no task can overwrite it. The sealed
// file cannot change after this, so every container may share it.
func (r *Runtime) UseLeanInit(path string) error {
	f, err := sealLeanInit(path, r.stateRoot)
	if err != nil {
		return fmt.Errorf("unable to seal the container init %s: %w", path, err)
	}
	r.leanOnce.Do(func() {}) // the default is not wanted any more
	if r.leanInit != nil {
		r.leanInit.Close()
	}
	r.leanInit, r.leanErr = f, nil
	return nil
}

// sealedLeanInit returns the sealed lean init containers start with, or nil
// for none: the one UseLeanInit set, else kolejka-runc-init beside the
// running executable, sealed on the first call (so that commands that
// start no container, such as `kolejka-worker image ls`, do not seal it).
func (r *Runtime) sealedLeanInit() (*os.File, error) {
	r.leanOnce.Do(func() {
		if r.leanPath == "" {
			return
		}
		f, err := sealLeanInit(r.leanPath, r.stateRoot)
		if err != nil {
			r.leanErr = fmt.Errorf("unable to seal the container init %s: %w", r.leanPath, err)
			return
		}
		r.leanInit = f
	})
	return r.leanInit, r.leanErr
}

// sealLeanInit returns a sealed handle of the binary at path: an O_PATH
// descriptor of it in a private read-only overlay mount of its folder
// (libcontainer's exeseal way, which copies nothing), or else a sealed
// memfd copy (exeseal.CloneBinary). dummy is an empty-enough folder for the
// overlay's second lower layer, which overlayfs needs to refuse all writes.
func sealLeanInit(path, dummy string) (*os.File, error) {
	if filepath.Base(path) != leanInitName {
		// hop.go recognises the descriptor by this name.
		return nil, fmt.Errorf("the container init must be called %s", leanInitName)
	}
	if f, err := sealedOverlay(path, dummy); err == nil {
		return f, nil
	}
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return nil, err
	}
	return exeseal.CloneBinary(src, fi.Size(), leanInitName, dummy)
}

// sealedOverlay mounts path's folder, with dummy below it, as a detached
// read-only "lower-only" overlay (no upper layer: overlayfs refuses every
// write) and opens path in it; the mount lives as long as the descriptor.
func sealedOverlay(path, dummy string) (*os.File, error) {
	abs, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	dir, name := filepath.Split(abs)
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fsfd)
	lower := escapeLowerDir(dir) + ":" + escapeLowerDir(dummy)
	if err := unix.FsconfigSetString(fsfd, "lowerdir", lower); err != nil {
		return nil, fmt.Errorf("lowerdir=%s: %w", lower, err)
	}
	_ = unix.FsconfigSetString(fsfd, "xino", "off") // only to keep dmesg quiet, as exeseal does
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, err
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSUID)
	if err != nil {
		return nil, err
	}
	defer unix.Close(mfd)
	fd, err := unix.Openat(mfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, errors.New("not a regular file in the overlay")
	}
	return os.NewFile(uintptr(fd), abs), nil
}

// escapeLowerDir escapes what overlayfs's lowerdir option treats as
// separators.
func escapeLowerDir(p string) string {
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(p)
}
