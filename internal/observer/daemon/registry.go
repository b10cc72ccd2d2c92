package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/clock"
	"github.com/kolejka-go/kolejka/observer"
)

// Options configure a Registry. The zero value is a registry that keeps no
// state on disk and sweeps nothing: what `kolejka-observer run` uses
// in-process.
type Options struct {
	// StateDir keeps one file per session, so that a restarted observer
	// adopts the sessions of the one before it. "" keeps nothing.
	StateDir string
	// KeepClosed is how long the final stats of a closed session stay
	// readable; default 10 minutes. MaxClosed bounds how many are kept
	// (the oldest go first); default 10000.
	KeepClosed time.Duration
	MaxClosed  int
	// Sweep is a cgroup path ("/" for the whole host) below which, at
	// start, every session cgroup (kolejka_observer_<id>) that no state
	// record knows is killed and removed: leftovers of an observer that
	// died before it recorded them. Only the one observer of a host may
	// sweep; "" sweeps nothing.
	Sweep string
	// ReapInterval is how often abandoned sessions are looked for, besides
	// after each command; default 1 s.
	ReapInterval time.Duration
	// Logger receives what happens to sessions; default slog.Default().
	Logger *slog.Logger
	// Clock tells the time sessions are stamped with and closed sessions
	// age by (tests move it); default the system clock.
	Clock clock.Clock
}

// Registry owns the sessions of one host: it makes their cgroups, moves
// processes in and out, applies limits, measures, freezes, kills and closes
// them. All of the observer's behaviour is here; the Server only speaks the
// wire protocol. Its methods are safe for concurrent use.
//
// caller is the pid of the process asking (the server takes it from the
// socket's peer credentials). Commands on a session need its secret, and the
// caller must be its creator, host root, or in a cgroup within the one the
// session was made in (see allowed).
//
// Its files, by responsibility: lifecycle.go makes and closes sessions,
// commands.go acts on open ones, auth.go decides who may, nesting.go
// enforces cgroup_depth and cgroup_descendants, procsleaf.go places
// sessions and processes in the cgroup tree (v2's procs leaf), cores.go
// pins cores, stats.go measures, closed.go keeps the final stats,
// timelimit.go and reaper.go end sessions by themselves, state.go and
// parents.go record what survives a restart.
type Registry struct {
	cg    *cgroup.Hierarchy
	o     Options
	log   *slog.Logger
	now   func() time.Time
	store *store // nil without StateDir
	// noSwap: the host accounts swap, so an absent swap limit next to a
	// memory limit can mean "no swap" (see resources).
	noSwap bool

	// tree serialises changes of the cgroup tree: making a session (and
	// evacuating its parent on v2), moving a process in or out, removing a
	// session's groups. They are quick; a session's Kill, which may take
	// long, runs outside it.
	tree sync.Mutex

	mu      sync.Mutex
	live    map[string]*session // by id
	byPath  map[string]*session // live sessions by cgroup path
	closed  closedSessions
	pending []*cgroup.Group // closed sessions' groups whose removal failed; retried
	made    map[string]bool // parent folders made for sessions, removed when empty (parents.go)
	shut    bool
	// timers counts time-limit callbacks running, so Shutdown can wait.
	timers sync.WaitGroup

	kick chan struct{} // wakes the reaper
	stop chan struct{}
	done chan struct{}
}

// NewRegistry returns the registry of cg's sessions. With a StateDir it
// first adopts the sessions recorded there (see restore), and with Sweep it
// removes unknown session cgroups; then it starts its reaper, which
// Shutdown stops.
func NewRegistry(cg *cgroup.Hierarchy, o Options) (*Registry, error) {
	if cg == nil {
		return nil, fmt.Errorf("unable to make an observer registry: no cgroup hierarchy: %w", observer.ErrBadRequest)
	}
	if o.KeepClosed <= 0 {
		o.KeepClosed = 10 * time.Minute
	}
	if o.MaxClosed <= 0 {
		o.MaxClosed = 10000
	}
	if o.ReapInterval <= 0 {
		o.ReapInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Registry{
		cg:     cg,
		o:      o,
		log:    o.Logger,
		now:    clock.Or(o.Clock).Now,
		live:   map[string]*session{},
		byPath: map[string]*session{},
		closed: newClosedSessions(o.KeepClosed, o.MaxClosed),
		made:   map[string]bool{},
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	gib := int64(1 << 30)
	zero := int64(0)
	r.noSwap = cg.Check("/", &cgroup.Resources{Memory: &gib, Swap: &zero}) == nil
	if o.StateDir != "" {
		st, err := openStore(o.StateDir)
		if err != nil {
			return nil, err
		}
		r.store = st
		if err := r.restoreMade(); err != nil {
			return nil, err
		}
		if err := r.restore(); err != nil {
			return nil, err
		}
	}
	if o.Sweep != "" {
		r.sweep(o.Sweep)
	}
	go r.reaper()
	return r, nil
}

// Count returns the number of open sessions.
func (r *Registry) Count() int {
	r.kickReaper()
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

// Shutdown stops the registry's timers and reaper and returns once they
// have stopped, or when ctx ends. The sessions stay as they are, recorded
// in the state folder: the next observer adopts them. Commands after
// Shutdown fail with ErrClosed.
func (r *Registry) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	if r.shut {
		r.mu.Unlock()
		return nil
	}
	r.shut = true
	for _, s := range r.live {
		s.disarmLocked()
	}
	r.mu.Unlock()
	close(r.stop)
	select {
	case <-inBackground(func() { <-r.done; r.timers.Wait() }):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("unable to shut the observer registry down: %w", ctx.Err())
	}
}
