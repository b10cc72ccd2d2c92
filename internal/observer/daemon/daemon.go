package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/observer"
)

// DefaultStateDir keeps the daemon's session records: on /run, like the
// cgroups they describe gone at a reboot, and apart from the socket's folder,
// which task containers see.
const DefaultStateDir = "/run/kolejka/observer-state"

// RunOptions configure Run.
type RunOptions struct {
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

// Run is kolejka-observer's service: it adopts the recorded sessions,
// listens on the socket and serves until ctx ends (SIGTERM), then stops
// accepting, lets the requests in progress finish, stops the registry's
// timers and returns. The sessions stay, recorded: the next start adopts
// them. Under systemd (Type=notify) it reports READY=1 and STOPPING=1.
func Run(ctx context.Context, o RunOptions) error {
	if o.Socket == "" {
		o.Socket = observer.DefaultSocket
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
	if err := atomicfile.WriteFile(file, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
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
