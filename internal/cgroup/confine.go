package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// confinedEnv marks a process that Confine has re-executed.
const confinedEnv = "KOLEJKA_CGROUP_CONFINED"

// Confine keeps a program that runs in a delegated v2 group (see
// delegation.go) from touching the hierarchy above it, whatever library
// does the touching. libcontainer, which the runc runtime embeds, creates a
// container's group by writing every controller the kernel has into the
// cgroup.subtree_control of every group from the root of /sys/fs/cgroup
// down, which in a delegated sub-tree would rewrite the system manager's
// groups. So Confine re-executes the program in a mount namespace of its
// own where /sys/fs/cgroup is the delegated group: everything below it, and
// nothing above, is reachable there, and paths like /kolejka are inside the
// delegation. Before that, the program's processes leave the delegated
// group itself for its sub-group "supervisor", as systemd starts a service
// in its group and v2 gives controllers to sub-groups only of a group
// without processes. Mounts made afterwards stay in the namespace (the host
// sees them only through the program's children); mounts of the host still
// reach the program.
//
// It does nothing on v1, outside a delegation, or once done; otherwise it
// does not return unless it fails. Call it first thing in main (after the
// runc runtime's init hook), before the program starts anything.
func Confine() error {
	if os.Getenv(confinedEnv) != "" {
		return nil
	}
	h, err := Host()
	if errors.Is(err, ErrUnsupported) {
		return nil // no cgroups at all: nothing to confine
	}
	if err != nil {
		// A mount table we cannot read may hide a delegation: running
		// unconfined there could rewrite the system manager's groups.
		return fmt.Errorf("unable to confine to the delegated cgroup: %w", err)
	}
	if h.Mode() != Unified {
		return nil // v1: nothing to confine
	}
	own, err := h.PathOf(os.Getpid())
	if err != nil {
		return fmt.Errorf("unable to confine to the delegated cgroup: %w", err)
	}
	d := h.boundary(own)
	if d == "/" {
		return nil
	}
	if own == d {
		g, err := h.Load(d)
		if err != nil {
			return fmt.Errorf("unable to confine to the delegated cgroup: %w", err)
		}
		if _, err := g.Evacuate("supervisor"); err != nil {
			return fmt.Errorf("unable to confine to the delegated cgroup: %w", err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("unable to confine to the delegated cgroup %s: %w", d, err)
	}
	// The new mount namespace is this thread's only, until execve makes it
	// the whole (new) process's.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unable to confine to the delegated cgroup %s: unshare: %w", d, err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("unable to confine to the delegated cgroup %s: %w", d, err)
	}
	dir := filepath.Join(h.mount, d)
	if err := unix.Mount(dir, h.mount, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("unable to confine to the delegated cgroup %s: bind %s: %w", d, dir, err)
	}
	env := append(os.Environ(), confinedEnv+"="+d)
	err = unix.Exec(exe, os.Args, env)
	return fmt.Errorf("unable to confine to the delegated cgroup %s: exec %s: %w", d, exe, err)
}
