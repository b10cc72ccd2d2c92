package blobs

// Group commit of the folder store: concurrent Commits share their folder
// fsyncs, and a failure fails only the blobs it touches. The fsyncs are
// real; the hooks count them, hold a batch open, or fail one.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// gatedFolder is a Folder whose folder fsyncs are counted by folder and,
// while the gate is shut, held until it opens.
type gatedFolder struct {
	*Folder
	mu       sync.Mutex
	dirSyncs map[string]int
	files    int
	entered  chan struct{} // a folder fsync waits at the shut gate
	gate     chan struct{} // closed: fsyncs go through
	failDir  string        // this folder's fsync fails
	failFile []byte        // the file with these bytes fails its fsync
}

var errInjected = errors.New("injected fsync failure")

func newGatedFolder(t *testing.T) *gatedFolder {
	s, err := OpenFolder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedFolder{Folder: s, dirSyncs: map[string]int{},
		entered: make(chan struct{}, 64), gate: make(chan struct{})}
	syncDir, syncFile := s.syncDir, s.syncFile
	s.syncDir = func(dir string) error {
		g.mu.Lock()
		g.dirSyncs[dir]++
		fail := dir == g.failDir
		g.mu.Unlock()
		g.entered <- struct{}{}
		<-g.gate
		if fail {
			return errInjected
		}
		return syncDir(dir)
	}
	s.syncFile = func(f *os.File) error {
		g.mu.Lock()
		g.files++
		fail := g.failFile
		g.mu.Unlock()
		if fail != nil {
			b := make([]byte, len(fail)+1)
			if n, _ := f.ReadAt(b, 0); bytes.Equal(b[:n], fail) {
				return errInjected
			}
		}
		return syncFile(f)
	}
	return g
}

// queued waits until n Commits wait for the next batch.
func (g *gatedFolder) queued(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock() // not needed for queue, but orders with the hooks
		g.Folder.mu.Lock()
		got := len(g.queue)
		g.Folder.mu.Unlock()
		g.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Commits queued after 10 s, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// commitAsync writes data and commits it in a goroutine; the channel
// gets Commit's outcome.
func commitAsync(t *testing.T, s *Folder, data []byte) (string, <-chan error) {
	t.Helper()
	tmp, err := s.Write(t.Context(), bytes.NewReader(data), -1)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tmp.Commit(t.Context()) }()
	return tmp.Blob().Hash, done
}

// sameShard finds n contents whose hashes share their first four hex
// digits, so their blobs land in one folder ROOT/ab/cd.
func sameShard(n int) [][]byte {
	var out [][]byte
	prefix := ""
	for i := 0; len(out) < n; i++ {
		b := fmt.Appendf(nil, "blob %d", i)
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:2])
		if prefix == "" {
			prefix = h
		}
		if h == prefix {
			out = append(out, b)
		}
	}
	return out
}

// Eight uploads that arrive while a batch is syncing are committed
// together: eight file fsyncs (each its own bytes) but one fsync of their
// common folder, not eight; and every one is in place with its bytes.
func TestFolderCommitsConcurrentBlobsInOneBatch(t *testing.T) {
	g := newGatedFolder(t)
	data := sameShard(9)
	first, firstDone := commitAsync(t, g.Folder, data[0])
	<-g.entered // the first batch (ROOT, ROOT/ab, ROOT/ab/cd created) syncs
	var hashes []string
	var dones []<-chan error
	for _, d := range data[1:] {
		h, done := commitAsync(t, g.Folder, d)
		hashes, dones = append(hashes, h), append(dones, done)
	}
	g.queued(t, 8)
	for _, done := range dones {
		select {
		case err := <-done:
			t.Fatalf("a Commit returned before its batch was synced: %v", err)
		default:
		}
	}
	close(g.gate)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	for i, done := range dones {
		if err := <-done; err != nil {
			t.Fatalf("blob %d: %v", i, err)
		}
		if got, _ := os.ReadFile(g.Path(hashes[i])); !bytes.Equal(got, data[i+1]) {
			t.Errorf("blob %d holds %q, want %q", i, got, data[i+1])
		}
	}
	shard := filepath.Dir(g.Path(first))
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.files != 9 {
		t.Errorf("%d file fsyncs for 9 blobs", g.files)
	}
	// First batch: ROOT, ROOT/ab (new entries) and ROOT/ab/cd; second:
	// ROOT/ab/cd once for its eight blobs.
	if g.dirSyncs[shard] != 2 || len(g.dirSyncs) != 3 {
		t.Errorf("folder fsyncs %v, want ROOT, ROOT/ab once and %s twice", g.dirSyncs, shard)
	}
	if names, _ := g.TempFiles(); len(names) != 0 {
		t.Errorf("temporary files left: %v", names)
	}
}

