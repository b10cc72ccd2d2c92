package foreman

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/clock"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// source serves blobs by hash and counts the downloads, writing as
// client.BlobGetExpect does: a temporary file renamed into place.
type source struct {
	blobs map[string][]byte
	gets  atomic.Int32
}

func newSource(contents ...string) *source {
	s := &source{blobs: map[string][]byte{}}
	for _, c := range contents {
		s.blobs[sum([]byte(c))] = []byte(c)
	}
	return s
}

func (s *source) fetch(h string) FetchFunc {
	return func(ctx context.Context, path string) error {
		s.gets.Add(1)
		tmp := path + ".part"
		if err := os.WriteFile(tmp, s.blobs[h], 0o600); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	}
}

func linkTo(t *testing.T, c *BlobCache, src *source, content string) (string, bool) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "in")
	hit, err := c.Link(context.Background(), sum([]byte(content)), dst, src.fetch(sum([]byte(content))))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dst)
	if err != nil || string(data) != content {
		t.Fatalf("linked file holds %q (%v), want %q", data, err, content)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o755 {
		t.Errorf("input mode %v, want 0755 (blobs carry no mode; inputs are made executable)", fi.Mode())
	}
	return dst, hit
}

func TestBlobCacheHitsAndEvictsLeastRecentlyUsed(t *testing.T) {
	dir := t.TempDir()
	a, b, c := "aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc" // 10 bytes each
	src := newSource(a, b, c)
	cache, err := OpenBlobCache(dir, 25, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Now())
	cache.clock = clk
	if _, hit := linkTo(t, cache, src, a); hit {
		t.Error("first use of a is a hit")
	}
	if _, hit := linkTo(t, cache, src, a); !hit || src.gets.Load() != 1 {
		t.Errorf("second use of a: hit %v, %d downloads", hit, src.gets.Load())
	}
	clk.Advance(time.Second)
	linkTo(t, cache, src, b)
	clk.Advance(time.Second)
	linkTo(t, cache, src, a) // a is now more recent than b
	clk.Advance(time.Second)
	kept, _ := linkTo(t, cache, src, c) // 30 bytes > 25: b, least recently used, goes
	if cache.Has(sum([]byte(b))) || !cache.Has(sum([]byte(a))) || !cache.Has(sum([]byte(c))) {
		t.Errorf("after eviction: a %v b %v c %v; want b gone", cache.Has(sum([]byte(a))), cache.Has(sum([]byte(b))), cache.Has(sum([]byte(c))))
	}
	if n, bytes := cache.Size(); n != 2 || bytes != 20 {
		t.Errorf("cache holds %d files, %d bytes", n, bytes)
	}
	// A task's link outlives eviction of the cached file.
	os.Remove(filepath.Join(dir, "blobs", sum([]byte(c))))
	if data, err := os.ReadFile(kept); err != nil || string(data) != c {
		t.Errorf("the task's link after the cache lost the file: %q %v", data, err)
	}

	// The order of use survives a restart (the file times): reopened with
	// a smaller budget, the older file goes first.
	cache2, err := OpenBlobCache(dir, 15, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if !cache2.Has(sum([]byte(a))) || cache2.Has(sum([]byte(b))) {
		t.Errorf("after reopening: a %v, b %v", cache2.Has(sum([]byte(a))), cache2.Has(sum([]byte(b))))
	}
}

// A download that fails halfway leaves nothing that could be served later:
// the next request downloads again, and never gets partial bytes.
func TestBlobCacheNeverServesPartialFiles(t *testing.T) {
	dir := t.TempDir()
	content := "the whole file"
	h := sum([]byte(content))
	cache, err := OpenBlobCache(dir, 0, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	broken := errors.New("connection reset")
	dst := filepath.Join(t.TempDir(), "in")
	_, err = cache.Link(context.Background(), h, dst, func(ctx context.Context, path string) error {
		// The client writes beside the final name and renames only once
		// the hash matched; a cut connection leaves the part file.
		os.WriteFile(path+".part-123", []byte("the wh"), 0o600)
		return broken
	})
	if !errors.Is(err, broken) {
		t.Fatalf("Link with a failing download: %v", err)
	}
	if cache.Has(h) {
		t.Fatal("a failed download is in the cache")
	}
	if _, err := os.Stat(dst); err == nil {
		t.Fatal("a failed download left the task's file")
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(entries) != 0 {
		t.Errorf("tmp/ keeps %d entries after a failed download", len(entries))
	}
	src := newSource(content)
	if _, hit := linkTo(t, cache, src, content); hit || src.gets.Load() != 1 {
		t.Errorf("after the failure: hit %v, %d downloads", hit, src.gets.Load())
	}

	// What a killed foreman left in tmp/ is gone at the next open, and junk
	// in blobs/ is not served.
	os.WriteFile(filepath.Join(dir, "tmp", "half"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "blobs", ".x.part-1"), []byte("x"), 0o600)
	cache, err = OpenBlobCache(dir, 0, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(entries) != 0 {
		t.Errorf("tmp/ after reopening: %d entries", len(entries))
	}
	if n, _ := cache.Size(); n != 1 {
		t.Errorf("cache after reopening holds %d files, want 1", n)
	}
}

// Tasks asking at once for the same missing file share one download.
func TestBlobCacheOneDownloadForConcurrentTasks(t *testing.T) {
	cache, err := OpenBlobCache(t.TempDir(), 0, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	content := "shared test input"
	h := sum([]byte(content))
	src := newSource(content)
	release := make(chan struct{})
	downloading := make(chan struct{}, 1)
	slow := func(ctx context.Context, path string) error {
		downloading <- struct{}{}
		<-release
		return src.fetch(h)(ctx, path)
	}
	waiting := make(chan struct{}, 16)
	cache.waiting = func() { waiting <- struct{}{} }
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := filepath.Join(t.TempDir(), "in")
			_, err := cache.Link(context.Background(), h, dst, slow)
			if err == nil {
				if data, _ := os.ReadFile(dst); string(data) != content {
					err = errors.New("wrong content in task " + string(rune('0'+i)))
				}
			}
			errs <- err
		}()
	}
	// One downloads, the seven others wait for it; then it finishes.
	<-downloading
	for range 7 {
		<-waiting
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := src.gets.Load(); n != 1 {
		t.Errorf("%d downloads for 8 tasks, want 1", n)
	}

	// A waiter whose leader was stopped downloads itself.
	other := "another"
	h2 := sum([]byte(other))
	src2 := newSource(other)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	leaderDone := make(chan error, 1)
	go func() {
		_, err := cache.Link(ctx, h2, filepath.Join(t.TempDir(), "in"), func(ctx context.Context, path string) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})
		leaderDone <- err
	}()
	<-started
	waiterDone := make(chan error, 1)
	go func() {
		_, err := cache.Link(context.Background(), h2, filepath.Join(t.TempDir(), "in"), src2.fetch(h2))
		waiterDone <- err
	}()
	<-waiting // the waiter waits for the leader's download
	cancel()
	if err := <-leaderDone; !errors.Is(err, context.Canceled) {
		t.Errorf("stopped leader: %v", err)
	}
	if err := <-waiterDone; err != nil || src2.gets.Load() != 1 {
		t.Errorf("waiter after its leader stopped: %v, %d downloads", err, src2.gets.Load())
	}
}

// A file in use (being linked) is not evicted even when over budget; a
// file larger than the whole budget is still served.
func TestBlobCacheOverBudget(t *testing.T) {
	cache, err := OpenBlobCache(t.TempDir(), 5, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	big := "larger than the budget"
	src := newSource(big)
	if _, hit := linkTo(t, cache, src, big); hit {
		t.Error("hit on first use")
	}
	if n, _ := cache.Size(); n != 0 {
		t.Errorf("a file over the budget stays cached once used: %d files", n)
	}
	if _, err := cache.Link(context.Background(), "not-a-hash", filepath.Join(t.TempDir(), "x"), src.fetch("")); err == nil {
		t.Error("a malformed hash accepted")
	}
}
