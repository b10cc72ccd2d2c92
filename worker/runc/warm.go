package runc

import (
	"context"
	"fmt"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/image"
)

var _ worker.Preparer = (*Runtime)(nil)

// Prepare implements worker.Preparer: the container is made as Start makes
// it and started, at the least CPU share: runc's init sets it up and execs
// kolejka-init, which waits at the gate for its task.
//
// A node that pulls the task's image before every run (PullFrom with
// always) cannot: a prepared container's image would be that of an earlier
// pull.
func (r *Runtime) Prepare(ctx context.Context, c *worker.Container) (_ worker.Prepared, err error) {
	if r.registry != nil && r.alwaysPull {
		return nil, fmt.Errorf("unable to prepare a container: images are pulled before every run: %w", worker.ErrUnsupported)
	}
	// The container is made while earlier tasks run, maybe on their cores:
	// its runc init (namespaces, mounts, pivot) and kolejka-init's start
	// get the least CPU share while others want the CPU, and the default
	// again at Release.
	p, img, err := r.create(ctx, c, func(cs *specs.Spec) {
		if cs.Linux.Resources == nil {
			cs.Linux.Resources = &specs.LinuxResources{}
		}
		if cs.Linux.Resources.CPU == nil {
			cs.Linux.Resources.CPU = &specs.LinuxCPU{}
		}
		idle := uint64(minShares)
		cs.Linux.Resources.CPU.Shares = &idle
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = p.Destroy() // err is the news; the sweep of dead runs takes what Destroy leaves
		}
	}()
	if err := p.container.Start(p.proc); err != nil {
		return nil, fmt.Errorf("unable to create container %s: %w", p.container.ID(), err)
	}
	// runc's init is a process of ours from here: Destroy must reap it.
	p.started = true
	if err := p.container.Exec(); err != nil {
		return nil, fmt.Errorf("unable to start container %s: %w", p.container.ID(), err)
	}
	return &prepared{process: p, images: r.images, name: c.Image, imageID: img.ID}, nil
}

// prepared is a started container whose kolejka-init waits at the gate.
type prepared struct {
	*process
	images  *image.Store
	name    string // the image as the task names it
	imageID string // the image the container was made of
}

// CPU shares (v1; libcontainer converts them to cpu.weight on v2) of a
// prepared container's runtime group, and the kernel's defaults a started
// container's has.
const (
	minShares     = 2
	defaultShares = 1024
	defaultWeight = 100
)

// Release implements worker.Prepared: the runtime group's CPU share back to
// the default, as a container started cold has.
func (p *prepared) Release() (worker.Process, error) {
	cfg := p.container.Config()
	if cgroups.IsCgroup2UnifiedMode() {
		cfg.Cgroups.Resources.CpuShares, cfg.Cgroups.Resources.CpuWeight = 0, defaultWeight
	} else {
		cfg.Cgroups.Resources.CpuShares = defaultShares
	}
	if err := p.container.Set(cfg); err != nil {
		return nil, fmt.Errorf("unable to restore the prepared container's CPU share: %w", err)
	}
	return p.process, nil
}

// Current implements worker.Prepared: the container's init still runs,
// and its image is still the one its name names in the store (not
// replaced by an import or pull since).
func (p *prepared) Current() bool {
	st, err := p.container.Status()
	if err != nil || st != libcontainer.Running {
		return false
	}
	img, err := p.images.Get(p.name)
	return err == nil && img.ID == p.imageID
}
