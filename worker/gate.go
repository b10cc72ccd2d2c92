package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/pid1"
)

// gate is where kolejka-init holds the task, stopped at its first
// instruction, until the worker has moved it into the task's cgroup (see
// package pid1). It is a SOCK_SEQPACKET unix socket in a folder of its own,
// which a runtime bind-mounts into the container at ContainerGateDir (Docker
// cannot pass descriptors, so every runtime does it this way). The
// connection's peer credentials give kolejka-init's pid translated into our
// pid namespace: how we find a process started deep inside a container.
//
// The gate serves one connection and closes before the task runs, so the
// task finds nothing listening there.
type gate struct {
	dir  string
	dirf *os.File // the folder, open: its /proc/self/fd path is short
	ln   *net.UnixListener
	conn *net.UnixConn

	// After release: ended closes when kolejka-init reports the task's end
	// (or the connection drops); endedAt, code and signal say when and how.
	ended   chan struct{}
	endedAt time.Time
	code    int
	signal  int
	coded   bool
}

// gateSocket is the socket's name in the gate folder.
const gateSocket = "socket"

func newGate(dir string) (*gate, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("unable to create the gate: %w", err)
	}
	dirf, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("unable to create the gate: %w", err)
	}
	// A socket's path may hold at most 107 bytes and scratch folders can
	// be deeper than that: bind through the open folder instead.
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: procPath(os.Getpid(), dirf) + "/" + gateSocket, Net: "unixpacket"})
	if err != nil {
		dirf.Close()
		return nil, fmt.Errorf("unable to create the gate: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	// Whoever the container's init runs as must be able to connect.
	if err := os.Chmod(filepath.Join(dir, gateSocket), 0o777); err != nil {
		ln.Close()
		dirf.Close()
		return nil, fmt.Errorf("unable to create the gate: %w", err)
	}
	return &gate{dir: dir, dirf: dirf, ln: ln}, nil
}

// hostDir is a short path to the gate folder for a process on this host
// (the host runtime's kolejka-init), valid while the gate is open: the
// folder's own path may be too long for a socket's address.
func (g *gate) hostDir() string { return procPath(os.Getpid(), g.dirf) }

// Files in the gate folder beside the socket: the task's argv and its
// environment, for kolejka-init's --args-file and --env-file.
const (
	gateArgs = "args"
	gateEnv  = "env"
)

// writeCommand writes the task's argv and environment beside the socket,
// each string ended by a NUL. They reach kolejka-init as files rather than
// through the runtime's exec of it: an argument list too long for the
// kernel then fails only init's exec of the task, which init reports as
// the task's failure to start, with the reason on its stderr (RE), instead
// of a container that never reaches the gate (SE).
func (g *gate) writeCommand(args, env []string) error {
	for _, f := range []struct {
		name string
		list []string
	}{{gateArgs, args}, {gateEnv, env}} {
		var b strings.Builder
		for _, s := range f.list {
			b.WriteString(s)
			b.WriteByte(0)
		}
		if err := os.WriteFile(filepath.Join(g.dir, f.name), []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("unable to write the task's command: %w", err)
		}
	}
	return nil
}

func procPath(pid int, f *os.File) string {
	return "/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(int(f.Fd()))
}

// wait returns the host pid of the task, stopped at its first instruction
// (kolejka-init's only child), or 0 when kolejka-init could not start the
// command at all. It gives up when ctx ends or when kolejka-init is gone
// (died is closed).
func (g *gate) wait(ctx context.Context, died <-chan struct{}) (int, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	if g.conn == nil {
		if err := g.open(ctx, deadline, died); err != nil {
			return 0, err
		}
	}
	conn := g.conn
	initPid, err := peerPid(conn)
	if err != nil {
		return 0, err
	}
	_ = conn.SetReadDeadline(deadline)
	// An interrupted run (ctx cancelled) stops waiting at once: a
	// kolejka-init stopped (SIGSTOP) or starved before its report must not
	// hold the run for the whole deadline.
	unhook := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	unhook()
	if ctx.Err() != nil && (err != nil || n == 0) {
		return 0, fmt.Errorf("kolejka-init did not report the task's start: %w", context.Cause(ctx))
	}
	if err != nil || n == 0 {
		return 0, fmt.Errorf("kolejka-init ended before starting the task: %v", err)
	}
	switch msg := string(buf[:n]); msg {
	case pid1.MsgNoTask:
		return 0, nil
	case pid1.MsgReady:
	default:
		return 0, fmt.Errorf("kolejka-init said %q instead of %q", msg, pid1.MsgReady)
	}
	if initPid <= 0 {
		// 0 means the peer lives in a pid namespace we cannot see into.
		return 0, errors.New("kolejka-init is not visible from the worker's pid namespace")
	}
	return onlyChild(initPid)
}

// open takes kolejka-init's connection (see accept) and closes the gate to
// everyone else.
func (g *gate) open(ctx context.Context, deadline time.Time, died <-chan struct{}) error {
	conn, err := g.accept(ctx, deadline, died)
	if err != nil {
		return err
	}
	g.conn = conn
	// No one else may connect.
	g.ln.Close()
	os.Remove(filepath.Join(g.dir, gateSocket))
	return nil
}

// start tells a kolejka-init that awaits its task (pid1's --await: a
// prepared container's) that the task's command is in place. The worker
// took its connection when it prepared the container.
func (g *gate) start() error {
	if g.conn == nil {
		return errors.New("unable to start the task: kolejka-init is not at the gate")
	}
	if _, err := g.conn.Write([]byte(pid1.MsgStart)); err != nil {
		return fmt.Errorf("unable to start the task: %w", err)
	}
	return nil
}

// accept waits until deadline for kolejka-init's connection, or until died
// closes or ctx ends: a container that dies before connecting, or a run
// interrupted, must not leave us waiting for the whole deadline.
func (g *gate) accept(ctx context.Context, deadline time.Time, died <-chan struct{}) (*net.UnixConn, error) {
	_ = g.ln.SetDeadline(deadline)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-died:
			_ = g.ln.SetDeadline(time.Now())
		case <-ctx.Done(): // interrupted: stop waiting
			_ = g.ln.SetDeadline(time.Now())
		case <-stop:
		}
	}()
	conn, err := g.ln.AcceptUnix()
	if err != nil && ctx.Err() != nil && !isClosed(died) {
		return nil, fmt.Errorf("kolejka-init did not reach the gate: %w", context.Cause(ctx))
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && isClosed(died) {
		// kolejka-init can connect and end (a command it could not start)
		// before we accept: its connection waits in the backlog, which an
		// expired deadline keeps Accept from looking at.
		conn, err = g.acceptPending()
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, errors.New("kolejka-init did not reach the gate")
		}
		return nil, fmt.Errorf("unable to open the gate: %w", err)
	}
	return conn, nil
}