// A failed fsync fails only its blobs: a folder's fails the blob renamed
// into it (removed again, so no later Commit takes it for durable) but not
// another blob of the same batch in another folder; a file's fails that
// upload alone.
func TestFolderCommitFailureFailsOnlyItsBlob(t *testing.T) {
	g := newGatedFolder(t)
	_, firstDone := commitAsync(t, g.Folder, []byte("first"))
	<-g.entered
	bad, good := []byte("bad folder"), []byte("good")
	badHash, badDone := commitAsync(t, g.Folder, bad)
	goodHash, goodDone := commitAsync(t, g.Folder, good)
	if badHash[:4] == goodHash[:4] {
		t.Fatal("the two blobs share a folder; pick other contents")
	}
	g.queued(t, 2)
	g.mu.Lock()
	g.failDir = filepath.Dir(g.Path(badHash))
	g.failFile = []byte("bad file")
	g.mu.Unlock()
	_, badFileDone := commitAsync(t, g.Folder, []byte("bad file"))
	close(g.gate)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if err := <-badDone; !errors.Is(err, errInjected) {
		t.Errorf("the blob whose folder failed to sync: %v", err)
	}
	if err := <-goodDone; err != nil {
		t.Errorf("the blob of the same batch in another folder: %v", err)
	}
	if err := <-badFileDone; !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "unable to sync blob") {
		t.Errorf("the blob whose file failed to sync: %v", err)
	}
	if _, err := os.Stat(g.Path(badHash)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed blob stays under its hash (%v)", err)
	}
	if got, _ := os.ReadFile(g.Path(goodHash)); !bytes.Equal(got, good) {
		t.Errorf("the good blob holds %q", got)
	}
	if names, _ := g.TempFiles(); len(names) != 0 {
		t.Errorf("temporary files left: %v", names)
	}
	// The failed content commits on a retry, durably.
	g.mu.Lock()
	g.failDir = ""
	g.mu.Unlock()
	if _, done := commitAsync(t, g.Folder, bad); <-done != nil {
		t.Error("the retry of the failed blob failed")
	}
}

// A Commit of content another Commit is putting in place waits for that
// one's batch (the name is not durable before) and skips its own fsync.
func TestFolderCommitOfContentInFlightWaitsForIt(t *testing.T) {
	g := newGatedFolder(t)
	h, done1 := commitAsync(t, g.Folder, []byte("twice"))
	<-g.entered
	_, done2 := commitAsync(t, g.Folder, []byte("twice"))
	select {
	case err := <-done2:
		t.Fatalf("the second Commit returned while the first's folder was not synced: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(g.gate)
	if err := <-done1; err != nil {
		t.Fatal(err)
	}
	if err := <-done2; err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(g.Path(h)); string(got) != "twice" {
		t.Errorf("blob holds %q", got)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.files != 1 {
		t.Errorf("%d file fsyncs for one content", g.files)
	}
}

// Many uploads at once, each content twice: every Commit succeeds, every
// blob holds its bytes, no temporary file stays, and nothing is left in
// flight once they have all returned.
func TestFolderConcurrentCommits(t *testing.T) {
	s, err := OpenFolder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		data := fmt.Appendf(nil, "content %d", i/2)
		tmp, err := s.Write(t.Context(), bytes.NewReader(data), -1)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := tmp.Commit(t.Context()); err != nil {
				errs <- err
				return
			}
			if got, err := os.ReadFile(s.Path(tmp.Blob().Hash)); err != nil || !bytes.Equal(got, data) {
				errs <- fmt.Errorf("blob %q holds %q (%v)", data, got, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if names, _ := s.TempFiles(); len(names) != 0 {
		t.Errorf("temporary files left: %v", names)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.inflight) != 0 || len(s.queue) != 0 {
		t.Errorf("%d in flight, %d queued after every Commit returned", len(s.inflight), len(s.queue))
	}
}
