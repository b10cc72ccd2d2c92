package observer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/spec"
)

// Run (kolejka-observer run) runs one command in a fresh session and
// returns its exit status and final stats, measuring exactly the command:
// it enters its session stopped right after its execve(2), before its first
// instruction, and runs only once it is in.
//
// Through a daemon (its socket answers) the daemon knows a caller only as
// the process that opened a connection, and a stopped process cannot
// connect. So the command is started through a helper, this very program
// re-executed (MaybeRunHelper), which connects to the daemon, hands the
// connected socket back over a socket pair (SCM_RIGHTS), asks to be traced
// (PTRACE_TRACEME) and executes the command. The kernel stops it after the
// execve; Run then sends "attach" over the handed-back connection, which
// the daemon attributes to the helper's pid, which is now the command's;
// the command moves into the session; Run detaches and it runs.
//
// In-process (no daemon answers; this needs root) a Registry of its own
// serves the same session, and the command is started traced directly.
// Both ways the session is opened by Run in its own cgroup, limited, and
// closed once the command ended: what the command left running is killed
// and the stats are final.

// RunOptions describe one run.
type RunOptions struct {
	Args   []string // the command and its arguments, looked up in PATH
	Limits spec.Limits
	// Socket is the daemon's ("" means DefaultSocket). Registry, if set,
	// is used in-process instead of any daemon.
	Socket   string
	Registry *Registry
	// Stdin, Stdout, Stderr default to Run's own; Env to its environment;
	// Dir to its working folder.
	Stdin, Stdout, Stderr *os.File
	Env                   []string
	Dir                   string
	// ForwardSignals passes SIGINT, SIGTERM, SIGHUP and SIGQUIT that Run's
	// process receives on to the command.
	ForwardSignals bool
	Logger         *slog.Logger
}

// RunResult is how a run ended.
type RunResult struct {
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

// ErrCannotRun wraps a command that could not be started (not found, not
// executable); Run's result then carries exit code 127 or 126.
var ErrCannotRun = errors.New("cannot run the command")

// runHelperEnv marks the helper process and names the daemon's socket.
const runHelperEnv = "KOLEJKA_OBSERVER_RUN_HELPER"

// helperName is the helper's argv[0], as ps shows it.
const helperName = "kolejka-observer-exec"

func init() {
	if os.Getenv(runHelperEnv) != "" {
		// In an init function this pins the main goroutine to the main
		// thread. The helper's PTRACE_TRACEME and execve must come from
		// one thread, and the main one: ptrace stops are then reported
		// under the process's pid, which is what Run waits for.
		runtime.LockOSThread()
	}
}

// MaybeRunHelper must be the first thing main (and TestMain of tests that
// use Run with a daemon) does: in the helper process that Run starts it
// executes the command and never returns; elsewhere it returns at once.
func MaybeRunHelper() {
	socket := os.Getenv(runHelperEnv)
	if socket == "" {
		return
	}
	os.Exit(runHelper(socket, os.Args[1:]))
}

// Messages the helper sends over the socket pair (fd 3).
const (
	helperConn = "conn" // with the connected socket attached
	helperFail = "fail" // then " <exit code> <reason>"
)

// runHelper is the helper: connect, hand the connection over, be traced,
// execute.
func runHelper(socket string, args []string) int {
	const gate = 3
	fail := func(code int, format string, a ...any) int {
		msg := fmt.Sprintf(format, a...)
		_ = unix.Sendmsg(gate, []byte(fmt.Sprintf("%s %d %s", helperFail, code, msg)), nil, nil, 0)
		return code
	}
	if len(args) == 0 {
		return fail(125, "no command")
	}
	path, code, err := lookCommand(args[0])
	if err != nil {
		return fail(code, "%v", err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, runHelperEnv+"=") {
			env = append(env, kv)
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: socket})
	}
	if err != nil {
		return fail(125, "unable to reach the observer at %s: %v", socket, err)
	}
	if err := unix.Sendmsg(gate, []byte(helperConn), unix.UnixRights(fd), nil, 0); err != nil {
		return 125
	}
	unix.Close(fd)
	unix.Close(gate)
	if _, _, errno := unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0); errno != 0 {
		fmt.Fprintf(os.Stderr, "%s: unable to be traced: %v\n", helperName, errno)
		return 125
	}
	err = unix.Exec(path, args, env)
	fmt.Fprintf(os.Stderr, "%s: cannot execute %s: %v\n", helperName, args[0], err)
	if errors.Is(err, unix.ENOENT) {
		return 127
	}
	return 126
}

// lookCommand finds a command as a shell would, with the shell's exit
// codes for failures: 127 not found, 126 not executable.
func lookCommand(name string) (string, int, error) {
	path, err := exec.LookPath(name)
	if errors.Is(err, exec.ErrDot) {
		path, err = name, nil
		if !strings.Contains(path, "/") {
			path = "./" + path
		}
	}
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return "", 127, fmt.Errorf("%s: command not found: %w", name, ErrCannotRun)
		}
		return "", 126, fmt.Errorf("%s: %v: %w", name, err, ErrCannotRun)
	}
	return path, 0, nil
}

