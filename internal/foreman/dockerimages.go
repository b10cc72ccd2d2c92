package foreman

// This file owns the Docker engine's images as an ImageStore.

import (
	"context"
	"errors"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/kolejka-go/kolejka/internal/dockerapi"
	"github.com/kolejka-go/kolejka/worker/image"
)

// DockerImages is a Docker engine's images as an ImageStore.
type DockerImages struct{ Client *dockerapi.Client }

var _ ImageStore = DockerImages{}

// NewDockerImages makes a client of the engine as the docker command finds
// it (DOCKER_HOST, by default the local socket); the engine is first
// reached by the first call.
func NewDockerImages() (DockerImages, error) {
	cli, err := dockerapi.FromEnv()
	if err != nil {
		return DockerImages{}, fmt.Errorf("unable to use the Docker engine: %w", err)
	}
	return DockerImages{Client: cli}, nil
}

// List returns the engine's images with their tags, normalized.
func (d DockerImages) List(ctx context.Context) ([]StoredImage, error) {
	items, err := d.Client.ImageList(ctx)
	if err != nil {
		return nil, fmt.Errorf("unable to list the engine's images: %w", err)
	}
	out := make([]StoredImage, 0, len(items))
	for _, it := range items {
		s := StoredImage{ID: it.ID, Size: it.Size, Added: time.Unix(it.Created, 0)}
		for _, tag := range it.RepoTags {
			if n, err := image.NormalizeName(tag); err == nil {
				s.Names = append(s.Names, n)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// Remove untags every name of the image; the engine deletes the image with
// the last one. An image a container uses is refused by the engine.
func (d DockerImages) Remove(ctx context.Context, img StoredImage) error {
	var errs []error
	for _, n := range img.Names {
		_, err := d.Client.ImageRemove(ctx, n, dockerapi.ImageRemoveOptions{})
		if err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("unable to remove image %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}
