package blobs

// This file owns Folder, the blob store in a local folder: every blob is a
// file named by its hash in sharded folders (ROOT/ab/cd/abcdef…). Write
// streams into ROOT/tmp (the same file system, so the final rename is
// atomic); Commit fsyncs the file, renames it into place and fsyncs the
// folders (atomicfile.Rename), so after a crash a final name holds the
// complete bytes or does not exist. If the content is already in place the
// temporary file is dropped unsynced.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
)

// Folder is a blob store in a local folder.
type Folder struct {
	root string
	tmp  string
}

var _ Store = (*Folder)(nil)

const tmpDir = "tmp"

// OpenFolder opens (creating if needed) the store in root. It does not
// touch temporary files: another process may be writing them (see
// CleanTemp).
func OpenFolder(root string) (*Folder, error) {
	s := &Folder{root: root, tmp: filepath.Join(root, tmpDir)}
	if err := os.MkdirAll(s.tmp, 0o750); err != nil {
		return nil, fmt.Errorf("unable to create blob store: %w", err)
	}
	return s, nil
}

// CleanTemp removes the temporary files last written before before. Call
// it with the current time only when no upload can be running (at server
// start-up, holding the data folder's lock).
func (s *Folder) CleanTemp(_ context.Context, before time.Time) (int, error) {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return 0, fmt.Errorf("unable to read blob temp folder: %w", err)
	}
	n := 0
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && !fi.ModTime().Before(before) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.tmp, e.Name())); err != nil {
			return n, fmt.Errorf("unable to remove temp leftover: %w", err)
		}
		n++
	}
	return n, nil
}

// Root is the store's folder.
func (s *Folder) Root() string { return s.root }

// Path is where the blob of hash lives (whether or not it exists).
func (s *Folder) Path(hash string) string {
	return filepath.Join(s.root, hash[0:2], hash[2:4], hash)
}

// folderTemp is a blob written to ROOT/tmp.
type folderTemp struct {
	s    *Folder
	f    *os.File
	blob Blob
}

var _ Temp = (*folderTemp)(nil)

// Write streams r into a temporary file, hashing it.
func (s *Folder) Write(_ context.Context, r io.Reader, limit int64) (Temp, error) {
	f, err := os.CreateTemp(s.tmp, "upload-*")
	if err != nil {
		return nil, fmt.Errorf("unable to create temp file: %w", err)
	}
	fail := func(err error) (Temp, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	h := Hasher()
	n, err := io.Copy(io.MultiWriter(f, h), LimitReader(r, limit))
	if errors.Is(err, ErrTooLarge) {
		return fail(ErrTooLarge)
	}
	if err != nil {
		return fail(fmt.Errorf("unable to receive blob: %w", err))
	}
	return &folderTemp{s: s, f: f, blob: Blob{Hash: Digest(h), Size: n}}, nil
}

func (t *folderTemp) Blob() Blob { return t.blob }

// Discard removes the temporary file.
func (t *folderTemp) Discard() {
	t.f.Close()
	os.Remove(t.f.Name())
}

// Commit makes the temporary file durable, moves it to its final name and
// makes the rename durable. If the blob already exists its file is kept
// (it is complete by construction) and the temporary one removed.
func (t *folderTemp) Commit(context.Context) error {
	defer t.f.Close()
	final := t.s.Path(t.blob.Hash)
	if _, err := os.Stat(final); err == nil {
		os.Remove(t.f.Name())
		return nil
	}
	if err := t.f.Sync(); err != nil {
		os.Remove(t.f.Name())
		return fmt.Errorf("unable to sync blob: %w", err)
	}
	if err := t.s.mkdirs(filepath.Dir(final)); err != nil {
		os.Remove(t.f.Name())
		return err
	}
	if err := atomicfile.Rename(t.f.Name(), final); err != nil {
		os.Remove(t.f.Name()) // when the rename itself failed
		return fmt.Errorf("unable to move blob into place: %w", err)
	}
	return nil
}

// mkdirs creates dir and its missing parents up to the root, fsyncing each
// parent that got a new entry, so the path of a renamed blob survives a
// power loss too.
func (s *Folder) mkdirs(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != s.root {
		if err := s.mkdirs(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("unable to create blob folder: %w", err)
	}
	return atomicfile.SyncDir(parent)
}

// folderReader is an open blob file.
type folderReader struct {
	*os.File
	info Info
}

func (r folderReader) Info() Info { return r.info }

// Open opens the blob of hash for reading.
func (s *Folder) Open(_ context.Context, hash string) (Reader, error) {
	if !ValidHash(hash) {
		return nil, ErrBadHash
	}
	f, err := os.Open(s.Path(hash))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("unable to open blob %s: %w (%w)", hash, ErrNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("unable to open blob: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("unable to open blob: %w", err)
	}
	return folderReader{f, Info{Blob{hash, fi.Size()}, fi.ModTime()}}, nil
}

// Exists reports whether the blob's file is in place.
func (s *Folder) Exists(_ context.Context, hash string) (bool, error) {
	if !ValidHash(hash) {
		return false, ErrBadHash
	}
	_, err := os.Stat(s.Path(hash))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("unable to look for blob: %w", err)
	}
	return true, nil
}

// Remove deletes the blob's file; a missing file is not an error.
func (s *Folder) Remove(_ context.Context, hash string) error {
	if !ValidHash(hash) {
		return ErrBadHash
	}
	err := os.Remove(s.Path(hash))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unable to remove blob: %w", err)
	}
	return nil
}

// Walk calls fn with every blob file in place; bad lists the paths of
// files that are not blobs.
func (s *Folder) Walk(_ context.Context, fn func(Info) error) (bad []string, err error) {
	err = filepath.WalkDir(s.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.root, path)
		if d.IsDir() {
			if rel == tmpDir {
				return filepath.SkipDir
			}
			return nil
		}
		name := d.Name()
		if !ValidHash(name) || rel != filepath.Join(name[0:2], name[2:4], name) {
			bad = append(bad, path)
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while walking
		}
		if err != nil {
			return err
		}
		return fn(Info{Blob{name, fi.Size()}, fi.ModTime()})
	})
	if err != nil {
		return bad, fmt.Errorf("unable to walk blob store: %w", err)
	}
	return bad, nil
}

// TempFiles lists the temporary files present (for tests and diagnostics).
func (s *Folder) TempFiles() ([]string, error) {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "upload-") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