// Run runs o.Args in a fresh session (see above).
func Run(ctx context.Context, o RunOptions) (*RunResult, error) {
	if len(o.Args) == 0 {
		return nil, fmt.Errorf("unable to run: no command: %w", ErrBadRequest)
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
	if err := checkEnforceable(o.Limits); err != nil {
		return nil, fmt.Errorf("unable to run: %w", err)
	}
	if o.Registry != nil {
		return runInProcess(ctx, o.Registry, o)
	}
	socket := o.Socket
	if socket == "" {
		socket = DefaultSocket
	}
	if c, err := Dial(socket); err == nil {
		c.Timeout = 5 * time.Second
		_, err = c.Sessions()
		if err == nil {
			c.Timeout = 30 * time.Second
			defer c.CloseIdleConnections()
			return runDaemon(ctx, c, socket, o)
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
	r, err := NewRegistry(h, Options{Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("unable to run in-process: %w", err)
	}
	defer func() { _ = r.Shutdown(context.Background()) }() // no deadline: it returns nil
	return runInProcess(ctx, r, o)
}

// runInProcess runs the command with a registry of this process.
func runInProcess(ctx context.Context, r *Registry, o RunOptions) (*RunResult, error) {
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
		return &RunResult{Exit: code}, err
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
			return code, fmt.Errorf("%s: %v: %w", o.Args[0], err, ErrCannotRun)
		}
		pid := p.Pid
		_ = p.Release() // reaped with wait4 below
		return pid, nil
	}, func(pid int) error {
		return r.Attach(pid, s.ID, s.Secret)
	})
	if err != nil {
		return &RunResult{Exit: exit}, err
	}
	st, err := r.Close(self, s.ID, s.Secret)
	closed = true
	if err != nil {
		return nil, fmt.Errorf("unable to close the session: %w", err)
	}
	return &RunResult{Exit: exit, Stats: st, PreExec: pre}, nil
}

// runDaemon runs the command with the daemon c is connected to.
func runDaemon(ctx context.Context, c *Client, socket string, o RunOptions) (*RunResult, error) {
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
		return &RunResult{Exit: code, Daemon: true}, err
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
				return ce.code, fmt.Errorf("%s: %w", ce.msg, ErrCannotRun)
			}
			return 0, err
		}
		return pid, nil
	}, func(pid int) error {
		return NewClientConn(conn).AttachTo(s.ID, s.Secret)
	})
	if err != nil {
		return &RunResult{Exit: exit, Daemon: true}, err
	}
	st, err := c.Close(s.ID, s.Secret)
	closed = true
	if err != nil {
		return nil, fmt.Errorf("unable to close the session: %w", err)
	}
	return &RunResult{Exit: exit, Stats: st, Daemon: true, PreExec: pre}, nil
}

// cannotRun is the helper's report that the command cannot be started.
type cannotRun struct {
	code int
	msg  string
}

func (e *cannotRun) Error() string { return e.msg }

// receiveConn reads the helper's message: a connection, or a failure.
func receiveConn(f *os.File, timeout time.Duration) (net.Conn, error) {
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		return nil, err
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	_ = unix.SetsockoptTimeval(int(f.Fd()), unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 512)
	oob := make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = unix.Recvmsg(int(f.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("unable to hear the command's helper: %w", err)
	}
	msg := string(buf[:n])
	if rest, ok := strings.CutPrefix(msg, helperFail+" "); ok {
		codeText, reason, _ := strings.Cut(rest, " ")
		code := 125
		_, _ = fmt.Sscan(codeText, &code) // not a number: 125 stands
		return nil, &cannotRun{code: code, msg: reason}
	}
	if msg != helperConn {
		if n == 0 {
			return nil, errors.New("the command's helper ended before it connected")
		}
		return nil, fmt.Errorf("the command's helper said %q", clip(msg))
	}
	scms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(scms) != 1 {
		return nil, errors.New("the command's helper sent no connection")
	}
	rights, err := unix.ParseUnixRights(&scms[0])
	if err != nil || len(rights) != 1 {
		return nil, errors.New("the command's helper sent no connection")
	}
	cf := os.NewFile(uintptr(rights[0]), "observer connection")
	defer cf.Close()
	return net.FileConn(cf)
}

// runTraced starts the command stopped after its execve (start returns its
// pid, or an exit code and an error), lets enter move it into the session,
// lets it run and waits for its end. ptrace binds a tracee to the thread
// that forked it: start, the wait for the stop and the detach all happen on
// one locked thread.
func runTraced(ctx context.Context, o RunOptions, start func() (int, error), enter func(pid int) error) (int, time.Duration, error) {
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
			return exitCode(ws), fmt.Errorf("the command ended before it started (exit %d): %w", exitCode(ws), ErrCannotRun)
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
