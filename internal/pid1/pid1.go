// Package pid1 is kolejka-init, the small static program that runs as PID 1
// of every task container (and of the host runtime's pid namespace).
//
// Lifecycle, as the worker sees it:
//
//  1. The runtime starts `kolejka-init --gate SOCKET --env-file ENV
//     --args-file ARGS` in the task's working folder with its stdio. SOCKET
//     is the worker's gate, a SOCK_SEQPACKET unix socket bind-mounted into
//     the container (runtimes cannot all pass descriptors: Docker cannot);
//     ENV and ARGS beside it hold the task's environment and argv, so that
//     the runtime's exec of init never carries them: only init's own exec
//     of the task can meet the kernel's size limit on them, and init then
//     reports it as the task's failure to start (126), not as a container
//     that never came up. (`-- ARGS...` on the command line works too.) A runtime that
//     cannot pass the task's stdio either names it with --stdin, --stdout
//     and --stderr (FIFOs it copies from and to); init opens those first
//     and makes them its own descriptors 0, 1 and 2. Init connects.
//     With --await (a container prepared before its task), init connects
//     first and waits on the gate for "start": the worker writes ENV, ARGS
//     and the stdio links only when a task takes the container, and init
//     reads them after. The container's start, init's exec and Go's start
//     are then all done before the task arrives.
//  2. Init starts ARGS (with a PATH lookup, as Kolejka's stage2 does) under
//     ptrace: the kernel stops the new process right after execve, before
//     its first instruction. It is then exactly the task — one thread, its
//     own image — not a copy of this (multi-threaded Go) program.
//  3. Init says "ready" over the gate; the worker reads init's pid from the
//     connection's peer credentials (the kernel translates it into the
//     worker's pid namespace), finds the stopped task as init's only child
//     and moves it into the task's cgroup. It answers "go" (or "fail ..."), init
//     detaches, and the task runs. So the task cgroup measures the task
//     from its first instruction and never counts the runtime's helpers:
//     runc's init and this program stay outside.
//  4. Init reaps every orphan (it is PID 1), forwards termination signals to
//     the task, and when the task ends exits with its status: its exit code,
//     or 256−N when signal N killed it, as Kolejka's stage2 does (Python's
//     returncode −N passed to sys.exit). PID 1 exiting makes the kernel kill everything left in the
//     pid namespace, so daemons a task leaves behind die with it, as under
//     Kolejka's `docker run --init`.
//
// The program must need nothing from the image (busybox, musl, distroless):
// it is built with CGO_ENABLED=0 into a static binary and bind-mounted in.
package pid1

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Messages on the gate.
const (
	MsgReady = "ready"
	MsgGo    = "go"
	MsgFail  = "fail" // followed by " <reason>"
	// MsgNoTask: the command could not be started; init exits at once.
	MsgNoTask = "no-task"
	// MsgStart: (to an init started with --await) the task's command,
	// environment and stdio are in place: read them and start it.
	MsgStart = "start"
	// MsgExit: the task ended, followed by " <exit code> <signal>" (the
	// code as statusCode makes it; the signal that killed the task, 0 if
	// it exited), sent the moment init reaps it.
	MsgExit = "exit"
)

// Exit codes of kolejka-init itself, in the shell's tradition, for failures
// before the task ran (the worker turns them into an SE or RE result).
const (
	ExitUsage      = 125 // kolejka-init was called wrongly
	ExitCannotExec = 126 // the command exists but cannot be executed
	ExitNotFound   = 127 // the command was not found
)

// options is kolejka-init's command line: flags, then "--", then the task's
// argv. Flags are parsed by hand: this runs before every task and must start
// fast, and the task's argv must never be touched.
type options struct {
	gate string
	loUp bool
	// await: connect to the gate and wait for MsgStart before reading the
	// stdio paths, envFile and argsFile.
	await bool
	// stdin, stdout, stderr: paths to open as the task's stdio instead of
	// init's own ("" keeps init's).
	stdin, stdout, stderr string
	// envFile, if set, holds the task's whole environment (NUL-separated
	// NAME=value), replacing init's: a runtime that adds variables of its
	// own (Docker merges the image's ENV and HOSTNAME) cannot then leak them.
	// Given twice, the last wins.
	envFile string
	// argsFile, if set, holds the task's argv (NUL-separated) in place of
	// "-- ARGS...".
	argsFile string
	args     []string
}

