package foreman

// This file owns the node's cache of input files, by content.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
	"github.com/kolejka-go/kolejka/internal/clock"
	"github.com/kolejka-go/kolejka/internal/filecopy"
)

// DefaultBlobCacheSize is the blob cache's budget when none is configured.
const DefaultBlobCacheSize = 1 << 30

// BlobCache keeps input files by their SHA-256 on the node's disk, so that
// a task whose files another task already brought downloads nothing: a
// judge sends the same tests with every submission.
//
// Layout under its folder:
//
//	blobs/<sha256>   complete, verified files (mode 0755, see Link); the
//	                 file's modification time is its last use
//	tmp/             downloads in progress (emptied by OpenBlobCache)
//
// A file enters blobs/ by one rename after its download was checked against
// its hash (client.BlobGetExpect), so a file there is never partial, after
// a crash either. Files are handed to tasks as hard links (a copy across
// file systems): the worker copies a task's inputs into the task's own
// scratch space, so a task never writes to a cached file.
//
// The budget bounds the bytes in blobs/: past it, the least recently used
// files no task is being given are deleted (a task folder that has a link
// keeps its own). One file bigger than the whole budget is still fetched
// and used, then is the first to go.
//
// Safe for concurrent use; concurrent requests for one missing blob share
// one download. One process owns the folder (the foreman's lock).
type BlobCache struct {
	dir    string
	budget int64
	log    *slog.Logger

	clock   clock.Clock // dates uses (default clock.System)
	waiting func()      // test hook: a Link starts waiting for another's download

	mu      sync.Mutex
	entries map[string]*blobEntry
	total   int64
	flights map[string]*flight
}

type blobEntry struct {
	size    int64
	lastUse time.Time
	pins    int // callers linking it right now
}

// flight is one download others wait for.
type flight struct {
	done chan struct{}
	err  error
}

// OpenBlobCache opens (creating it) the cache folder dir with a budget in
// bytes (0: DefaultBlobCacheSize; negative: unbounded). It empties tmp/
// (downloads a dead process left) and evicts down to the budget.
func OpenBlobCache(dir string, budget int64, log *slog.Logger) (*BlobCache, error) {
	if budget == 0 {
		budget = DefaultBlobCacheSize
	}
	if log == nil {
		log = slog.Default()
	}
	c := &BlobCache{dir: dir, budget: budget, log: log, clock: clock.System, entries: map[string]*blobEntry{}, flights: map[string]*flight{}}
	if err := os.RemoveAll(c.tmpDir()); err != nil {
		return nil, fmt.Errorf("unable to empty %s: %w", c.tmpDir(), err)
	}
	for _, d := range []string{c.blobDir(), c.tmpDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("unable to create the blob cache: %w", err)
		}
	}
	list, err := os.ReadDir(c.blobDir())
	if err != nil {
		return nil, fmt.Errorf("unable to read the blob cache: %w", err)
	}
	for _, e := range list {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || !isSHA256(e.Name()) {
			// Not ours (or a half-written name from an older layout).
			os.RemoveAll(filepath.Join(c.blobDir(), e.Name()))
			continue
		}
		c.entries[e.Name()] = &blobEntry{size: info.Size(), lastUse: info.ModTime()}
		c.total += info.Size()
	}
	c.mu.Lock()
	c.evict()
	c.mu.Unlock()
	return c, nil
}

func (c *BlobCache) blobDir() string        { return filepath.Join(c.dir, "blobs") }
func (c *BlobCache) tmpDir() string         { return filepath.Join(c.dir, "tmp") }
func (c *BlobCache) path(sum string) string { return filepath.Join(c.blobDir(), sum) }

// Budget is the cache's budget in bytes (negative: unbounded).
func (c *BlobCache) Budget() int64 { return c.budget }

// Size is what the cache holds.
func (c *BlobCache) Size() (files int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.total
}

// Has reports whether the blob sum is cached.
func (c *BlobCache) Has(sum string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[sum]
	return ok
}

// FetchFunc downloads a blob into path, which must appear complete and
// verified or not at all (client.BlobGetExpect does both).
type FetchFunc func(ctx context.Context, path string) error

