package foreman

// This file brings a task's image from the server (extension "images")
// when the node's store lacks it: the manifest from GET /image/<name>/,
// its blobs through the node's blob cache, each checked against the
// manifest's digest, then an import into the node's store, which checks
// the image itself (every layer's digest and diff_id).
// The image cache then keeps it within the node's image budget as any
// image a task used.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/worker/image"
)

// ImageImporter is an image store the foreman can fill with images from
// the server (RuncImages; Docker pulls what it lacks itself).
type ImageImporter interface {
	// Has reports whether the store holds the image name.
	Has(name string) (bool, error)
	// Import stores the archive at path (any format the store knows) as
	// name; on error the store is unchanged.
	Import(ctx context.Context, name, path string) error
}

var _ ImageImporter = RuncImages{}

// Has implements ImageImporter.
func (r RuncImages) Has(name string) (bool, error) {
	_, err := r.Store.Get(name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, image.ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}

// Import implements ImageImporter.
func (r RuncImages) Import(ctx context.Context, name, path string) error {
	_, err := r.Store.Import(ctx, name, path)
	return err
}

// ensureImage brings the task's image from the server when the node's
// store lacks it and the server has it. A server without the image, or
// without images at all, is no error: the runtime then says the image is
// missing, as it would without a server. Fetches are one at a time, so
// that two tasks naming the same new image fetch it once.
func (f *Foreman) ensureImage(ctx context.Context, j *job) error {
	imp, isImporter := f.cfg.Images.(ImageImporter)
	if !isImporter || j.task.Image == "" || !f.cl.Settings().Has(api.ExtImages) {
		return nil
	}
	// An unreadable store or an invalid name is the runtime's to report,
	// as without a server.
	if has, err := imp.Has(j.task.Image); err != nil || has {
		return nil
	}
	f.imageFetch.Lock()
	defer f.imageFetch.Unlock()
	if has, err := imp.Has(j.task.Image); err != nil || has {
		return nil
	}
	img, err := f.cl.Image(ctx, j.task.Image)
	if errors.Is(err, client.ErrNotFound) {
		j.log.Warn("the task's image is neither on this node nor on the server", "image", j.task.Image)
		return nil
	}
	if err != nil {
		return fmt.Errorf("unable to read image %s from the server: %w", j.task.Image, err)
	}
	if err := img.Manifest.Check(); err != nil {
		return fmt.Errorf("unable to use image %s from the server: %w", img.Info.Name, err)
	}
	dir, err := os.MkdirTemp(f.jobsDir, "image-")
	if err != nil {
		return fmt.Errorf("unable to fetch image %s: %w", j.task.Image, err)
	}
	defer os.RemoveAll(dir)
	src, hits, err := f.assembleImage(ctx, dir, &img.Manifest)
	if err != nil {
		return fmt.Errorf("unable to fetch image %s from the server: %w", img.Info.Name, err)
	}
	if err := imp.Import(ctx, j.task.Image, src); err != nil {
		return fmt.Errorf("unable to import image %s fetched from the server: %w", img.Info.Name, err)
	}
	j.log.Info("image fetched from the server", "image", img.Info.Name, "kind", img.Manifest.Kind,
		"blobs", len(img.Manifest.Blobs), "cached", hits, "bytes", img.Info.Size)
	return nil
}

// assembleImage brings the blobs of m into dir through the node's blob
// cache (a layer another image brought is not fetched again; every
// download is checked against its digest) and returns what to import:
// the archive itself, or an OCI layout made of the blobs.
func (f *Foreman) assembleImage(ctx context.Context, dir string, m *api.ImageManifest) (src string, hits int, err error) {
	bring := func(b api.ImageBlob, dst string) error {
		sum := strings.TrimPrefix(b.Digest, "sha256:")
		hit, err := f.blobs.Link(ctx, sum, dst, func(ctx context.Context, path string) error {
			return f.retrying(ctx, func(ctx context.Context) error {
				return f.cl.BlobGetExpect(ctx, b.Reference, sum, path)
			})
		})
		if hit {
			hits++
		}
		return err
	}
	if m.Kind == api.ImageArchive {
		src = filepath.Join(dir, "archive")
		return src, hits, bring(m.Blobs[0], src)
	}
	src = filepath.Join(dir, "layout")
	blobs := filepath.Join(src, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o700); err != nil {
		return "", hits, err
	}
	for _, b := range m.Blobs {
		dst := filepath.Join(blobs, strings.TrimPrefix(b.Digest, "sha256:"))
		if _, err := os.Lstat(dst); err == nil {
			continue // listed twice
		}
		if err := bring(b, dst); err != nil {
			return "", hits, err
		}
	}
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(m.Blobs[0].Digest), Size: m.Blobs[0].Size}},
	})
	if err != nil {
		return "", hits, err
	}
	if err := os.WriteFile(filepath.Join(src, "index.json"), index, 0o600); err != nil {
		return "", hits, err
	}
	layout := []byte(`{"imageLayoutVersion":"` + ocispec.ImageLayoutVersion + `"}`)
	return src, hits, os.WriteFile(filepath.Join(src, ocispec.ImageLayoutFile), layout, 0o600)
}
