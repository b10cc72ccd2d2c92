// Package runc is the worker's default runtime: containers made in-process
// with opencontainers/runc's libcontainer, from images unpacked in the local
// image store (package image). No daemon is involved, so a container costs
// what the kernel charges for it (namespaces, mounts, cgroups) plus one
// re-execution of the running binary as runc's init.
//
// A container is an overlay root file system (the shared read-only image
// below, a private writable layer above, on the worker's storage tmpfs when
// the task limits storage), the task and result folders and kolejka-init
// bind-mounted in, fresh pid/ipc/uts/mount namespaces, and a fresh network
// namespace with only loopback when the task says network=false (otherwise
// the host's network). runc's own process is kept in the run's "runtime"
// cgroup; the task's processes are moved by the worker into "task".
package runc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/image"
)

// DefaultStateRoot holds libcontainer's state folders, one per container.
const DefaultStateRoot = "/run/kolejka/runc"

// idPrefix starts the name of every container of ours.
const idPrefix = "kolejka-"

// Runtime runs tasks in libcontainer containers.
type Runtime struct {
	stateRoot  string
	images     *image.Store
	registry   *image.Registry // set by PullFrom: pull missing images
	alwaysPull bool
	// leanInit, when set, is the sealed kolejka-runc-init every
	// container's `<self> init` hands over to (leaninit.go, hop.go);
	// leanPath is the one beside the executable, sealed on first use.
	leanInit *os.File
	leanPath string
	leanOnce sync.Once
	leanErr  error
}

var _ worker.Runtime = (*Runtime)(nil)

// New returns a runtime keeping container state in stateRoot (default
// DefaultStateRoot) and taking images from images.
func New(stateRoot string, images *image.Store) (*Runtime, error) {
	if stateRoot == "" {
		stateRoot = DefaultStateRoot
	}
	if err := os.MkdirAll(stateRoot, 0o700); err != nil {
		return nil, fmt.Errorf("unable to create runc state folder: %w", err)
	}
	return &Runtime{stateRoot: stateRoot, images: images, leanPath: defaultLeanInit()}, nil
}

// Name implements worker.Runtime.
func (r *Runtime) Name() string { return "runc" }

// Check implements worker.Runtime. Every limit the worker passes on is
// enforced: network by namespaces, storage by the worker's tmpfs under the
// writable layer.
func (r *Runtime) Check(l spec.Limits) error { return nil }

// Start implements worker.Runtime.
func (r *Runtime) Start(ctx context.Context, c *worker.Container) (_ worker.Process, err error) {
	p, _, err := r.create(ctx, c, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = p.Destroy() // err is the news; the sweep of dead runs takes what Destroy leaves
		}
	}()
	if err := p.container.Run(p.proc); err != nil {
		return nil, fmt.Errorf("unable to start container %s: %w", p.container.ID(), err)
	}
	p.started = true
	return p, nil
}

// create makes c's container, not started yet: its image acquired, its
// rootfs mounted, libcontainer's container of the spec (changed by tweak,
// when given) and its init process. On failure it has undone it all.
func (r *Runtime) create(ctx context.Context, c *worker.Container, tweak func(*specs.Spec)) (_ *process, _ *image.Image, err error) {
	img, release, err := r.acquire(ctx, c.Image)
	if err != nil {
		return nil, nil, fmt.Errorf("unable to use image %q: %w: %w", c.Image, worker.ErrImage, err)
	}
	p := &process{release: release}
	defer func() {
		if err != nil {
			_ = p.Destroy() // err is the news; the sweep of dead runs takes what Destroy leaves
		}
	}()
	if p.rootfs, err = mountRootfs(img.Rootfs, c); err != nil {
		return nil, nil, err
	}
	cs := containerSpec(p.rootfs, c)
	if tweak != nil {
		tweak(cs)
	}
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		Spec:         cs,
		NoNewKeyring: true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("unable to configure the container: %w", err)
	}
	id := idPrefix + c.RunID
	p.container, err = libcontainer.Create(r.stateRoot, id, config)
	if err != nil {
		return nil, nil, fmt.Errorf("unable to create container %s: %w", id, err)
	}
	if p.proc, err = r.initProcess(c); err != nil {
		return nil, nil, err
	}
	return p, img, nil
}