// Link makes dst a file with the blob sum's bytes: a link to the cached
// file, fetching it first with fetch when the cache lacks it. hit says
// whether the bytes were there already. dst's folder must exist; dst must
// not.
func (c *BlobCache) Link(ctx context.Context, sum string, dst string, fetch FetchFunc) (hit bool, err error) {
	if !isSHA256(sum) {
		return false, fmt.Errorf("unable to cache %q: not a SHA-256", sum)
	}
	hit = true
	for {
		c.mu.Lock()
		if e, ok := c.entries[sum]; ok {
			e.pins++
			e.lastUse = c.clock.Now()
			c.mu.Unlock()
			err := c.give(sum, dst)
			c.mu.Lock()
			e.pins--
			c.evict()
			c.mu.Unlock()
			return hit, err
		}
		hit = false
		if f, ok := c.flights[sum]; ok {
			c.mu.Unlock()
			if c.waiting != nil {
				c.waiting()
			}
			select {
			case <-f.done:
			case <-ctx.Done():
				return false, context.Cause(ctx)
			}
			if f.err != nil && ctx.Err() == nil && !errors.Is(f.err, context.Canceled) {
				return false, f.err
			}
			continue // cached now, or the leader was stopped: try again
		}
		f := &flight{done: make(chan struct{})}
		c.flights[sum] = f
		c.mu.Unlock()
		f.err = c.fetch(ctx, sum, fetch)
		c.mu.Lock()
		delete(c.flights, sum)
		c.mu.Unlock()
		close(f.done)
		if f.err != nil {
			return false, f.err
		}
	}
}

// fetch downloads sum into tmp/ and publishes it in blobs/.
func (c *BlobCache) fetch(ctx context.Context, sum string, fetch FetchFunc) error {
	tmp, err := os.MkdirTemp(c.tmpDir(), sum[:16]+"-")
	if err != nil {
		return fmt.Errorf("unable to make room for a download: %w", err)
	}
	defer os.RemoveAll(tmp)
	p := filepath.Join(tmp, sum)
	if err := fetch(ctx, p); err != nil {
		return err
	}
	info, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("unable to cache blob %s: %w", sum, err)
	}
	// Blobs carry no mode. Every input is made executable, so that a task
	// running a script it brought works on the grid as it does locally.
	if err := os.Chmod(p, 0o755); err != nil {
		return fmt.Errorf("unable to cache blob %s: %w", sum, err)
	}
	if err := atomicfile.Rename(p, c.path(sum)); err != nil {
		return fmt.Errorf("unable to cache blob %s: %w", sum, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[sum] = &blobEntry{size: info.Size(), lastUse: c.clock.Now()}
	c.total += info.Size()
	return nil
}

// give links (or copies: filecopy.LinkOrCopy) the cached file to dst and records the use on
// disk, so that the order of use survives a restart.
func (c *BlobCache) give(sum, dst string) error {
	src := c.path(sum)
	now := c.clock.Now()
	_ = os.Chtimes(src, now, now)
	if err := filecopy.LinkOrCopy(src, dst); err != nil {
		return fmt.Errorf("unable to give blob %s to %s: %w", sum, dst, err)
	}
	return nil
}

// evict deletes least recently used files no caller holds until the cache
// fits its budget. Called with c.mu held.
func (c *BlobCache) evict() {
	if c.budget < 0 || c.total <= c.budget {
		return
	}
	type cand struct {
		sum string
		e   *blobEntry
	}
	var cands []cand
	for sum, e := range c.entries {
		if e.pins == 0 {
			cands = append(cands, cand{sum, e})
		}
	}
	slices.SortFunc(cands, func(a, b cand) int { return a.e.lastUse.Compare(b.e.lastUse) })
	for _, x := range cands {
		if c.total <= c.budget {
			return
		}
		if err := os.Remove(c.path(x.sum)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("unable to evict a cached blob", "blob", x.sum, "error", err)
			continue
		}
		delete(c.entries, x.sum)
		c.total -= x.e.size
		c.log.Debug("blob evicted from the cache", "blob", x.sum, "size", x.e.size)
	}
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}
