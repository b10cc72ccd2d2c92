// Package blobs is the server's content-addressed file store: every blob is
// a file named by the SHA-256 of its bytes, in sharded folders
// (ROOT/ab/cd/abcdef…), so one content is stored once however many
// references point at it.
//
// Lifecycle of a blob:
//
//  1. Write streams the bytes into a temporary file under ROOT/tmp (the
//     same file system, so the final rename is atomic), hashing them on the
//     way and refusing more than the size limit.
//  2. Temp.Commit fsyncs it, renames it to its final name and fsyncs the
//     folders (atomicfile.Rename), so after a crash a final name holds the complete bytes or
//     does not exist: a partial blob never lives under its hash. If the
//     content is already in place the temporary file is dropped unsynced.
//  3. The caller records the blob in its database only after Commit, so a
//     database row always has its file. A crash between the rename and the
//     database commit leaves a file without a row; Walk lists the files so
//     the caller can remove those at start-up.
//  4. Remove deletes a blob nothing refers to any more. Deciding that is
//     the caller's job (see the server's garbage collector and its per-hash
//     lock).
//
// CleanTemp removes temporary files a crashed process left behind.
package blobs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
)

// Errors of the store.
var (
	// ErrTooLarge is returned by Put when the content exceeds the limit.
	ErrTooLarge = errors.New("blob exceeds the size limit")
	// ErrBadHash is a hash that is not 64 lower-case hex digits.
	ErrBadHash = errors.New("not a SHA-256 hex digest")
)

// Store is a blob folder. It is safe for concurrent use; two uploads of
// the same content both succeed and leave one file.
type Store struct {
	root string
	tmp  string
}

// Blob names stored content.
type Blob struct {
	Hash string // SHA-256, 64 lower-case hex digits
	Size int64
}

const tmpDir = "tmp"

// Open opens (creating if needed) the store in root. It does not touch
// temporary files: another process may be writing them (see CleanTemp).
func Open(root string) (*Store, error) {
	s := &Store{root: root, tmp: filepath.Join(root, tmpDir)}
	if err := os.MkdirAll(s.tmp, 0o750); err != nil {
		return nil, fmt.Errorf("unable to create blob store: %w", err)
	}
	return s, nil
}

// CleanTemp removes the temporary files a crashed process left behind.
// Call it only when no upload can be running (at server start-up, holding
// the data folder's lock).
func (s *Store) CleanTemp() (int, error) {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return 0, fmt.Errorf("unable to read blob temp folder: %w", err)
	}
	n := 0
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.tmp, e.Name())); err != nil {
			return n, fmt.Errorf("unable to remove temp leftover: %w", err)
		}
		n++
	}
	return n, nil
}

// Root is the store's folder.
func (s *Store) Root() string { return s.root }

// ValidHash reports whether h is 64 lower-case hex digits.
func ValidHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Path is where the blob of hash lives (whether or not it exists).
func (s *Store) Path(hash string) string {
	return filepath.Join(s.root, hash[0:2], hash[2:4], hash)
}

// Temp is a blob written but not yet in place: Put's first half. Commit
// moves it into place; Discard removes it. Exactly one of them must be
// called.
type Temp struct {
	s    *Store
	f    *os.File
	Blob Blob
}

// Write streams r into a temporary file, hashing it. More than limit bytes
// is ErrTooLarge (limit < 0: no limit). A read error (a client that went
// away mid-upload) is returned as it is. On any error nothing is left
// behind.
func (s *Store) Write(r io.Reader, limit int64) (*Temp, error) {
	f, err := os.CreateTemp(s.tmp, "upload-*")
	if err != nil {
		return nil, fmt.Errorf("unable to create temp file: %w", err)
	}
	fail := func(err error) (*Temp, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	h := sha256.New()
	src := r
	if limit >= 0 {
		src = io.LimitReader(r, limit+1)
	}
	n, err := io.Copy(io.MultiWriter(f, h), src)
	if err != nil {
		return fail(fmt.Errorf("unable to receive blob: %w", err))
	}
	if limit >= 0 && n > limit {
		return fail(ErrTooLarge)
	}
	return &Temp{s: s, f: f, Blob: Blob{Hash: digest(h), Size: n}}, nil
}

func digest(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// Discard removes the temporary file.
func (t *Temp) Discard() {
	t.f.Close()
	os.Remove(t.f.Name())
}

// Commit makes the temporary file durable, moves it to its final name and
// makes the rename durable. If the blob already exists its file is kept
// (it is complete by construction) and the temporary one removed. The
// caller must hold whatever lock keeps a garbage collector off this hash
// until its database row is committed.
func (t *Temp) Commit() error {
	defer t.f.Close()
	final := t.s.Path(t.Blob.Hash)
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
func (s *Store) mkdirs(dir string) error {
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

// Open opens the blob of hash for reading.
func (s *Store) Open(hash string) (*os.File, error) {
	if !ValidHash(hash) {
		return nil, ErrBadHash
	}
	f, err := os.Open(s.Path(hash))
	if err != nil {
		return nil, fmt.Errorf("unable to open blob: %w", err)
	}
	return f, nil
}

// Exists reports whether the blob's file is in place.
func (s *Store) Exists(hash string) bool {
	if !ValidHash(hash) {
		return false
	}
	_, err := os.Stat(s.Path(hash))
	return err == nil
}

// Remove deletes the blob's file; a missing file is not an error.
func (s *Store) Remove(hash string) error {
	if !ValidHash(hash) {
		return ErrBadHash
	}
	err := os.Remove(s.Path(hash))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unable to remove blob: %w", err)
	}
	return nil
}

// Walk calls fn with the hash of every blob file in place, in no
// particular order. Files that are not blobs (wrong name or place) are
// reported with their path in bad, never deleted by the store.
func (s *Store) Walk(fn func(hash string) error) (bad []string, err error) {
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
		return fn(name)
	})
	if err != nil {
		return bad, fmt.Errorf("unable to walk blob store: %w", err)
	}
	return bad, nil
}

// TempFiles lists the temporary files present (for tests and diagnostics).
func (s *Store) TempFiles() ([]string, error) {
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

// Verify re-hashes the blob's file and reports whether it matches its name.
func (s *Store) Verify(hash string) (bool, error) {
	f, err := s.Open(hash)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, fmt.Errorf("unable to read blob: %w", err)
	}
	return digest(h) == hash, nil
}