func parse(argv []string) (*options, error) {
	o := &options{}
	// The flags that take a value (given twice, the last wins).
	valued := map[string]*string{
		"--gate": &o.gate, "--stdin": &o.stdin, "--stdout": &o.stdout, "--stderr": &o.stderr,
		"--env-file": &o.envFile, "--args-file": &o.argsFile,
	}
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		switch v, ok := valued[a]; {
		case a == "--":
			o.args = argv[i+1:]
			switch {
			case len(o.args) > 0 && o.argsFile != "":
				return nil, errors.New("a command after -- and --args-file: give one")
			case len(o.args) == 0 && o.argsFile == "":
				return nil, errors.New("no command after --")
			}
			return checkAwait(o)
		case a == "--lo-up":
			o.loUp = true
		case a == "--await":
			o.await = true
		case ok && i+1 < len(argv):
			i++
			*v = argv[i]
		default:
			return nil, fmt.Errorf("unknown argument %q", a)
		}
	}
	if o.argsFile != "" {
		return checkAwait(o)
	}
	return nil, errors.New("missing -- before the command")
}

// checkAwait: an init that awaits its task needs the gate to wait at, and
// reads the command from --args-file, written when the task arrives.
func checkAwait(o *options) (*options, error) {
	if o.await && (o.gate == "" || o.argsFile == "") {
		return nil, errors.New("--await needs --gate and --args-file")
	}
	return o, nil
}

// Main runs kolejka-init with argv (without the program name) and returns
// the exit code.
func Main(argv []string) int {
	o, err := parse(argv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kolejka-init: %v\nusage: kolejka-init [--gate SOCKET [--await]] [--lo-up] [--stdin PATH] [--stdout PATH] [--stderr PATH] [--env-file PATH] (--args-file PATH | -- COMMAND [ARGS...])\n", err)
		return ExitUsage
	}
	return run(o)
}

// prepare sets up what the task inherits besides signals: its stdio (first:
// every message after it, such as "command not found", is for the task's
// stderr), environment and argv, and the loopback interface.
func prepare(o *options) error {
	if err := redirect(o); err != nil {
		return err
	}
	if err := loadEnv(o.envFile); err != nil {
		return err
	}
	if err := loadArgs(o); err != nil {
		return err
	}
	if o.loUp {
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("unable to bring up loopback: %w", err)
		}
	}
	return nil
}

// run is PID 1: start the task stopped at its first instruction, pass the
// gate, reap, forward signals, mirror the task's status.
func run(o *options) int {
	// Before the task exists: nobody in the container may ptrace us, read
	// or write our memory (/proc/1/mem) or take our descriptors
	// (pidfd_getfd), which a non-dumpable process allows only to holders
	// of CAP_SYS_PTRACE. Set any later, a task that attaches to PID 1 the
	// moment it runs wins the race and can forge what we report. (The
	// task itself is dumpable again once it execs: judges trace it.)
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	gateFD := -1
	if o.await {
		fd, err := dialGate(o.gate)
		if err == nil {
			err = awaitStart(fd)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "kolejka-init: %v\n", err)
			return ExitUsage
		}
		gateFD = fd
	}
	if err := prepare(o); err != nil {
		fmt.Fprintf(os.Stderr, "kolejka-init: %v\n", err)
		return ExitUsage
	}
	// Signals first, so none sent during start-up is lost. SIGCHLD wakes the
	// reaper; the rest are forwarded.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGHUP,
		unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH, unix.SIGCONT)

	if o.gate != "" && gateFD < 0 {
		fd, err := dialGate(o.gate)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kolejka-init: %v\n", err)
			return ExitUsage
		}
		gateFD = fd
	}
	name := o.args[0]
	path, err := LookPath(name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kolejka-init: %s: command not found\n", name)
		return passGateOrFail(gateFD, ExitNotFound)
	}

	// ptrace ties the tracee to the tracing thread: every ptrace call below
	// must come from the thread that started it.
	runtime.LockOSThread()
	proc, err := os.StartProcess(path, o.args, &os.ProcAttr{
		Env:   os.Environ(),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys:   &syscall.SysProcAttr{Ptrace: gateFD >= 0},
	})
	if err != nil {
		runtime.UnlockOSThread()
		fmt.Fprintf(os.Stderr, "kolejka-init: cannot execute %s: %v%s\n", name, err, tooLong(err, o.args))
		code := ExitCannotExec
		if errors.Is(err, unix.ENOENT) {
			code = ExitNotFound
		}
		return passGateOrFail(gateFD, code)
	}
	pid := proc.Pid
	if gateFD >= 0 {
		if err := gate(gateFD, pid); err != nil {
			fmt.Fprintf(os.Stderr, "kolejka-init: %v\n", err)
			_ = unix.Kill(pid, unix.SIGKILL)
			runtime.UnlockOSThread()
			return ExitUsage
		}
	}
	runtime.UnlockOSThread()

	for {
		// Reap everything that has ended; the task's end decides our exit.
		for {
			var ws unix.WaitStatus
			wpid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || wpid <= 0 {
				break
			}
			if wpid == pid {
				code := statusCode(ws)
				sig := 0
				if ws.Signaled() {
					sig = int(ws.Signal())
				}
				if gateFD >= 0 {
					// The worker learns of the end now, not when the
					// runtime notices the container is gone (Docker's
					// engine takes 50-130 ms): wall time and the time
					// limit's verdict depend on it.
					_ = unix.Send(gateFD, []byte(MsgExit+" "+strconv.Itoa(code)+" "+strconv.Itoa(sig)), 0)
					unix.Close(gateFD)
				}
				return code
			}
		}
		s := <-sigs
		if s != unix.SIGCHLD {
			_ = proc.Signal(s)
		}
	}
}

