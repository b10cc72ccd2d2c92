package runc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/kolejka-go/kolejka/worker/image"
)

// PullFrom makes the runtime pull a task's image from its registry when the
// store lacks it, as containerd does; with always, before every task (the
// store then reuses what it holds, so an unchanged image costs a manifest
// request).
func (r *Runtime) PullFrom(reg *image.Registry, always bool) {
	r.registry, r.alwaysPull = reg, always
}

// acquire resolves the task's image, pulling it first if the runtime pulls.
func (r *Runtime) acquire(ctx context.Context, name string) (*image.Image, func(), error) {
	if r.registry != nil && r.alwaysPull {
		if _, err := r.images.Pull(ctx, r.registry, name); err != nil {
			return nil, nil, err
		}
	}
	img, release, err := r.images.Acquire(name)
	if err == nil || r.registry == nil || r.alwaysPull || !errors.Is(err, image.ErrNotFound) {
		return img, release, err
	}
	slog.Info("pulling the task's image", "image", name)
	if _, perr := r.images.Pull(ctx, r.registry, name); perr != nil {
		return nil, nil, fmt.Errorf("%w; %w", err, perr)
	}
	return r.images.Acquire(name)
}
