package cgroup

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// OOMEvents returns a channel that receives a value soon after the kernel
// reports an out-of-memory event in the group, so a caller can stop a task
// promptly instead of polling Usage; the counts are in Usage (OOMKills).
// Events that come faster than they are received are merged into one. The
// channel is closed when ctx is done or the group is removed.
//
// v1 registers an eventfd for memory.oom_control through
// cgroup.event_control; the kernel signals it when the group, or one of its
// ancestors, hits its memory limit and runs out of memory (not when a
// sub-group does), and also when the group is removed. v2 watches
// memory.events with inotify (the kernel signals every change, sub-groups'
// included, since the file is hierarchical) and reports when its "oom" or
// "oom_kill" count grows.
func (g *Group) OOMEvents(ctx context.Context) (<-chan struct{}, error) {
	var f *os.File
	var err error
	var next func() (bool, error)
	if g.v2 != nil {
		f, next, err = g.watchUnified()
	} else {
		f, next, err = g.watchLegacy()
	}
	if err != nil {
		return nil, fmt.Errorf("unable to watch cgroup %s for OOM events: %w", g.path, err)
	}
	ch := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		// Closing f wakes a Read blocked in the runtime poller.
		select {
		case <-ctx.Done():
		case <-done:
		}
		f.Close()
	}()
	go func() {
		defer close(ch)
		defer close(done)
		for {
			oom, err := next()
			if err != nil {
				return
			}
			if oom {
				select {
				case ch <- struct{}{}:
				default: // one is pending already
				}
			}
		}
	}()
	return ch, nil
}

// watchLegacy registers an eventfd for memory.oom_control. next blocks until
// the eventfd is signalled; an error ends the watch (closed, or the group
// removed).
func (g *Group) watchLegacy() (*os.File, func() (bool, error), error) {
	dir := g.h.dir("memory", g.path)
	if dir == "" {
		return nil, nil, fmt.Errorf("the cgroup v1 memory controller is not mounted: %w", ErrUnsupported)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, nil, fmt.Errorf("unable to create an eventfd: %w", err)
	}
	ctl, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		unix.Close(efd)
		return nil, nil, err
	}
	// "<event fd> <fd of the file to watch>": the kernel takes its own
	// references, so the control file may be closed right after.
	err = writeFile(filepath.Join(dir, "cgroup.event_control"), fmt.Sprintf("%d %d", efd, ctl.Fd()))
	ctl.Close()
	if err != nil {
		unix.Close(efd)
		return nil, nil, err
	}
	// A non-blocking fd joins the runtime poller, so Close unblocks Read.
	f := os.NewFile(uintptr(efd), "eventfd "+filepath.Join(dir, "memory.oom_control"))
	next := func() (bool, error) {
		var buf [8]byte
		if _, err := f.Read(buf[:]); err != nil {
			return false, err
		}
		if !exists(dir) {
			return false, fmt.Errorf("cgroup %s removed", g.path)
		}
		return true, nil
	}
	return f, next, nil
}

// watchUnified watches memory.events with inotify. next blocks until the
// file changes and reports whether oom or oom_kill grew.
func (g *Group) watchUnified() (*os.File, func() (bool, error), error) {
	file := filepath.Join(g.h.mount, g.path, "memory.events")
	last, err := readKeyed(file)
	if err != nil {
		return nil, nil, err
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, nil, fmt.Errorf("unable to create an inotify fd: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, file, unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("unable to watch %s: %w", file, err)
	}
	f := os.NewFile(uintptr(fd), "inotify "+file)
	buf := make([]byte, 16*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	next := func() (bool, error) {
		n, err := f.Read(buf)
		if err != nil {
			return false, err
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			// struct inotify_event: wd, mask, cookie, len, name[len].
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			if mask&unix.IN_IGNORED != 0 {
				// The watch is gone: the file was removed with its group.
				return false, fmt.Errorf("%s removed", file)
			}
			off += unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[off+12:]))
		}
		now, err := readKeyed(file)
		if err != nil {
			return false, err
		}
		grew := now["oom"] > last["oom"] || now["oom_kill"] > last["oom_kill"]
		last = now
		return grew, nil
	}
	return f, next, nil
}
