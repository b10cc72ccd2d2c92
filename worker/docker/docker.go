// Package docker is the worker runtime that runs tasks as containers of a
// Docker engine (through internal/dockerapi), as Kolejka's own worker does. Images are
// the engine's: used when present, pulled when missing (or always, with
// Options.Pull).
//
// The container is shaped like the runc runtime's: kolejka-init, bind-mounted
// read-only, is its entrypoint and PID 1; the task folder is mounted at
// /var/lib/kolejka/task (the working folder), the result folder at
// /var/lib/kolejka/result, the worker's gate at /var/lib/kolejka/gate, the
// FIFOs of the task's stdio at /var/lib/kolejka/stdio (read-only); the
// hostname is kolejka, the user root; network "none" when the task says
// network=false, the engine's default bridge otherwise. The engine's
// folders must be the worker's: the engine runs on this machine, in its
// mount namespace.
//
// Lifecycle of one run (worker.Runtime):
//
//  1. Check refuses a storage limit unless the engine's storage driver can
//     cap a container's size.
//  2. Start makes sure the image is there, creates the FIFOs of the task's
//     stdio (stdio.go: Docker cannot be handed descriptors), creates the
//     container, registers waits for its next exit and for its removal,
//     then starts it: a wait registered after the start could miss a fast
//     exit.
//  3. kolejka-init connects to the worker's gate; the worker moves the task
//     into its own cgroup (outside Docker's container cgroup: the task
//     cgroup is what enforces and measures the limits; the same limits
//     given to the engine bound kolejka-init and show in `docker inspect`)
//     and lets it run.
//  4. Wait returns kolejka-init's exit status, which mirrors the task's;
//     Kill is `docker kill -s KILL`.
//  5. The engine removes the container once it has ended (AutoRemove, as
//     `docker run --rm`), side by side with the worker's collecting of the
//     result; Destroy waits for that, or force-removes a container that
//     still runs or never ran, then closes the stdio plumbing.
//  6. Containers carry the label org.kolejka.run=<run id>: Sweep removes
//     those whose run is dead (their worker was killed).
package docker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/kolejka-go/kolejka/internal/dockerapi"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/image"
)

// Labels on every container of ours.
const (
	// LabelRun holds the run's id: Sweep removes containers whose run is
	// not alive any more.
	LabelRun = "org.kolejka.run"
)

// namePrefix starts every container's name: kolejka-<run id>.
const namePrefix = "kolejka-"

// Defaults of Options.
const (
	DefaultTimeout     = time.Minute
	DefaultPullTimeout = 30 * time.Minute
)

// Engine limits never go below these, whatever the task's limits: they bind
// only kolejka-init (the task runs in the worker's cgroup, which enforces
// the task's limits). Docker refuses a memory limit under 6 MiB, and
// kolejka-init, a Go program, has 6 threads and 2.5 MB resident (measured),
// plus the task itself from its fork until the worker moves it.
const (
	minEngineMemory = 32 << 20
	minEnginePids   = 32
)

// Options configure the runtime.
type Options struct {
	// Pull pulls the task's image before every run (`docker run --pull
	// always`); otherwise an image the engine has is used as it is and a
	// missing one is pulled.
	Pull bool
	// Timeout bounds each call to the engine (create, start, inspect, kill,
	// remove, list). Default DefaultTimeout.
	Timeout time.Duration
	// PullTimeout bounds the pull of one image. Default DefaultPullTimeout.
	PullTimeout time.Duration
}

// Runtime runs tasks in Docker containers. It is safe for concurrent use.
type Runtime struct {
	cli  *dockerapi.Client
	opts Options

	mu     sync.Mutex
	driver *storageDriver // cached once known
}

var _ worker.Runtime = (*Runtime)(nil)

// New connects to the Docker engine named by the environment (DOCKER_HOST,
// by default the local socket; DOCKER_API_VERSION; see dockerapi.FromEnv)
// and negotiates the API version. An engine that does not
// answer is an error here, before any task is accepted.
func New(opts Options) (*Runtime, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.PullTimeout <= 0 {
		opts.PullTimeout = DefaultPullTimeout
	}
	cli, err := dockerapi.FromEnv()
	if err != nil {
		return nil, fmt.Errorf("unable to configure the Docker client: %w", err)
	}
	r := &Runtime{cli: cli, opts: opts}
	ctx, cancel := r.callCtx(context.Background())
	defer cancel()
	if err := cli.Ping(ctx); err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("unable to start the docker runtime: %w", err)
	}
	return r, nil
}

// Close releases the client's connections.
func (r *Runtime) Close() error { return r.cli.Close() }

// Client is the engine client, for what the worker does not cover (the
// image commands).
func (r *Runtime) Client() *dockerapi.Client { return r.cli }

