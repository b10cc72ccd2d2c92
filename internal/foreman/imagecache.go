package foreman

// This file owns the node's image budget: which images to delete, least
// recently used first, when the images tasks used take more room than the
// node's `image` limit allows.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
	"github.com/kolejka-go/kolejka/internal/clock"
	"github.com/kolejka-go/kolejka/worker/image"
)

// StoredImage is one image of a store: its content and the names that
// point to it (several names may share content, which counts once).
type StoredImage struct {
	ID    string   // content identity, e.g. "sha256:…"
	Names []string // normalized references (image.NormalizeName)
	Size  int64    // bytes on disk
	Added time.Time
}

// ImageStore is where a runtime keeps the images tasks run from: the runc
// runtime's local store (RuncImages), the Docker engine (DockerImages).
type ImageStore interface {
	// List returns every image with its names and size.
	List(ctx context.Context) ([]StoredImage, error)
	// Remove deletes the image's names and, with the last one, its content.
	Remove(ctx context.Context, img StoredImage) error
}

// ImageCache keeps the images tasks of this node used within a budget in
// bytes (the node's `image` limit, as Kolejka's foreman uses it). It knows
// an image's last use from the tasks it ran, recorded in a file so that the
// order survives restarts; images no task of this node ever used (the
// operator's, other programs') are neither counted nor removed.
//
// Before a task starts, Acquire marks its image used (so it is never
// removed while the task runs) and enforces the budget; when the task ends
// the image is released and the budget enforced again (a runtime that pulls
// may have brought the image in meanwhile). Images are removed least
// recently used first, never one a running task uses. An image a task
// needs is never refused for want of room: the budget may be exceeded
// while the images of running tasks alone exceed it.
//
// Safe for concurrent use.
type ImageCache struct {
	store  ImageStore
	budget int64
	file   string
	log    *slog.Logger
	clock  clock.Clock // dates uses (default clock.System)

	mu      sync.Mutex
	lastUse map[string]time.Time // by normalized name
	inUse   map[string]int
}

// imageUseFile is the persistent record of last uses.
type imageUseFile struct {
	LastUse map[string]time.Time `json:"last_use"`
}

// OpenImageCache opens the cache over store with the record file (created
// when missing). budget ≤ 0 means unbounded: uses are recorded, nothing is
// removed.
func OpenImageCache(store ImageStore, budget int64, file string, log *slog.Logger) (*ImageCache, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &ImageCache{store: store, budget: budget, file: file, log: log, clock: clock.System,
		lastUse: map[string]time.Time{}, inUse: map[string]int{}}
	data, err := os.ReadFile(file)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("unable to read the image record: %w", err)
	default:
		var rec imageUseFile
		if err := json.Unmarshal(data, &rec); err != nil {
			// A torn record (power loss) only loses the order of eviction.
			log.Warn("image record unreadable, starting a new one", "file", file, "error", err)
		} else if rec.LastUse != nil {
			c.lastUse = rec.LastUse
		}
	}
	return c, nil
}

// Acquire records that a task is about to run from the image name, and
// enforces the budget without touching it. release ends the use.
func (c *ImageCache) Acquire(ctx context.Context, name string) (release func(), err error) {
	norm, err := image.NormalizeName(name)
	if err != nil {
		norm = name // the runtime will refuse it; nothing to keep
	}
	c.mu.Lock()
	c.inUse[norm]++
	c.lastUse[norm] = c.clock.Now()
	err = c.save()
	c.mu.Unlock()
	if err != nil {
		c.log.Warn("unable to record an image's use", "image", norm, "error", err)
	}
	if err := c.Enforce(ctx); err != nil {
		c.log.Warn("unable to keep images within their budget", "error", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			if c.inUse[norm]--; c.inUse[norm] <= 0 {
				delete(c.inUse, norm)
			}
			c.mu.Unlock()
		})
	}, nil
}

// Enforce removes least recently used images (of those tasks used, none
// in use) until they fit the budget.
func (c *ImageCache) Enforce(ctx context.Context) error {
	if c.budget <= 0 {
		return nil
	}
	imgs, err := c.store.List(ctx)
	if err != nil {
		return fmt.Errorf("unable to list images: %w", err)
	}
	type cand struct {
		img  StoredImage
		last time.Time
		busy bool
	}
	c.mu.Lock()
	var cands []cand
	var total int64
	for _, img := range imgs {
		x := cand{img: img}
		known := false
		for _, n := range img.Names {
			if t, ok := c.lastUse[n]; ok {
				known = true
				if t.After(x.last) {
					x.last = t
				}
			}
			if c.inUse[n] > 0 {
				x.busy = true
			}
		}
		if known {
			cands = append(cands, x)
			total += img.Size
		}
	}
	c.mu.Unlock()
	if total <= c.budget {
		return nil
	}
	slices.SortFunc(cands, func(a, b cand) int { return a.last.Compare(b.last) })
	var errs []error
	for _, x := range cands {
		if total <= c.budget {
			break
		}
		if x.busy {
			continue
		}
		if err := c.store.Remove(ctx, x.img); err != nil {
			errs = append(errs, err)
			continue
		}
		total -= x.img.Size
		c.log.Info("image removed: over the node's image budget", "image", x.img.Names, "id", x.img.ID,
			"size", x.img.Size, "last_use", x.last)
		c.mu.Lock()
		for _, n := range x.img.Names {
			delete(c.lastUse, n)
		}
		if err := c.save(); err != nil {
			errs = append(errs, err)
		}
		c.mu.Unlock()
	}
	if total > c.budget {
		c.log.Warn("images over budget: the rest are in use", "bytes", total, "budget", c.budget)
	}
	return errors.Join(errs...)
}

// save replaces the record atomically, without waiting for the disk: it
// runs at every task's start, and a record a crash loses or tears only
// loses the order of eviction (OpenImageCache starts a new one). Called
// with c.mu held.
func (c *ImageCache) save() error {
	data, err := json.Marshal(imageUseFile{LastUse: c.lastUse})
	if err != nil {
		return err
	}
	return atomicfile.WriteFileUnsynced(c.file, data, 0o600)
}

// RuncImages is the runc runtime's local image store as an ImageStore.
type RuncImages struct{ Store *image.Store }

var _ ImageStore = RuncImages{}

// List groups the store's names by content.
func (r RuncImages) List(context.Context) ([]StoredImage, error) {
	imgs, err := r.Store.List()
	if err != nil {
		return nil, err
	}
	byID := map[string]*StoredImage{}
	var out []*StoredImage
	for _, img := range imgs {
		s, ok := byID[img.ID]
		if !ok {
			s = &StoredImage{ID: img.ID, Size: img.Size}
			byID[img.ID] = s
			out = append(out, s)
		}
		s.Names = append(s.Names, img.Name)
		if img.Created.After(s.Added) {
			s.Added = img.Created
		}
	}
	res := make([]StoredImage, len(out))
	for i, s := range out {
		res[i] = *s
	}
	return res, nil
}

// Remove drops every name of the image; the store deletes the content with
// the last one (or later, if another process's task still holds it).
func (r RuncImages) Remove(_ context.Context, img StoredImage) error {
	var errs []error
	for _, n := range img.Names {
		if err := r.Store.Remove(n); err != nil && !errors.Is(err, image.ErrInUse) && !errors.Is(err, image.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// imageRecordFile is the image record's name in the cache folder.
func imageRecordFile(cacheDir string) string { return filepath.Join(cacheDir, "images.json") }
