package foreman

// This file brings a task's image from the server (extension "images")
// when the node's store lacks it: the manifest from GET /image/<name>/,
// the archive through the blob API checked against the manifest's digest,
// then an import into the node's store, which checks the archive itself.
// The image cache then keeps it within the node's image budget as any
// image a task used.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
	if has, err := imp.Has(j.task.Image); err != nil || has {
		return err // an unreadable store is the runtime's to report
	}
	f.imageFetch.Lock()
	defer f.imageFetch.Unlock()
	if has, err := imp.Has(j.task.Image); err != nil || has {
		return err
	}
	img, err := f.cl.Image(ctx, j.task.Image)
	if errors.Is(err, client.ErrNotFound) {
		j.log.Warn("the task's image is neither on this node nor on the server", "image", j.task.Image)
		return nil
	}
	if err != nil {
		return fmt.Errorf("unable to read image %s from the server: %w", j.task.Image, err)
	}
	dir, err := os.MkdirTemp(f.jobsDir, "image-")
	if err != nil {
		return fmt.Errorf("unable to fetch image %s: %w", j.task.Image, err)
	}
	defer os.RemoveAll(dir)
	archive := filepath.Join(dir, "archive")
	if err := f.cl.ImageFetch(ctx, &img.Manifest, archive); err != nil {
		return fmt.Errorf("unable to fetch image %s from the server: %w", img.Info.Name, err)
	}
	if err := imp.Import(ctx, j.task.Image, archive); err != nil {
		return fmt.Errorf("unable to import image %s fetched from the server: %w", img.Info.Name, err)
	}
	j.log.Info("image fetched from the server", "image", img.Info.Name, "bytes", img.Info.Size)
	return nil
}