// Name implements worker.Runtime.
func (r *Runtime) Name() string { return "docker" }

// callCtx bounds one engine call.
func (r *Runtime) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.opts.Timeout)
}

// storageDriver is what the engine says of its storage.
type storageDriver struct {
	name    string // overlay2, btrfs, ...
	backing string // "Backing Filesystem" of DriverStatus, if any
}

// sizable reports whether the driver honours `--storage-opt size=`.
// overlay2 does only on xfs mounted with pquota, which the engine does not
// report; an xfs without it is refused at create (see Start).
func (d *storageDriver) sizable() bool {
	switch d.name {
	case "btrfs", "zfs", "devicemapper":
		return true
	case "overlay2":
		return d.backing == "xfs"
	}
	return false
}

func (d *storageDriver) String() string {
	if d.backing != "" {
		return d.name + " on " + d.backing
	}
	return d.name
}

func (r *Runtime) storageDriver() (*storageDriver, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.driver != nil {
		return r.driver, nil
	}
	ctx, cancel := r.callCtx(context.Background())
	defer cancel()
	info, err := r.cli.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("unable to ask the Docker engine for its storage driver: %w", err)
	}
	d := &storageDriver{name: info.Driver}
	for _, kv := range info.DriverStatus {
		if kv[0] == "Backing Filesystem" {
			d.backing = kv[1]
		}
	}
	r.driver = d
	return d, nil
}

// Check implements worker.Runtime. Network, memory, swap, pids and cpus are
// the worker's (the task cgroup) and the engine's; a storage limit needs a
// storage driver that can cap a container's writable layer.
func (r *Runtime) Check(l spec.Limits) error {
	if l.Storage == nil {
		return nil
	}
	d, err := r.storageDriver()
	if err != nil {
		return err
	}
	if !d.sizable() {
		return fmt.Errorf("limits.storage: the Docker engine's storage driver %s cannot cap a container's size "+
			"(--storage-opt size= needs overlay2 on xfs with pquota, btrfs, zfs or devicemapper): %w", d, worker.ErrUnsupported)
	}
	return nil
}

// Start implements worker.Runtime.
func (r *Runtime) Start(ctx context.Context, c *worker.Container) (_ worker.Process, err error) {
	if err := r.ensureImage(ctx, c.Image); err != nil {
		return nil, err
	}
	p := &process{r: r, name: namePrefix + c.RunID, exited: make(chan struct{}), removed: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = p.Destroy() // err is the news; the sweep of dead runs takes what Destroy leaves
		}
	}()
	if p.stdio, err = newStdio(filepath.Join(c.Scratch, "stdio"), ContainerStdioDir, c); err != nil {
		return nil, err
	}
	cfg, host := containerConfig(c, p.stdio)

	cctx, cancel := r.callCtx(ctx)
	created, err := r.cli.ContainerCreate(cctx, p.name, cfg, host)
	cancel()
	if err != nil {
		if c.Limits.Storage != nil && strings.Contains(err.Error(), "storage-opt") {
			return nil, fmt.Errorf("unable to create container %s: limits.storage: %w: %w", p.name, worker.ErrUnsupported, err)
		}
		return nil, fmt.Errorf("unable to create container %s: %w", p.name, err)
	}
	p.id = created.ID

	// The waits first: registered after the start, they could miss a fast
	// exit. One for the exit (Wait), one for the engine's removal of the
	// container that follows it (Destroy). Destroy counts on watch once
	// stopWait is set: both are set together.
	waitCtx, stopWait := context.WithCancel(context.Background())
	exit, err := r.cli.ContainerWait(waitCtx, p.id, container.WaitConditionNextExit)
	if err != nil {
		stopWait()
		return nil, fmt.Errorf("unable to wait for container %s: %w", p.name, err)
	}
	gone, err := r.cli.ContainerWait(waitCtx, p.id, container.WaitConditionRemoved)
	if err != nil {
		stopWait()
		return nil, fmt.Errorf("unable to wait for container %s: %w", p.name, err)
	}
	p.waitCtx, p.stopWait = waitCtx, stopWait
	go p.watch(exit, gone)

	cctx, cancel = r.callCtx(ctx)
	err = r.cli.ContainerStart(cctx, p.id)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("unable to start container %s: %w", p.name, err)
	}
	return p, nil
}

