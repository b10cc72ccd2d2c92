package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/observer/daemon"
	"github.com/kolejka-go/kolejka/internal/pid1"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// runMeasured is `kolejka-observer run`: it runs one command in a fresh
// session and returns its exit status and final stats, measuring exactly
// the command: it enters its session stopped right after its execve(2),
// before its first instruction, and runs only once it is in.
//
// Through a daemon (its socket answers) the daemon knows a caller only as
// the process that opened a connection, and a stopped process cannot
// connect. So the command is started through a helper, this very program
// re-executed (helper.go), which connects to the daemon, hands the
// connected socket back over a socket pair (SCM_RIGHTS), asks to be traced
// (PTRACE_TRACEME) and executes the command. The kernel stops it after the
// execve; runMeasured then sends "attach" over the handed-back connection,
// which the daemon attributes to the helper's pid, which is now the
// command's; the command moves into the session; runMeasured detaches
// (trace.go) and it runs.
//
// In-process (no daemon answers; this needs root) a daemon.Registry of its
// own serves the same session, and the command is started traced directly.
// Both ways the session is opened in runMeasured's own cgroup, limited, and
// closed once the command ended: what the command left running is killed
// and the stats are final.

// runOptions describe one run.
type runOptions struct {
	Args   []string // the command and its arguments, looked up in PATH
	Limits spec.Limits
	// Socket is the daemon's ("" means observer.DefaultSocket).
	Socket string
	// Stdin, Stdout, Stderr default to runMeasured's own; Env to its environment;
	// Dir to its working folder.
	Stdin, Stdout, Stderr *os.File
	Env                   []string
	Dir                   string
	// ForwardSignals passes SIGINT, SIGTERM, SIGHUP and SIGQUIT that this
	// process receives on to the command.
	ForwardSignals bool
	Logger         *slog.Logger
}

// runResult is how a run ended.
type runResult struct {
	Exit   int        // the command's exit code; 128+N if killed by signal N
	Stats  spec.Stats // the session's final stats
	Daemon bool       // measured by a daemon (false: in-process)
	// PreExec is the CPU time the command's process used before its first
	// instruction: the helper's work and the execve itself, read at the
	// stop from the kernel's CPU clock of the process. The session does
	// not count it; the process's own getrusage(2) does, since CPU time
	// carries over an execve.
	PreExec time.Duration
}

// errCannotRun wraps a command that could not be started (not found, not
// executable); runMeasured's result then carries exit code 127 or 126.
var errCannotRun = errors.New("cannot run the command")

// lookCommand finds a command as a shell would, with the shell's exit
// codes for failures: 127 not found, 126 not executable.
func lookCommand(name string) (string, int, error) {
	path, err := pid1.LookPath(name)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return "", 127, fmt.Errorf("%s: command not found: %w", name, errCannotRun)
		}
		return "", 126, fmt.Errorf("%s: %v: %w", name, err, errCannotRun)
	}
	return path, 0, nil
}