// redirect opens the paths of --stdin, --stdout and --stderr and puts them
// on init's own descriptors 0, 1 and 2, which the task inherits. stdin is
// opened read-only; stdout and stderr write-only, created if missing and
// truncated as by a shell's ">" (neither applies to a FIFO or a device).
// The same path for stdout and stderr is opened once and shared, so the
// two streams keep their order in one file, as with "2>&1".
//
// Every open is O_NONBLOCK: opening a FIFO normally waits for its other
// end, and init must never hang before it reaches the gate (a writer's open
// without a reader fails with ENXIO instead; a reader's open returns at
// once). The flag is then cleared, since it belongs to the open file,
// which the task shares: a task expects blocking stdio.
func redirect(o *options) error {
	type stream struct {
		path  string
		fd    int // the descriptor it replaces
		flags int
	}
	streams := []stream{
		{o.stdin, 0, unix.O_RDONLY},
		{o.stdout, 1, unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC},
		{o.stderr, 2, unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC},
	}
	// Open everything before replacing anything; opened fds are kept at 3
	// and above so that replacing one standard descriptor never closes
	// another file just opened.
	var temps []int
	defer func() {
		for _, fd := range temps {
			unix.Close(fd)
		}
	}()
	target := map[int]int{}
	for _, s := range streams {
		if s.path == "" {
			continue
		}
		if s.fd == 2 && s.path == o.stdout {
			target[2] = target[1]
			continue
		}
		fd, err := unix.Open(s.path, s.flags|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return fmt.Errorf("unable to open %s: %w", s.path, err)
		}
		if fd < 3 {
			high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
			unix.Close(fd)
			if err != nil {
				return fmt.Errorf("unable to open %s: %w", s.path, err)
			}
			fd = high
		}
		temps = append(temps, fd)
		if err := unix.SetNonblock(fd, false); err != nil {
			return fmt.Errorf("unable to open %s: %w", s.path, err)
		}
		target[s.fd] = fd
	}
	for _, std := range []int{0, 1, 2} {
		if fd, ok := target[std]; ok {
			if err := unix.Dup3(fd, std, 0); err != nil {
				return fmt.Errorf("unable to redirect descriptor %d: %w", std, err)
			}
		}
	}
	return nil
}

// gate waits for the task's exec stop, announces it and, once the worker
// says go, lets it run.
func gate(fd, pid int) error {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("unable to wait for the task to start: %w", err)
		}
		break
	}
	if !ws.Stopped() {
		return fmt.Errorf("the task did not stop at its start (status %v)", ws)
	}
	if err := passGate(fd); err != nil {
		return err
	}
	if err := unix.PtraceDetach(pid); err != nil {
		return fmt.Errorf("unable to start the task: %w", err)
	}
	return nil
}

// passGateOrFail tells the worker the task could not be started and exits
// with code.
func passGateOrFail(fd, code int) int {
	if fd >= 0 {
		_ = unix.Send(fd, []byte(MsgNoTask), 0)
		unix.Close(fd)
	}
	return code
}

// dialGate connects to the worker's gate socket.
func dialGate(path string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("unable to reach the worker: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("unable to reach the worker at %s: %w", path, err)
	}
	return fd, nil
}

// awaitStart waits on the gate for the worker's MsgStart.
func awaitStart(fd int) error {
	buf := make([]byte, 64)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		switch {
		case err != nil:
			return fmt.Errorf("unable to hear the worker: %w", err)
		case n == 0:
			return errors.New("the worker went away before giving a task")
		case string(buf[:n]) != MsgStart:
			return fmt.Errorf("the worker said %q instead of %q", buf[:n], MsgStart)
		}
		return nil
	}
}

