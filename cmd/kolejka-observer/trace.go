package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// runTraced starts the command stopped after its execve (start returns its
// pid, or an exit code and an error), lets enter move it into the session,
// lets it run and waits for its end. ptrace binds a tracee to the thread
// that forked it: start, the wait for the stop and the detach all happen on
// one locked thread.
func runTraced(ctx context.Context, o runOptions, start func() (int, error), enter func(pid int) error) (int, time.Duration, error) {
	runtime.LockOSThread()
	locked := true
	unlock := func() {
		if locked {
			runtime.UnlockOSThread()
			locked = false
		}
	}
	defer unlock()
	pid, err := start()
	if err != nil {
		return pid, 0, err
	}
	kill := func() {
		_ = unix.Kill(pid, unix.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WALL, nil)
	}
	if code, err := waitExecStop(pid); err != nil {
		if code >= 0 {
			return code, 0, err // ended before it started: the helper's own exit code
		}
		kill()
		return 0, 0, err
	}
	pre, _ := processCPU(pid)
	if err := enter(pid); err != nil {
		kill()
		return 0, 0, fmt.Errorf("unable to move the command into its session: %w", err)
	}
	if err := unix.PtraceDetach(pid); err != nil {
		kill()
		return 0, 0, fmt.Errorf("unable to start the command: %w", err)
	}
	unlock()

	stopForward := func() {}
	if o.ForwardSignals {
		sigs := make(chan os.Signal, 8)
		signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
		done := make(chan struct{})
		go func() {
			for {
				select {
				case s := <-sigs:
					_ = unix.Kill(pid, s.(syscall.Signal))
				case <-done:
					return
				}
			}
		}()
		stopForward = func() { signal.Stop(sigs); close(done) }
	}
	defer stopForward()
	stopCtx := context.AfterFunc(ctx, func() { _ = unix.Kill(pid, unix.SIGKILL) })
	defer stopCtx()
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, pre, fmt.Errorf("unable to wait for the command: %w", err)
		}
		if ws.Exited() || ws.Signaled() {
			break
		}
	}
	return exitCode(ws), pre, nil
}

// processCPU reads the CPU time process pid has used, all its threads,
// the dead ones included, in nanoseconds: the kernel's CPU-time clock of
// the process (clock_getcpuclockid(3); MAKE_PROCESS_CPUCLOCK(pid,
// CPUCLOCK_SCHED) in the kernel's terms).
func processCPU(pid int) (time.Duration, error) {
	const cpuclockSched = 2
	var ts unix.Timespec
	if err := unix.ClockGettime(int32(^pid<<3|cpuclockSched), &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}

// waitExecStop waits until the traced process stops after its execve
// (SIGTRAP). Other signals that stop it before (the helper is a Go program
// that gets SIGURG, say) are delivered and waited past. If it ends
// instead, its exit code is returned with the error; -1 otherwise.
func waitExecStop(pid int) (int, error) {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("unable to wait for the command to start: %w", err)
		}
		switch {
		case ws.Exited() || ws.Signaled():
			return exitCode(ws), fmt.Errorf("the command ended before it started (exit %d): %w", exitCode(ws), errCannotRun)
		case ws.Stopped() && ws.StopSignal() == unix.SIGTRAP:
			return -1, nil
		case ws.Stopped():
			if err := unix.PtraceCont(pid, int(ws.StopSignal())); err != nil {
				return -1, fmt.Errorf("unable to let the command start: %w", err)
			}
		}
	}
}

// exitCode is a shell's view of a wait status: the exit code, or 128+N
// for signal N.
func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
