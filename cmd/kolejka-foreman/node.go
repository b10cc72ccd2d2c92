package main

// This file builds the node the options describe from its parts: the
// machine's capacity and tags, the runtime, the worker, the image store
// and the client signed in to the server; package foreman takes them
// ready.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/foreman"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/runtimes"
)

// openNode finds the machine's cores, memory and GPUs and makes the
// capacity and tags of them, opens the runtime and a worker on it (which
// sweeps what killed workers left), signs in to the server (waiting, while
// ctx lasts, for a server that cannot be reached yet: a node may boot
// before it) and returns the foreman, not yet running.
func openNode(ctx context.Context, o options, log *slog.Logger) (*foreman.Foreman, error) {
	m, err := foreman.DetectMachine(ctx)
	if err != nil {
		return nil, err
	}
	ro := runtimes.Options{ImageRoot: o.Images, Pull: o.Pull, Registry: &o.Registry}
	if o.State != "" {
		ro.RuncState = filepath.Join(o.State, "runc")
	}
	rt, err := runtimes.Open(o.Runtime, ro)
	if err != nil {
		return nil, fmt.Errorf("unable to open the runtime: %w", err)
	}
	capacity, cores, defaults := offer(m, o, log)
	tags, err := nodeTags(m, o)
	if err != nil {
		return nil, err
	}
	dir := o.Dir
	if dir == "" {
		dir = defaultDir
	}
	w, err := newWorker(ctx, rt, filepath.Join(dir, "scratch"), tags, o, log)
	if err != nil {
		return nil, err
	}
	images, err := imageStore(rt, o)
	if err != nil {
		return nil, err
	}
	cl, err := foreman.Connect(ctx, client.Config{Server: o.Server, Username: o.Username, Password: o.Password, Token: o.Token}, log)
	if err != nil {
		return nil, err
	}
	var login func(context.Context) error
	if o.Token == "" && o.Username != "" {
		login = cl.Login
	}
	return foreman.New(foreman.Config{
		Client:      cl,
		Login:       login,
		Executor:    w,
		Images:      images,
		Dir:         dir,
		CacheDir:    o.Cache,
		CacheSize:   o.CacheSize,
		Capacity:    capacity,
		Cores:       cores,
		Defaults:    defaults,
		Tags:        tags,
		Queues:      o.Queues,
		Concurrency: o.Concurrency,
		Warm:        o.Warm,
		PassEnv:     o.PassEnv,
		Interval:    o.Interval,
		Logger:      log,
	})
}

// offer is what the node offers tasks: the machine less the memory
// reserve, within the [foreman] caps; the cores tasks are pinned to; and
// the defaults of tasks that omit a limit.
func offer(m foreman.Machine, o options, log *slog.Logger) (capacity spec.Limits, cores []int, defaults spec.Limits) {
	// The worker gives tasks no GPUs yet (it refuses a gpus limit with
	// every runtime): offer none, so that no GPU task comes here to fail.
	const gpus = false
	if len(m.GPUs) > 0 {
		log.Warn("GPUs found but the worker cannot give them to tasks: offering none", "gpus", len(m.GPUs))
	}
	capacity, cores = m.Capacity(o.MemoryReserve, o.Limits, gpus)
	defaults = o.Defaults.Clone()
	if defaults.Memory == nil && capacity.Memory != nil && len(cores) > 0 {
		// A task without a memory limit gets a core's share of the node's
		// memory, not all of it (which would keep every other task out).
		share := *capacity.Memory / int64(len(cores))
		defaults.Memory = &share
	}
	return capacity, cores, defaults
}

// nodeTags are the tags of the options and, with auto_tags, the
// machine's.
func nodeTags(m foreman.Machine, o options) ([]string, error) {
	tags := o.Tags
	if o.AutoTags {
		auto, err := foreman.AutoTags(m.GPUs)
		if err != nil {
			return nil, err
		}
		tags = append(tags, auto...)
	}
	return foreman.NormalizeTags(tags), nil
}

// newWorker makes the worker that runs the node's tasks in scratch (which
// it creates); its results carry the node's tags.
func newWorker(ctx context.Context, rt worker.Runtime, scratch string, tags []string, o options, log *slog.Logger) (*worker.Worker, error) {
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return nil, fmt.Errorf("unable to create %s: %w", scratch, err)
	}
	stateDir := ""
	if o.State != "" {
		stateDir = filepath.Join(o.State, "worker")
	}
	w, err := worker.New(ctx, worker.Config{
		Temp:        scratch,
		StateDir:    stateDir,
		CgroupRoot:  o.CgroupRoot,
		Tags:        tags,
		OutputLimit: o.OutputLimit,
		InitPath:    o.InitPath,
		Logger:      log,
	}, rt)
	if err != nil {
		return nil, fmt.Errorf("unable to prepare the worker: %w", err)
	}
	return w, nil
}

// imageStore is where the runtime keeps its images, for the foreman's
// image cache; nil for the host runtime, which has none.
func imageStore(rt worker.Runtime, o options) (foreman.ImageStore, error) {
	switch rt.Name() {
	case "runc":
		st, err := runtimes.OpenImages(runtimes.Options{ImageRoot: o.Images})
		if err != nil {
			return nil, err
		}
		return foreman.RuncImages{Store: st}, nil
	case "docker":
		d, err := foreman.NewDockerImages()
		if err != nil {
			return nil, err
		}
		return d, nil
	}
	return nil, nil
}
