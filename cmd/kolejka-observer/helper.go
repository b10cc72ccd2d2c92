package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The helper is the process `run` starts its command through when a daemon
// measures it (see runMeasured): this program re-executed with runHelperEnv
// set, which connects to the daemon, hands the connection back over the
// socket pair it inherited as fd 3 (the gate), asks to be traced and
// executes the command. Its two hooks run before anything else of the
// program: lockHelperThread from init, runHelperIfAsked first in main (and
// in TestMain, through main, for the tests that run the command line).

// runHelperEnv marks the helper process and names the daemon's socket.
const runHelperEnv = "KOLEJKA_OBSERVER_RUN_HELPER"

// helperName is the helper's argv[0], as ps shows it.
const helperName = "kolejka-observer-exec"

// lockHelperThread pins the main goroutine to the main thread in the
// helper; elsewhere it does nothing. It must be called from an init
// function: only there does LockOSThread keep main on the main thread. The
// helper's PTRACE_TRACEME and execve must come from one thread, and the
// main one: ptrace stops are then reported under the process's pid, which
// is what runTraced waits for.
func lockHelperThread() {
	if os.Getenv(runHelperEnv) != "" {
		runtime.LockOSThread()
	}
}

// runHelperIfAsked must be the first thing main does: in the helper
// process it executes the command and never returns; elsewhere it returns
// at once.
func runHelperIfAsked() {
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

// clip shortens what the helper sent for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
