package observer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
)

// DefaultStateDir keeps the daemon's session records: on /run, like the
// cgroups they describe gone at a reboot, and apart from the socket's folder,
// which task containers see.
const DefaultStateDir = "/run/kolejka/observer-state"

// DaemonOptions configure RunDaemon.
type DaemonOptions struct {
	Socket   string // default DefaultSocket
	StateDir string // default DefaultStateDir
	PidFile  string // "" writes none
	// Sweep is where unknown session cgroups are removed at start; default
	// "/" (the daemon owns every kolejka_observer_* group of the host).
	Sweep  string
	Logger *slog.Logger
	Server ServerOptions
	// Ready is called once the socket answers (the --detach handshake).
	Ready func()
}

// RunDaemon is kolejka-observer's service: it adopts the recorded sessions,
// listens on the socket and serves until ctx ends (SIGTERM), then stops
// accepting, lets the requests in progress finish, stops the registry's
// timers and returns. The sessions stay, recorded: the next start adopts
// them. Under systemd (Type=notify) it reports READY=1 and STOPPING=1.
func RunDaemon(ctx context.Context, o DaemonOptions) error {
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	if o.Sweep == "" {
		o.Sweep = "/"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Server.Logger = o.Logger
	h, err := cgroup.Host()
	if err != nil {
		return err
	}
	r, err := NewRegistry(h, Options{StateDir: o.StateDir, Sweep: o.Sweep, Logger: o.Logger})
	if err != nil {
		return err
	}
	stopRegistry := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := r.Shutdown(sctx); err != nil {
			o.Logger.Warn("stopping the registry", "error", err)
		}
	}
	l, err := Listen(o.Socket)
	if err != nil {
		stopRegistry()
		return err
	}
	srv := NewServer(r, o.Server)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile); err != nil {
			_ = srv.Shutdown(context.Background())
			stopRegistry()
			return err
		}
		defer os.Remove(o.PidFile)
	}
	o.Logger.Info("observer serving", "socket", o.Socket, "state", o.StateDir, "cgroup", h.Mode().String(), "sessions", r.Count())
	_ = sdNotify("READY=1")
	if o.Ready != nil {
		o.Ready()
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	_ = sdNotify("STOPPING=1")
	o.Logger.Info("observer stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		o.Logger.Warn("stopping the server", "error", err)
	}
	stopRegistry()
	if errors.Is(serveErr, ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// writePidFile writes this process's pid atomically.
func writePidFile(file string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("unable to write the pid file: %w", err)
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("unable to write the pid file: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("unable to write the pid file: %w", err)
	}
	return nil
}

// sdNotify tells systemd (Type=notify) about the service's state over
// $NOTIFY_SOCKET, as sd_notify(3) does; without it, nothing happens. Go's
// net maps a leading '@' to an abstract socket name.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// detachedEnv marks the background copy that Detach starts; its value is
// the number of the descriptor to report readiness on.
const detachedEnv = "KOLEJKA_OBSERVER_DETACHED"

// Detached reports whether this process is the background copy that Detach
// started, and if so returns the function RunDaemon's Ready should call and
// the one to report a start-up failure with.
func Detached() (ready func(), failed func(error), ok bool) {
	v := os.Getenv(detachedEnv)
	if v == "" {
		return nil, nil, false
	}
	_ = os.Unsetenv(detachedEnv) // fails only for a malformed name
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return func() {}, func(error) {}, true
	}
	f := os.NewFile(uintptr(fd), "detach-ready")
	ready = func() {
		fmt.Fprintln(f, "ready")
		f.Close()
	}
	failed = func(err error) {
		fmt.Fprintln(f, "error: "+strings.ReplaceAll(err.Error(), "\n", " "))
		f.Close()
	}
	return ready, failed, true
}

// Detach starts this program again (args are its os.Args) in a new session
// (setsid), detached from the terminal with its standard streams on
// /dev/null, and returns once the copy reports that its socket answers,
// with the copy's pid; or its start-up error. The copy sees Detached.
func Detach(args []string) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("unable to detach: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("unable to detach: %w", err)
	}
	defer pr.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		pw.Close()
		return 0, fmt.Errorf("unable to detach: %w", err)
	}
	defer null.Close()
	cmd := exec.Command(self, args[1:]...)
	cmd.Args[0] = args[0]
	cmd.Env = append(os.Environ(), detachedEnv+"=3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return 0, fmt.Errorf("unable to detach: %w", err)
	}
	pid := cmd.Process.Pid
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("unable to detach: %w", err)
	}
	line = strings.TrimSpace(line)
	if line == "ready" {
		_ = cmd.Process.Release()
		return pid, nil
	}
	_ = cmd.Wait()
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return 0, errors.New(msg)
	}
	return 0, fmt.Errorf("unable to detach: the background observer ended before it was ready (%v)", cmd.ProcessState)
}
