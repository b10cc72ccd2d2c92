package blobs

// This file owns Folder, the blob store in a local folder: every blob is a
// file named by its hash in sharded folders (ROOT/ab/cd/abcdef…). Write
// streams into ROOT/tmp (the same file system, so the final rename is
// atomic); Commit fsyncs the file, renames it into place and fsyncs the
// folders, so after a crash a final name holds the complete bytes or does
// not exist. If the content is already in place the temporary file is
// dropped unsynced.
//
// Group commit: the renames and folder fsyncs of concurrent Commits are
// done together by one committer (commitBatch), each distinct folder
// fsynced once for the whole batch, so eight uploads landing at once cost
// one round of folder fsyncs, not eight. Each Commit fsyncs its own file
// first, in its own goroutine: concurrent file fsyncs overlap (ext4 joins
// them into one journal commit) and overlap the batch before. No Commit
// waits for a timer: a Commit that finds the committer idle starts it at
// once, and the Commits that arrive while a batch is syncing make the next
// batch. A Commit returns only once its own name is durable, and a failure
// fails only the blobs it touches.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
)

// Folder is a blob store in a local folder.
type Folder struct {
	root string
	tmp  string

	// syncFile and syncDir make a file's bytes and a folder's entries
	// durable (tests count and fail them).
	syncFile func(*os.File) error
	syncDir  func(dir string) error

	// mu guards queue, busy and inflight: queue holds the Commits waiting
	// for the next batch, busy is set while a committer goroutine runs,
	// inflight holds every queued or committing blob by final name, until
	// it is durable or failed: a Commit of the same content meanwhile
	// waits for it rather than seeing a file whose name is not yet synced.
	mu       sync.Mutex
	queue    []*pendingCommit
	busy     bool
	inflight map[string]*pendingCommit
}

// pendingCommit is a Commit waiting for its batch: its synced temporary
// file and its final name; err is its outcome, set before done closes.
type pendingCommit struct {
	tmp, final string
	err        error
	done       chan struct{}
}

var _ Store = (*Folder)(nil)

const tmpDir = "tmp"

// OpenFolder opens (creating if needed) the store in root. It does not
// touch temporary files: another process may be writing them (see
// CleanTemp).
func OpenFolder(root string) (*Folder, error) {
	s := &Folder{root: root, tmp: filepath.Join(root, tmpDir),
		syncFile: (*os.File).Sync, syncDir: atomicfile.SyncDir,
		inflight: map[string]*pendingCommit{}}
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
// (it is complete by construction) and the temporary one removed. The
// rename and the folders' fsyncs are shared with the Commits running at
// the same time (see the file's comment); the context is not consulted:
// once the bytes are synced, the commit completes.
func (t *folderTemp) Commit(context.Context) error {
	final := t.s.Path(t.blob.Hash)
	drop := func() {
		t.f.Close()
		os.Remove(t.f.Name())
	}
	t.s.mu.Lock()
	if p, exists := t.s.present(final); p != nil || exists {
		t.s.mu.Unlock()
		drop()
		return p.wait()
	}
	t.s.mu.Unlock()
	err := t.s.syncFile(t.f)
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(t.f.Name())
		return fmt.Errorf("unable to sync blob: %w", err)
	}
	t.s.mu.Lock()
	if p, exists := t.s.present(final); p != nil || exists {
		// Put in place or queued while this file was syncing.
		t.s.mu.Unlock()
		os.Remove(t.f.Name())
		return p.wait()
	}
	p := &pendingCommit{tmp: t.f.Name(), final: final, done: make(chan struct{})}
	t.s.queue = append(t.s.queue, p)
	t.s.inflight[final] = p
	if !t.s.busy {
		t.s.busy = true
		go t.s.committer()
	}
	t.s.mu.Unlock()
	return p.wait()
}

// present tells, under s.mu, whether final is being committed (its
// pending Commit) or is already in place, durably: a batch's names leave
// inflight only once synced, and a failed one's file is removed first.
func (s *Folder) present(final string) (*pendingCommit, bool) {
	if p := s.inflight[final]; p != nil {
		return p, false
	}
	_, err := os.Stat(final)
	return nil, err == nil
}

// wait waits for p's batch and returns its outcome; a nil p is a blob
// already in place.
func (p *pendingCommit) wait() error {
	if p == nil {
		return nil
	}
	<-p.done
	return p.err
}

// committer commits batches until no Commit is waiting.
func (s *Folder) committer() {
	for {
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		if len(batch) == 0 {
			s.busy = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		s.commitBatch(batch)
	}
}

// commitBatch moves every synced file of batch under its hash, then
// fsyncs each folder that got a new entry (the blobs' folders, and the
// parents of folders created) once, concurrently, and only then answers
// each Commit: a blob fails if its rename failed or any folder on its
// path failed to sync. ROOT/tmp is not synced: a name the crash brings
// back there is a temporary file, which CleanTemp removes at start-up.
// A blob whose folder failed to sync is removed again, so no later Commit
// of the same content takes a name that may not survive for a durable one
// (no other Commit renamed onto it: present keeps them off).
func (s *Folder) commitBatch(batch []*pendingCommit) {
	dirty := map[string]error{}
	for _, p := range batch {
		dir := filepath.Dir(p.final)
		if err := s.mkdirs(dir, dirty); err != nil {
			p.err = err
			os.Remove(p.tmp)
			continue
		}
		if err := os.Rename(p.tmp, p.final); err != nil {
			p.err = fmt.Errorf("unable to move blob into place: %w", err)
			os.Remove(p.tmp)
			continue
		}
		dirty[dir] = nil
	}
	// Concurrently: on ext4 the fsyncs join one journal commit.
	dirs := make([]string, 0, len(dirty))
	for dir := range dirty {
		dirs = append(dirs, dir)
	}
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for i, dir := range dirs {
		wg.Go(func() { errs[i] = s.syncDir(dir) })
	}
	wg.Wait()
	for i, dir := range dirs {
		dirty[dir] = errs[i]
	}
	for _, p := range batch {
		// The blob's folder ROOT/ab/cd, and ROOT/ab and ROOT where a
		// folder on its path was created.
		for dir, i := filepath.Dir(p.final), 0; p.err == nil && i < 3; dir, i = filepath.Dir(dir), i+1 {
			if err := dirty[dir]; err != nil {
				p.err = fmt.Errorf("unable to move blob into place: %w", err)
				os.Remove(p.final)
			}
		}
	}
	s.mu.Lock()
	for _, p := range batch {
		delete(s.inflight, p.final)
		close(p.done)
	}
	s.mu.Unlock()
}

// mkdirs creates dir and its missing parents up to the root, marking in
// dirty each parent that got a new entry, for commitBatch to fsync, so the
// path of a renamed blob survives a power loss too.
func (s *Folder) mkdirs(dir string, dirty map[string]error) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != s.root {
		if err := s.mkdirs(parent, dirty); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("unable to create blob folder: %w", err)
	}
	dirty[parent] = nil
	return nil
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