// initProcess is the container's first process, kolejka-init, started by
// `<self> init` handing over to the lean init when there is one.
func (r *Runtime) initProcess(c *worker.Container) (*libcontainer.Process, error) {
	proc := &libcontainer.Process{
		Args:   append([]string{worker.ContainerInit}, c.InitArgs...),
		Env:    c.Env,
		Cwd:    worker.ContainerTaskDir,
		Stdin:  c.Stdin,
		Stdout: c.Stdout,
		Stderr: c.Stderr,
		Init:   true,
	}
	lean, err := r.sealedLeanInit()
	if err != nil {
		return nil, err
	}
	if lean != nil {
		// Descriptor 3 of `<self> init`, where hop.go looks for it.
		proc.ExtraFiles = []*os.File{lean}
	}
	return proc, nil
}

// mountRootfs mounts the overlay root file system: the image's unpacked
// rootfs (shared, never written) below, a writable layer of the run's own
// above.
func mountRootfs(lower string, c *worker.Container) (string, error) {
	layer := c.Scratch
	if c.Storage != "" {
		layer = c.Storage
	}
	upper := filepath.Join(layer, "upper")
	work := filepath.Join(layer, "work")
	rootfs := filepath.Join(c.Scratch, "rootfs")
	for _, d := range []string{upper, work, rootfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("unable to create %s: %w", d, err)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", rootfs, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("unable to mount the root file system: %w", err)
	}
	return rootfs, nil
}

// containerSpec is runc's default container (its capabilities, masked and
// read-only paths, device list) made into a Kolejka task container.
func containerSpec(rootfs string, c *worker.Container) *specs.Spec {
	s := specconv.Example()
	s.Root = &specs.Root{Path: rootfs}
	s.Hostname = worker.ContainerHostname
	s.Process.Terminal = false
	s.Process.Args = append([]string{worker.ContainerInit}, c.InitArgs...)
	s.Process.Env = c.Env
	s.Process.Cwd = worker.ContainerTaskDir
	// Docker's default; 1024 (runc's) breaks ordinary judges.
	s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1 << 20, Soft: 1 << 20}}
	var mounts []specs.Mount
	for _, m := range s.Mounts {
		// Tasks measure themselves through kolejka-observer, not cgroupfs;
		// and their processes live in a cgroup next to runc's, which a
		// cgroup mount would not show anyway.
		if m.Destination != "/sys/fs/cgroup" {
			mounts = append(mounts, m)
		}
	}
	bind := func(src, dst string, ro bool) specs.Mount {
		opts := []string{"rbind", "nosuid", "nodev"}
		if ro {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts}
	}
	mounts = append(mounts,
		bind(c.TaskDir, worker.ContainerTaskDir, false),
		bind(c.ResultDir, worker.ContainerResultDir, false),
		bind(c.InitPath, worker.ContainerInit, true),
		bind(c.GateDir, worker.ContainerGateDir, false),
	)
	if c.ObserverSocket != "" {
		mounts = append(mounts, bind(c.ObserverSocket, observer.DefaultSocket, false))
	}
	s.Mounts = mounts
	if c.Limits.Network == nil || *c.Limits.Network {
		// Network allowed: share the host's (runc has no network of its own
		// to plug in; Kolejka's docker default is a bridge with outside
		// access, which this matches for a task's purposes).
		var ns []specs.LinuxNamespace
		for _, n := range s.Linux.Namespaces {
			if n.Type != specs.NetworkNamespace {
				ns = append(ns, n)
			}
		}
		s.Linux.Namespaces = ns
	}
	s.Linux.CgroupsPath = c.CgroupParent + "/runtime"
	if SeccompBuilt {
		s.Linux.Seccomp = taskSeccomp()
	}
	return s
}

