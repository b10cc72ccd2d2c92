// Package atomicfile replaces files so that a reader, or the machine after
// a crash or power loss, sees either the old file or the whole new one:
// the content goes to a temporary file in the same folder, is synced,
// renamed over the target, and the folder is synced so that the rename
// itself is on disk. It is the one way this module writes a file in place.
//
// A write goes through three states:
//
//	Create  → a hidden temporary file beside the target (".name.*.tmp")
//	Write   → the content, through the *os.File
//	Commit  → fsync, chmod to the asked mode, rename, fsync of the folder;
//	          or Abort, which removes the temporary file and leaves the
//	          target as it was.
//
// WriteFile does all three for content already in memory; WriteFileUnsynced
// does them without the syncs, for records whose loss costs little.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// File is a replacement of a file being written. Its embedded *os.File is
// the temporary file; the target is untouched until Commit.
type File struct {
	*os.File
	path string
	perm fs.FileMode
	done bool
}

// Create starts replacing path. The file gets mode perm at Commit
// (os.CreateTemp makes it 0600 until then, so no one reads it half
// written). The caller must Commit or Abort.
func Create(path string, perm fs.FileMode) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("unable to write %s: %w", path, err)
	}
	return &File{File: f, path: path, perm: perm}, nil
}

// IsTemporary tells whether name, a file's base name, is one of Create's
// temporary files: what a crash between Create and Commit leaves beside
// the target, for cleanups to recognise.
func IsTemporary(name string) bool {
	return len(name) > len("..tmp") && strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".tmp")
}

// Path is the file being replaced.
func (f *File) Path() string { return f.path }

// Commit makes the written content the file at Path, durably. On an error
// the temporary file is removed and the target is as it was.
func (f *File) Commit() error { return f.commit(true) }

// commit puts the content in place; durable also waits for the disk.
func (f *File) commit(durable bool) error {
	if f.done {
		return fmt.Errorf("unable to write %s: %w", f.path, fs.ErrClosed)
	}
	f.done = true
	err := f.Chmod(f.perm)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), f.path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("unable to write %s: %w", f.path, err)
	}
	if !durable {
		return nil
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort drops the replacement; the target stays as it was. It does nothing
// after Commit, so `defer f.Abort()` is the usual way to clean up.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	_ = f.File.Close()
	_ = os.Remove(f.Name())
}

// Close is Abort: closing without Commit must not leave a half-written
// temporary file behind.
func (f *File) Close() error {
	f.Abort()
	return nil
}

// WriteFile replaces path with data, durably and atomically.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return writeFile(path, data, perm, true)
}

// WriteFileUnsynced replaces path with data atomically for readers, without
// waiting for the disk: after a crash the file may hold the old content or
// the new, or be torn. It is for a record on a hot path whose loss costs
// little (a cache's order of eviction), where an fsync of the file and its
// folder on every write is not worth paying; its reader must cope with a
// torn file.
func WriteFileUnsynced(path string, data []byte, perm fs.FileMode) error {
	return writeFile(path, data, perm, false)
}

func writeFile(path string, data []byte, perm fs.FileMode, durable bool) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("unable to write %s: %w", path, err)
	}
	return f.commit(durable)
}

// Rename moves oldpath to newpath and syncs the folder of newpath (and of
// oldpath, when it differs), so that the move survives a crash. For
// whole folders put in place at once.
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	err := SyncDir(filepath.Dir(newpath))
	if od := filepath.Dir(oldpath); od != filepath.Dir(newpath) {
		err = errors.Join(err, SyncDir(od))
	}
	return err
}

// SyncDir fsyncs a folder, which makes the renames and creations in it
// durable: on Linux a file's fsync does not cover its name.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("unable to sync folder %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("unable to sync folder %s: %w", dir, err)
	}
	return nil
}
