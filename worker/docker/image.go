package docker

// Images into the engine without a registry: `kolejka-worker image import`
// with the docker runtime loads what it imported into the local store
// (package image, which validates and unpacks it) into the engine too.

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/moby/go-archive"
	"github.com/moby/go-archive/compression"

	"github.com/kolejka-go/kolejka/internal/dockerapi"
	"github.com/kolejka-go/kolejka/worker/image"
)

// LoadArchive loads a `docker save` archive into the engine, as `docker
// load` does: the images keep their layers, IDs and RepoTags.
func LoadArchive(ctx context.Context, cli *dockerapi.Client, archive io.Reader) error {
	if err := cli.ImageLoad(ctx, archive); err != nil {
		return fmt.Errorf("unable to load the image archive: %w", err)
	}
	return nil
}

// ImportImage gives the engine the image img that the local store has just
// imported from path, under img's name:
//   - a `docker save` archive is loaded as it is (layers, config) and
//     tagged with the name (its ID is its config digest, as the engine's);
//   - a root file system tar is imported as it is (`docker import`);
//   - an OCI layout (folder or tar), which engines before 25 cannot load,
//     is imported as the root file system the store unpacked from it.
//
// The format is sniffed from path itself: img.Format is that of the
// content the store had, which an earlier import of the same image in
// another format may have set. The image's config (ENV, ENTRYPOINT) does
// not matter to tasks: the runtime sets the entrypoint and the environment
// of every container.
func (r *Runtime) ImportImage(ctx context.Context, img *image.Image, path string) error {
	// A SIF file is no tar: the engine gets the store's unpacked root.
	format := image.FormatSIF
	if img.Format != image.FormatSIF {
		var err error
		if format, err = archiveFormat(path); err != nil {
			return fmt.Errorf("unable to import %s into the Docker engine: %w", img.Name, err)
		}
	}
	if format == image.FormatRootfsTar && img.Format != image.FormatRootfsTar {
		format = image.FormatOCI // a tar with neither manifest.json nor a rootfs: OCI
	}
	switch format {
	case image.FormatDockerSave:
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("unable to load %s into the Docker engine: %w", img.Name, err)
		}
		defer f.Close()
		if err := LoadArchive(ctx, r.cli, f); err != nil {
			return fmt.Errorf("unable to load %s into the Docker engine: %w", img.Name, err)
		}
		repo, tag, err := engineTag(img.Name)
		if err != nil {
			return err
		}
		if err := r.cli.ImageTag(ctx, img.ID, repo, tag); err != nil {
			return fmt.Errorf("unable to tag %s as %s in the Docker engine: %w", img.ID, img.Name, err)
		}
		return nil
	case image.FormatRootfsTar:
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("unable to import %s into the Docker engine: %w", img.Name, err)
		}
		defer f.Close()
		return r.importRootfs(ctx, img.Name, f)
	default:
		tar, err := archive.Tar(img.Rootfs, compression.None)
		if err != nil {
			return fmt.Errorf("unable to import %s into the Docker engine: %w", img.Name, err)
		}
		defer tar.Close()
		return r.importRootfs(ctx, img.Name, tar)
	}
}

// archiveFormat tells a `docker save` tar (manifest.json at its top) from
// any other tar; a folder is an OCI layout.
func archiveFormat(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		return image.FormatOCI, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	r, err := compression.DecompressStream(f)
	if err != nil {
		return "", err
	}
	defer r.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return image.FormatRootfsTar, nil
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		if strings.TrimPrefix(h.Name, "./") == "manifest.json" {
			return image.FormatDockerSave, nil
		}
	}
}

func (r *Runtime) importRootfs(ctx context.Context, name string, tar io.Reader) error {
	repo, tag, err := engineTag(name)
	if err != nil {
		return err
	}
	if err := r.cli.ImageImport(ctx, tar, repo, tag); err != nil {
		return fmt.Errorf("unable to import %s into the Docker engine: %w", name, err)
	}
	return nil
}

// engineTag is the repository and tag the engine is to name an image by:
// a name with a digest names content, not an image to make.
func engineTag(name string) (repo, tag string, err error) {
	repo, tag, dgst, err := image.EngineName(name)
	if err == nil && dgst != "" {
		err = fmt.Errorf("a name with a digest (%s) cannot name an image in the engine", dgst)
	}
	if err != nil {
		return "", "", fmt.Errorf("unable to name %s in the Docker engine: %w", name, err)
	}
	return repo, tag, nil
}