// process is a started container.
type process struct {
	container *libcontainer.Container
	proc      *libcontainer.Process
	rootfs    string
	release   func()
	started   bool // Run succeeded: there is a process to wait for

	destroyOnce sync.Once
	destroyErr  error
}

func (p *process) Pid() int {
	pid, err := p.proc.Pid()
	if err != nil {
		return -1
	}
	return pid
}

func (p *process) Wait() (worker.ExitStatus, error) {
	ps, err := p.proc.Wait()
	if ps == nil {
		return worker.ExitStatus{}, fmt.Errorf("unable to wait for the container: %w", err)
	}
	ws := ps.Sys().(syscall.WaitStatus)
	switch {
	case ws.Exited():
		return worker.ExitStatus{Code: ws.ExitStatus()}, nil
	case ws.Signaled():
		return worker.ExitStatus{Code: 128 + int(ws.Signal()), Signal: int(ws.Signal())}, nil
	}
	return worker.ExitStatus{}, fmt.Errorf("unable to read the container's exit status: %v", ws)
}

// Kill sends SIGKILL to the container's init; the pid namespace dies with it.
func (p *process) Kill() error {
	if err := p.proc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("unable to kill the container: %w", err)
	}
	return nil
}

func (p *process) Destroy() error {
	p.destroyOnce.Do(func() {
		var errs []error
		if p.container != nil {
			// libcontainer refuses to destroy a running container. After a
			// failed start its state can be half made, and Status has been
			// seen to dereference nil there: a panic must not take the whole
			// worker (a foreman's other tasks) down with this container.
			errs = append(errs, recovered(func() error {
				if st, err := p.container.Status(); err == nil && st != libcontainer.Stopped {
					_ = p.container.Signal(unix.SIGKILL)
					if p.proc != nil && p.started {
						_, _ = p.proc.Wait()
					}
				}
				return nil
			}))
			errs = append(errs, recovered(p.container.Destroy))
		}
		if p.rootfs != "" {
			// The worker may be removing the scratch folder meanwhile: a
			// rootfs already gone (ENOENT) or unmounted (EINVAL) is fine.
			if err := unix.Unmount(p.rootfs, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
				errs = append(errs, fmt.Errorf("unable to unmount %s: %w", p.rootfs, err))
			}
		}
		if p.release != nil {
			p.release()
		}
		p.destroyErr = errors.Join(errs...)
	})
	return p.destroyErr
}

// Sweep implements worker.Runtime: containers of dead runs are killed and
// destroyed (their root file systems are unmounted by the worker's sweep of
// their scratch folders).
func (r *Runtime) Sweep(ctx context.Context, alive func(string) bool) error {
	entries, err := os.ReadDir(r.stateRoot)
	if errors.Is(err, os.ErrNotExist) {
		return nil // no state folder, no container to sweep
	}
	if err != nil {
		// Containers it cannot list may still run, holding a dead run's
		// processes and mounts: the caller must hear of it.
		return fmt.Errorf("unable to list the containers in %s: %w", r.stateRoot, err)
	}
	var errs []error
	for _, e := range entries {
		id := e.Name()
		if !strings.HasPrefix(id, idPrefix) || alive(strings.TrimPrefix(id, idPrefix)) {
			continue
		}
		c, err := libcontainer.Load(r.stateRoot, id)
		if err == nil {
			stopped := false
			for i := 0; i < 200 && !stopped; i++ {
				st, err := c.Status()
				stopped = err != nil || st == libcontainer.Stopped
				if !stopped {
					_ = c.Signal(unix.SIGKILL)
					time.Sleep(5 * time.Millisecond)
				}
			}
			if err := c.Destroy(); err == nil {
				continue
			}
		}
		// A container that never finished starting has no usable state:
		// its folder is all there is to remove.
		if err := os.RemoveAll(filepath.Join(r.stateRoot, id)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// recovered runs f, turning a panic of libcontainer's into an error.
func recovered(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("unable to destroy the container: libcontainer panicked: %v", p)
		}
	}()
	return f()
}