// passGate announces the stopped task and waits for "go".
func passGate(fd int) error {
	if err := unix.Send(fd, []byte(MsgReady), 0); err != nil {
		return fmt.Errorf("unable to reach the worker: %w", err)
	}
	buf := make([]byte, 512)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("unable to hear the worker: %w", err)
		}
		msg := string(buf[:n])
		switch {
		case msg == MsgGo:
			// Kept open to report the task's end (MsgExit). The task
			// cannot reach it: the fd closes at its exec, and we are
			// non-dumpable, so no pidfd_getfd or ptrace of us either.
			return nil
		case n == 0:
			return errors.New("the worker went away before the task started")
		default:
			return fmt.Errorf("the worker refused to start the task: %s", strings.TrimPrefix(msg, MsgFail+" "))
		}
	}
}

// loopbackUp brings "lo" up in a fresh network namespace (the host runtime's
// network=false); runc does it for its containers.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// statusCode maps a wait status to Kolejka's exit code: the code itself,
// or 256−N for a process killed by signal N (SIGSEGV 245, SIGKILL 247).
// Kolejka's stage2 runs the task with Python's subprocess, whose returncode
// is −N for a signal, and exits with it; the exit status keeps its low
// byte. Not the shell's 128+N: judges that read Kolejka's results map 247
// to the memory limit's kill, 137 to the time limit's (which kills the
// whole container, see worker.ExitStatus).
func statusCode(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 256 - int(ws.Signal())
	}
	return ExitUsage
}

// loadArgs reads the task's argv from --args-file, if given: each argument
// ended by a NUL, as the worker writes it (an argument may hold any byte
// but NUL, and may be empty).
func loadArgs(o *options) error {
	if o.argsFile == "" {
		return nil
	}
	data, err := os.ReadFile(o.argsFile)
	if err != nil {
		return fmt.Errorf("unable to read the command: %w", err)
	}
	text, ok := strings.CutSuffix(string(data), "\x00")
	if !ok {
		return fmt.Errorf("%s holds no command (or was cut short)", o.argsFile)
	}
	o.args = strings.Split(text, "\x00")
	return nil
}

// Linux's limits on what one execve may carry (fs/exec.c): each argument
// or variable at most MAX_ARG_STRLEN (32 pages, NUL included), and all of
// them, with a pointer each, at most a quarter of the stack limit, capped
// at 3/4 of _STK_LIM (8 MiB) and never below ARG_MAX (32 pages).
const (
	maxArgStrlen = 32 * 4096
	stkLim       = 8 << 20
)

// tooLong explains an E2BIG from exec: which of the kernel's limits the
// task's arguments and environment pass, with their sizes, so that the
// task's author can see what to shorten. "" for any other error.
func tooLong(err error, args []string) string {
	if !errors.Is(err, unix.E2BIG) {
		return ""
	}
	total, longest, count := 0, 0, 0
	for _, list := range [][]string{args, os.Environ()} {
		for _, s := range list {
			total += len(s) + 1
			longest = max(longest, len(s)+1)
			count++
		}
	}
	limit := uint64(stkLim / 4 * 3)
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_STACK, &rl) == nil && rl.Cur/4 < limit {
		limit = rl.Cur / 4
	}
	limit = max(limit, maxArgStrlen)
	total += count * 8
	return fmt.Sprintf(" (the arguments and environment take %d bytes, the longest string %d; "+
		"Linux takes at most %d bytes per argument or variable and %d in all, a quarter of the stack limit)",
		total, longest, maxArgStrlen, limit)
}

// loadEnv replaces the environment with the one in path, if any. PATH
// lookups of the command then use the task's PATH, as the task's exec does.
func loadEnv(path string) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("unable to read the environment: %w", err)
	}
	os.Clearenv()
	for _, kv := range strings.Split(string(data), "\x00") {
		if name, value, ok := strings.Cut(kv, "="); ok && name != "" {
			if err := os.Setenv(name, value); err != nil {
				return fmt.Errorf("unable to set %s: %w", name, err)
			}
		}
	}
	return nil
}

// LookPath finds the command name as Kolejka's stage2 (Python's
// subprocess) does: in PATH as exec.LookPath, and a PATH hit in "." runs
// too, where Go refuses it (exec.ErrDot).
func LookPath(name string) (string, error) {
	path, err := exec.LookPath(name)
	if errors.Is(err, exec.ErrDot) {
		path, err = name, nil
		if !strings.Contains(path, "/") {
			path = "./" + path
		}
	}
	return path, err
}
