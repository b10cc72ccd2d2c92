// Package flock takes and tests advisory locks on files with flock(2): the
// one way this module says "this process owns that" across processes (a
// server's data folder, a node's state, a run's registry entry, an image
// being imported).
//
// flock locks belong to the open file description, not the process: they
// survive fork and exec of a child holding the descriptor, and go away when
// every descriptor of it is closed, including when the holder is killed.
// That last property is what the callers rely on to tell a live owner from
// a crashed one.
package flock

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrLocked: another open file description holds a conflicting lock.
var ErrLocked = errors.New("locked by another process")

// TryExclusive takes an exclusive lock on f without waiting; ErrLocked
// when someone else holds any lock on it.
func TryExclusive(f *os.File) error { return lock(f, unix.LOCK_EX|unix.LOCK_NB) }

// TryShared takes a shared lock on f without waiting; ErrLocked when
// someone holds an exclusive lock on it.
func TryShared(f *os.File) error { return lock(f, unix.LOCK_SH|unix.LOCK_NB) }

// Exclusive waits for an exclusive lock on f.
func Exclusive(f *os.File) error { return lock(f, unix.LOCK_EX) }

// Shared waits for a shared lock on f.
func Shared(f *os.File) error { return lock(f, unix.LOCK_SH) }

// Unlock releases f's lock (closing f does too).
func Unlock(f *os.File) error { return lock(f, unix.LOCK_UN) }

func lock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return fmt.Errorf("%s: %w", f.Name(), ErrLocked)
		default:
			return fmt.Errorf("unable to lock %s: %w", f.Name(), err)
		}
	}
}

// Own opens (creating it, mode 0600) the file at path and takes an
// exclusive lock on it without waiting: the owner's mark on a folder,
// held until the returned file is closed or the process ends. ErrLocked
// when another process owns it.
func Own(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("unable to open the lock file: %w", err)
	}
	if err := TryExclusive(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
