package docker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/dockerapi"
	"github.com/kolejka-go/kolejka/worker"
)

// process is a started container: kolejka-init and, below it, the task.
type process struct {
	r     *Runtime
	name  string // kolejka-<run id>
	id    string // the engine's container id, once created
	stdio *stdio

	// watch fills status/waitErr and closes exited when the engine reports
	// the container's exit (or the wait fails, or Destroy stops it); then
	// it closes removed once the engine has removed the container (or
	// fills removeErr when it cannot say).
	waitCtx   context.Context
	stopWait  context.CancelFunc
	exited    chan struct{}
	status    worker.ExitStatus
	waitErr   error
	removed   chan struct{}
	removeErr error

	pidOnce sync.Once
	pid     int

	destroyOnce sync.Once
	destroyErr  error
}

// watch waits for the engine's report of the container's next exit. By
// then every process of the container is gone (the kernel kills and reaps
// the rest of a pid namespace before its PID 1 is reported dead), so the
// stdio keepers are closed before Wait returns: the copiers end with what
// is buffered. Then it waits for the engine to remove the container
// (AutoRemove), which Destroy waits for in turn.
func (p *process) watch(exit, gone <-chan dockerapi.WaitResult) {
	p.wait(<-exit)
	p.stdio.containerGone()
	close(p.exited)
	p.removeErr = (<-gone).Err
	close(p.removed)
}

func (p *process) wait(w dockerapi.WaitResult) {
	if w.Err != nil {
		p.waitErr = p.afterWaitError(w.Err)
		return
	}
	p.status = exitStatus(w.Response.StatusCode)
	if w.Response.Error != nil && w.Response.Error.Message != "" {
		p.waitErr = fmt.Errorf("the Docker engine reported for container %s: %s", p.name, w.Response.Error.Message)
	}
}

// afterWaitError decides what a failed wait means. After Destroy it is
// expected. Otherwise the engine connection broke: the container is looked
// up once; if it ended, its exit code stands; if it still runs, it is
// killed, since a container nobody can watch cannot be judged.
func (p *process) afterWaitError(err error) error {
	if p.waitCtx.Err() != nil {
		return fmt.Errorf("container %s was destroyed before it ended", p.name)
	}
	ctx, cancel := p.r.callCtx(context.Background())
	defer cancel()
	in, ierr := p.r.cli.ContainerInspect(ctx, p.id)
	if ierr == nil && in.State != nil && !in.State.Running && in.State.FinishedAt != "" && in.State.FinishedAt != "0001-01-01T00:00:00Z" {
		p.status = exitStatus(int64(in.State.ExitCode))
		return nil
	}
	_ = p.Kill()
	return fmt.Errorf("unable to wait for container %s: %w", p.name, err)
}

// exitStatus is kolejka-init's exit code as the engine reports it. Init
// mirrors the task (256−N for signal N, as Kolejka's stage2); the engine
// reports 128+N when init itself was killed (docker kill: 137, SIGKILL).
func exitStatus(code int64) worker.ExitStatus {
	st := worker.ExitStatus{Code: int(code)}
	if code == 128+int64(unix.SIGKILL) {
		st.Signal = int(unix.SIGKILL)
	}
	return st
}

// Pid implements worker.Process: kolejka-init's pid on the host, asked of
// the engine on first use (the worker finds the task through the gate and
// does not need it). -1 when the engine cannot say.
func (p *process) Pid() int {
	p.pidOnce.Do(func() {
		p.pid = -1
		ctx, cancel := p.r.callCtx(context.Background())
		defer cancel()
		in, err := p.r.cli.ContainerInspect(ctx, p.id)
		if err == nil && in.State != nil && in.State.Pid > 0 {
			p.pid = in.State.Pid
		}
	})
	return p.pid
}

// Wait implements worker.Process.
func (p *process) Wait() (worker.ExitStatus, error) {
	<-p.exited
	return p.status, p.waitErr
}

// Kill implements worker.Process: SIGKILL to kolejka-init, whose end takes
// the pid namespace, and so every process of the task, with it. A container
// that already ended is not an error.
func (p *process) Kill() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	ctx, cancel := p.r.callCtx(context.Background())
	defer cancel()
	err := p.r.cli.ContainerKill(ctx, p.id, "KILL")
	if err != nil && !cerrdefs.IsConflict(err) && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("unable to kill container %s: %w", p.name, err)
	}
	return nil
}

// remove force-removes the container (killing it first if it still runs;
// its anonymous volumes too). Gone already is fine.
func (p *process) remove() error {
	// By name when creation failed: the engine may have made the container
	// all the same (a call that timed out).
	target := p.id
	if target == "" {
		target = p.name
	}
	ctx, cancel := p.r.callCtx(context.Background())
	defer cancel()
	err := p.r.cli.ContainerRemove(ctx, target, dockerapi.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("unable to remove container %s: %w", p.name, err)
	}
	return nil
}

// Destroy implements worker.Process: it waits for the engine to remove an
// ended container, or force-removes one that still runs (killing it) or
// never ran, then closes the stdio plumbing. It runs in full whatever
// happened before, also after a failed Start, and only once.
func (p *process) Destroy() error {
	p.destroyOnce.Do(func() {
		var errs []error
		var err error
		if p.stopWait != nil {
			select {
			case <-p.exited: // ended: the engine is removing it
			default:
				// Still running, or never started. Either way the engine
				// may be removing it at the same moment ("already in
				// progress"): checked again below.
				err = p.remove()
			}
			select {
			case <-p.removed:
			case <-time.After(p.r.opts.Timeout):
			}
			p.stopWait()
			<-p.removed
			if err != nil || p.removeErr != nil {
				err = p.remove()
			}
		} else {
			err = p.remove()
		}
		removed := err == nil
		if err != nil {
			errs = append(errs, err)
		}
		if p.stdio != nil {
			if !removed {
				// The container may live on: do not wait for its ends
				// of the FIFOs.
				p.stdio.abort()
			}
			if err := p.stdio.close(); err != nil {
				errs = append(errs, err)
			}
		}
		p.destroyErr = errors.Join(errs...)
	})
	return p.destroyErr
}
