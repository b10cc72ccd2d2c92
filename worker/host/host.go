// Package host is the runtime for trusted executables: the task runs as a
// plain process of this machine, with no image and in the host's file
// system, but in its own pid, ipc and uts namespaces (and a network
// namespace with only loopback when network=false) and, like every task,
// in its own cgroup with its limits.
//
// The pid namespace is what makes the run end cleanly: kolejka-init is its
// PID 1, and when the task's main process ends, init exits and the kernel
// kills whatever the task left behind.
package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
)

// Runtime starts tasks as host processes.
type Runtime struct {
	cg *cgroup.Hierarchy
}

var (
	_ worker.Runtime = (*Runtime)(nil)
	_ worker.HostFS  = (*Runtime)(nil)
)

// New returns the host runtime; cg is where kolejka-init's own cgroup goes.
func New(cg *cgroup.Hierarchy) *Runtime { return &Runtime{cg: cg} }

// Name implements worker.Runtime.
func (r *Runtime) Name() string { return "host" }

// HostFS implements worker.HostFS: the task sees its folder at its host path.
func (r *Runtime) HostFS() bool { return true }

// Check implements worker.Runtime. Without a container there is no
// writable layer to cap.
func (r *Runtime) Check(l spec.Limits) error {
	if l.Storage != nil {
		return fmt.Errorf("limits.storage: the host runtime has no container layer to limit: %w", worker.ErrUnsupported)
	}
	return nil
}

// Start implements worker.Runtime.
func (r *Runtime) Start(ctx context.Context, c *worker.Container) (worker.Process, error) {
	args := c.InitArgs
	flags := uintptr(unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS)
	if c.Limits.Network != nil && !*c.Limits.Network {
		flags |= unix.CLONE_NEWNET
		args = append([]string{"--lo-up"}, args...)
	}
	// kolejka-init's own group, apart from the task's: it is ours, and the
	// sweep of a dead run finds it there.
	g, err := r.cg.Create(c.CgroupParent+"/runtime", &cgroup.Resources{})
	if err != nil {
		return nil, fmt.Errorf("unable to create the runtime's cgroup: %w", err)
	}
	cmd := &exec.Cmd{
		Path:        c.InitPath,
		Args:        append([]string{worker.InitName}, args...),
		Env:         c.Env,
		Dir:         c.TaskDir,
		Stdin:       c.Stdin,
		Stdout:      c.Stdout,
		Stderr:      c.Stderr,
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: flags},
	}
	// On failure below the start's error is the news: a group left
	// behind is swept with the dead run's.
	if err := cmd.Start(); err != nil {
		_ = g.Delete()
		return nil, fmt.Errorf("unable to start %s: %w", c.InitPath, err)
	}
	p := &process{cmd: cmd, group: g}
	// Until init is in its group it is only in the worker's; it does
	// nothing before the gate, so moving it now loses nothing.
	if err := g.Add(cmd.Process.Pid); err != nil {
		_ = p.Kill()
		_, _ = p.Wait()
		_ = p.Destroy()
		return nil, fmt.Errorf("unable to move kolejka-init into its cgroup: %w", err)
	}
	return p, nil
}

type process struct {
	cmd   *exec.Cmd
	group *cgroup.Group

	waitOnce sync.Once
	status   worker.ExitStatus
	waitErr  error
}

func (p *process) Pid() int { return p.cmd.Process.Pid }

func (p *process) Wait() (worker.ExitStatus, error) {
	p.waitOnce.Do(func() {
		err := p.cmd.Wait()
		ps := p.cmd.ProcessState
		if ps == nil {
			p.waitErr = fmt.Errorf("unable to wait for kolejka-init: %w", err)
			return
		}
		ws := ps.Sys().(syscall.WaitStatus)
		switch {
		case ws.Exited():
			p.status = worker.ExitStatus{Code: ws.ExitStatus()}
		case ws.Signaled():
			p.status = worker.ExitStatus{Code: 128 + int(ws.Signal()), Signal: int(ws.Signal())}
		}
	})
	return p.status, p.waitErr
}

// Kill kills kolejka-init: as PID 1 of the task's pid namespace, its death
// takes every task process with it.
func (p *process) Kill() error {
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("unable to kill kolejka-init: %w", err)
	}
	return nil
}

func (p *process) Destroy() error {
	// Never leave a zombie or a live init behind, whatever happened before.
	_ = p.Kill()
	_, _ = p.Wait()
	return p.group.Delete()
}

// Sweep implements worker.Runtime: the host runtime leaves nothing but
// cgroups, which the worker sweeps.
func (r *Runtime) Sweep(ctx context.Context, alive func(string) bool) error { return nil }