// containerConfig is the container of c: kolejka-init as its entrypoint with
// the stdio flags in front of the worker's arguments.
func containerConfig(c *worker.Container, s *stdio) (*container.Config, *container.HostConfig) {
	cfg := &container.Config{
		Image:      c.Image,
		Hostname:   worker.ContainerHostname,
		User:       "0:0",
		Env:        c.Env,
		Entrypoint: []string{worker.ContainerInit},
		Cmd:        append(append([]string{}, s.args...), c.InitArgs...),
		WorkingDir: worker.ContainerTaskDir,
		Labels:     map[string]string{LabelRun: c.RunID},
	}
	bind := func(src, dst string, ro bool) mount.Mount {
		return mount.Mount{Type: mount.TypeBind, Source: src, Target: dst, ReadOnly: ro}
	}
	noInit := false
	host := &container.HostConfig{
		Mounts: []mount.Mount{
			bind(c.TaskDir, worker.ContainerTaskDir, false),
			bind(c.ResultDir, worker.ContainerResultDir, false),
			bind(c.InitPath, worker.ContainerInit, true),
			bind(c.GateDir, worker.ContainerGateDir, false),
			bind(s.dir, ContainerStdioDir, true),
		},
		NetworkMode: "default",
		// Nothing is attached and nothing is logged: the task's output
		// goes through the FIFOs.
		LogConfig: container.LogConfig{Type: "none"},
		// The engine removes the container as soon as it has ended (as
		// `docker run --rm`), while the worker collects the result.
		AutoRemove:    true,
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		// kolejka-init must be PID 1 even where the engine defaults to
		// its own init.
		Init: &noInit,
	}
	// The engine shows the container its cgroups read-only; runc's
	// containers (and so all tasks) see no cgroup file system: tasks
	// measure themselves through the observer.
	host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeTmpfs, Target: "/sys/fs/cgroup", ReadOnly: true,
		TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 4096}})
	if c.ObserverSocket != "" {
		// Judges inside reach kolejka-observer where Kolejka's stage2 does.
		host.Mounts = append(host.Mounts, bind(c.ObserverSocket, observer.DefaultSocket, false))
	}
	if c.Limits.Network != nil && !*c.Limits.Network {
		host.NetworkMode = "none"
	}
	l := c.Limits
	if l.Memory != nil {
		host.Memory = max(*l.Memory, minEngineMemory)
		host.MemorySwap = host.Memory
		if l.Swap != nil {
			host.MemorySwap += *l.Swap
		}
	}
	if l.Pids != nil {
		pids := max(*l.Pids, minEnginePids)
		host.PidsLimit = &pids
	}
	host.CpusetCpus = c.CPUSet
	if l.Storage != nil {
		host.StorageOpt = map[string]string{"size": strconv.FormatInt(*l.Storage, 10)}
	}
	return cfg, host
}

// Sweep implements worker.Runtime: containers of runs that are not alive
// (their worker was killed) are force-removed, running or not.
func (r *Runtime) Sweep(ctx context.Context, alive func(runID string) bool) error {
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	list, err := r.cli.ContainerList(cctx, dockerapi.ContainerListOptions{All: true, Labels: []string{LabelRun}})
	if err != nil {
		return fmt.Errorf("unable to list containers: %w", err)
	}
	var errs []error
	for _, ct := range list {
		run := ct.Labels[LabelRun]
		if run == "" || alive(run) {
			continue
		}
		// Not found or conflict: gone already, or the engine is removing
		// it (AutoRemove, once the worker's cgroup sweep ended its task).
		if err := r.cli.ContainerRemove(cctx, ct.ID, dockerapi.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil &&
			!cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
			errs = append(errs, fmt.Errorf("unable to remove container %s of run %s: %w", ct.ID, run, err))
		}
	}
	return errors.Join(errs...)
}

// ensureImage makes sure the engine has ref: pulled when missing, or
// always with Options.Pull. Failures wrap worker.ErrImage and name ref.
func (r *Runtime) ensureImage(ctx context.Context, ref string) error {
	if !r.opts.Pull {
		cctx, cancel := r.callCtx(ctx)
		_, err := r.cli.ImageInspect(cctx, ref)
		cancel()
		if err == nil {
			return nil
		}
		if !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("unable to look up image %q in the Docker engine: %w", ref, err)
		}
	}
	repo, tag, dgst, err := image.EngineName(ref)
	if err != nil {
		return fmt.Errorf("unable to use image %q: %w: %w", ref, worker.ErrImage, err)
	}
	if dgst != "" {
		tag = string(dgst)
	}
	pctx, cancel := context.WithTimeout(ctx, r.opts.PullTimeout)
	defer cancel()
	if err := r.cli.ImagePull(pctx, repo, tag); err != nil {
		how := "missing from the Docker engine and could not be pulled"
		if r.opts.Pull {
			how = "could not be pulled"
		}
		return fmt.Errorf("unable to use image %q: it is %s: %w: %w", ref, how, worker.ErrImage, err)
	}
	return nil
}
