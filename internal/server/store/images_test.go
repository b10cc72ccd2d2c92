package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// An image's blobs are kept while it uses them — not deleted, not
// collected, not swept even when their owner is no client (a manager's
// pushed references, which the sweep of node uploads would otherwise
// take) — and are free again once it is removed.
func TestImageBlobsKept(t *testing.T) {
	f := newTypesFixture(t)
	ctx := context.Background()
	hash := strings.Repeat("c", 64)
	const ref = "bossref0000000000000000000000ccc"
	if _, err := f.s.AddReference(ctx, hash, 7, ref, f.boss.ID, f.now); err != nil {
		t.Fatal(err)
	}
	put := func(blobs ...ImageBlob) error {
		return f.s.PutImage(ctx, NewImage{Owner: f.boss.ID, Name: "docker.io/library/x:1", Manifest: []byte(`{}`), Blobs: blobs, Now: f.now})
	}
	var fe FileErrors
	if err := put(ImageBlob{Ref: ref, Digest: "sha256:" + hash, Size: 8}); !errors.As(err, &fe) || !strings.Contains(err.Error(), "size 8") {
		t.Fatalf("a wrong size: %v", err)
	}
	if err := put(ImageBlob{Ref: ref, Digest: "sha256:" + hash, Size: 7}); err != nil {
		t.Fatal(err)
	}
	if stale, err := f.s.SweepUploads(ctx, f.now.Add(time.Hour), 100); err != nil || len(stale) != 0 {
		t.Fatalf("the sweep took %v (%v)", stale, err)
	}
	var inUse *InUseError
	if _, err := f.s.DeleteReference(ctx, ref); !errors.As(err, &inUse) || !strings.Contains(err.Error(), "blob of image docker.io/library/x:1") {
		t.Fatalf("deleting an image's blob reference: %v", err)
	}
	if err := f.s.DeleteBlob(ctx, hash); !errors.As(err, &inUse) {
		t.Fatalf("deleting an image's blob: %v", err)
	}
	if err := f.s.RemoveImage(ctx, "docker.io/library/x:1"); err != nil {
		t.Fatal(err)
	}
	if err := f.s.RemoveImage(ctx, "docker.io/library/x:1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing it again: %v", err)
	}
	if stale, err := f.s.SweepUploads(ctx, f.now.Add(time.Hour), 100); err != nil || len(stale) != 1 || stale[0] != hash {
		t.Fatalf("after the image's removal the sweep took %v (%v), want its blob", stale, err)
	}
}