// peerPid is the pid of conn's peer (kolejka-init) in our pid namespace, 0
// if it is not visible from there.
func peerPid(conn *net.UnixConn) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return 0, fmt.Errorf("unable to identify kolejka-init: %w", errors.Join(err, cerr))
	}
	return int(cred.Pid), nil
}

// acceptPending accepts a connection already waiting on the gate, without
// waiting for one: os.ErrDeadlineExceeded if there is none.
func (g *gate) acceptPending() (*net.UnixConn, error) {
	rc, err := g.ln.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd, aerr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) {
		// The listener is non-blocking, as Go makes every socket.
		nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC)
	}); err != nil {
		return nil, err
	}
	if errors.Is(aerr, unix.EAGAIN) {
		return nil, os.ErrDeadlineExceeded
	}
	if aerr != nil {
		return nil, aerr
	}
	f := os.NewFile(uintptr(nfd), "gate")
	defer f.Close() // FileConn holds its own copy
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	conn, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("unexpected connection type %T", c)
	}
	return conn, nil
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// onlyChild returns the single child of pid: the task kolejka-init holds
// stopped. Nothing else runs in the container yet, so there is exactly one.
// Children hang off the thread that forked them, so every thread is looked
// at (kolejka-init forks from a locked thread, not always the main one).
func onlyChild(pid int) (int, error) {
	threads, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return 0, fmt.Errorf("unable to find the task: %w", err)
	}
	var children []string
	for _, t := range threads {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + t.Name() + "/children")
		if err != nil {
			return 0, fmt.Errorf("unable to find the task: %w", err)
		}
		children = append(children, strings.Fields(string(data))...)
	}
	if len(children) != 1 {
		return 0, fmt.Errorf("unable to find the task: kolejka-init has %d children, want 1", len(children))
	}
	return strconv.Atoi(children[0])
}

// release lets the task run, and starts listening for its end.
func (g *gate) release() error {
	if _, err := g.conn.Write([]byte(pid1.MsgGo)); err != nil {
		return fmt.Errorf("unable to start the task: %w", err)
	}
	g.ended = make(chan struct{})
	_ = g.conn.SetReadDeadline(time.Time{})
	go func() {
		defer close(g.ended)
		buf := make([]byte, 64)
		n, err := g.conn.Read(buf)
		g.endedAt = time.Now()
		if err != nil || n == 0 {
			return // init died without a word: the runtime's status stands
		}
		// "exit CODE SIGNAL" (see pid1.MsgExit).
		if rest, ok := strings.CutPrefix(string(buf[:n]), pid1.MsgExit+" "); ok {
			code, sig, _ := strings.Cut(rest, " ")
			c, err := strconv.Atoi(code)
			s, serr := strconv.Atoi(sig)
			if err == nil && serr == nil {
				g.code, g.signal, g.coded = c, s, true
			}
		}
	}()
	return nil
}

// refuse tells kolejka-init not to run the task.
func (g *gate) refuse(reason string) {
	if g.conn != nil {
		_, _ = g.conn.Write([]byte(pid1.MsgFail + " " + reason))
	}
}

func (g *gate) close() {
	g.ln.Close()
	if g.conn != nil {
		g.conn.Close()
	}
	os.Remove(filepath.Join(g.dir, gateSocket))
	g.dirf.Close()
}