// runMeasured runs o.Args in a fresh session (see above).
func runMeasured(ctx context.Context, o runOptions) (*runResult, error) {
	if len(o.Args) == 0 {
		return nil, fmt.Errorf("unable to run: no command: %w", observer.ErrBadRequest)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Stdin == nil {
		o.Stdin = os.Stdin
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Env == nil {
		o.Env = os.Environ()
	}
	if err := daemon.CheckEnforceable(o.Limits); err != nil {
		return nil, fmt.Errorf("unable to run: %w", err)
	}
	socket := o.Socket
	if socket == "" {
		socket = observer.DefaultSocket
	}
	if c, err := observer.Dial(socket); err == nil {
		c.Timeout = 5 * time.Second
		_, err = c.Sessions()
		if err == nil {
			c.Timeout = 30 * time.Second
			defer c.CloseIdleConnections()
			return runThroughDaemon(ctx, c, socket, o)
		}
		c.CloseIdleConnections()
		o.Logger.Info("the observer's socket does not answer; measuring in-process", "socket", socket, "error", err)
	} else {
		o.Logger.Info("no observer daemon; measuring in-process", "socket", socket, "error", err)
	}
	h, err := cgroup.Host()
	if err != nil {
		return nil, fmt.Errorf("unable to run in-process: %w", err)
	}
	r, err := daemon.NewRegistry(h, daemon.Options{Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("unable to run in-process: %w", err)
	}
	defer func() { _ = r.Shutdown(context.Background()) }() // no deadline: it returns nil
	return runInProcess(ctx, r, o)
}

// runInProcess runs the command with a registry of this process.
func runInProcess(ctx context.Context, r *daemon.Registry, o runOptions) (*runResult, error) {
	self := os.Getpid()
	s, err := r.Open(self)
	if err != nil {
		return nil, fmt.Errorf("unable to run: %w", err)
	}
	closed := false
	defer func() {
		if !closed {
			_, _ = r.Close(self, s.ID, s.Secret)
		}
	}()
	if !o.Limits.IsZero() {
		if err := r.SetLimits(self, s.ID, s.Secret, o.Limits); err != nil {
			return nil, fmt.Errorf("unable to run: %w", err)
		}
	}
	path, code, err := lookCommand(o.Args[0])
	if err != nil {
		return &runResult{Exit: code}, err
	}
	exit, pre, err := runTraced(ctx, o, func() (int, error) {
		p, err := os.StartProcess(path, o.Args, &os.ProcAttr{
			Dir:   o.Dir,
			Env:   o.Env,
			Files: []*os.File{o.Stdin, o.Stdout, o.Stderr},
			Sys:   &syscall.SysProcAttr{Ptrace: true},
		})
		if err != nil {
			code := 126
			if errors.Is(err, os.ErrNotExist) {
				code = 127
			}
			return code, fmt.Errorf("%s: %v: %w", o.Args[0], err, errCannotRun)
		}
		pid := p.Pid
		_ = p.Release() // reaped with wait4 below
		return pid, nil
	}, func(pid int) error {
		return r.Attach(pid, s.ID, s.Secret)
	})
	if err != nil {
		return &runResult{Exit: exit}, err
	}
	st, err := r.Close(self, s.ID, s.Secret)
	closed = true
	if err != nil {
		return nil, fmt.Errorf("unable to close the session: %w", err)
	}
	return &runResult{Exit: exit, Stats: st, PreExec: pre}, nil
}

// runThroughDaemon runs the command with the daemon c is connected to.
func runThroughDaemon(ctx context.Context, c *observer.Client, socket string, o runOptions) (*runResult, error) {
	s, err := c.Open()
	if err != nil {
		return nil, fmt.Errorf("unable to run: %w", err)
	}
	closed := false
	defer func() {
		if !closed {
			_, _ = c.Close(s.ID, s.Secret)
		}
	}()
	if !o.Limits.IsZero() {
		if err := c.SetLimits(s.ID, s.Secret, o.Limits); err != nil {
			return nil, fmt.Errorf("unable to run: %w", err)
		}
	}
	if _, code, err := lookCommand(o.Args[0]); err != nil {
		return &runResult{Exit: code, Daemon: true}, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("unable to run: unable to find this program to start the command through: %w", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("unable to run: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "helper"), os.NewFile(uintptr(fds[1]), "helper-gate")
	defer ours.Close()
	var conn net.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	exit, pre, err := runTraced(ctx, o, func() (int, error) {
		p, err := os.StartProcess(self, append([]string{helperName}, o.Args...), &os.ProcAttr{
			Dir:   o.Dir,
			Env:   append(append([]string(nil), o.Env...), runHelperEnv+"="+socket),
			Files: []*os.File{o.Stdin, o.Stdout, o.Stderr, theirs},
		})
		theirs.Close()
		if err != nil {
			return 0, err
		}
		pid := p.Pid
		_ = p.Release()
		// The helper connects and hands the connection over, or says
		// why it cannot run the command.
		if conn, err = receiveConn(ours, 30*time.Second); err != nil {
			_ = unix.Kill(pid, unix.SIGKILL)
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, 0, nil)
			var ce *cannotRun
			if errors.As(err, &ce) {
				return ce.code, fmt.Errorf("%s: %w", ce.msg, errCannotRun)
			}
			return 0, err
		}
		return pid, nil
	}, func(pid int) error {
		return observer.NewClientConn(conn).AttachTo(s.ID, s.Secret)
	})
	if err != nil {
		return &runResult{Exit: exit, Daemon: true}, err
	}
	st, err := c.Close(s.ID, s.Secret)
	closed = true
	if err != nil {
		return nil, fmt.Errorf("unable to close the session: %w", err)
	}
	return &runResult{Exit: exit, Stats: st, Daemon: true, PreExec: pre}, nil
}
