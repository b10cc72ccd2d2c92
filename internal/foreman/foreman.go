// Package foreman is kolejka-foreman, the node service of a Kolejka grid:
// it takes tasks from the server that fit what this machine has free and
// the tags it has, runs each in a worker (package worker) and posts the
// result.
//
// Lifecycle, net/http style:
//
//	f, err := foreman.New(cfg)   // lock the node folder, clear what a dead foreman left, open the caches
//	go f.Run(ctx)                // take and run tasks until Shutdown (or ctx ends: a hard stop)
//	...
//	f.Shutdown(ctx)              // drain: take nothing more, let running tasks finish and post
//
// Run loops: wait until the node can take a task (a concurrency slot is
// free, nothing exclusive runs, nothing taken waits to start), then ask the
// server (POST /queue/dequeue/) for as many tasks as slots are free, with
// what is free (capacity less what running tasks hold) as the limits, the
// node's defaults for limits a task omits and its tags; with the server's
// long_poll extension the request waits for work, otherwise the loop sleeps
// Interval between empty answers, as Kolejka's foreman does. Each task
// taken is admitted by the ledger (ledger.go): it gets its limits
// (spec.Fit), its own cores (cores.go), and starts, or waits (an exclusive
// task waits for the node to empty; nothing else starts while it runs).
//
// A task runs in its own goroutine (job.go): its input files come through
// the blob cache (blobcache.go), its image is marked used in the image
// cache (imagecache.go), the worker executes it, then its result is posted,
// retried while the server cannot be reached (retry.go). Its slot and
// resources are freed as soon as it has run, before its result is posted.
// Meanwhile heartbeats (heartbeat.go) keep the leases of every task the
// node holds; a task the server says the node lost is killed and its
// result dropped.
//
// Shutdown drains: nothing more is taken (an idle long poll is cut short),
// tasks taken but not started are handed back (POST /queue/release/), and
// running ones finish and post their results; then Run returns ErrStopped.
// If Shutdown's context ends first (a second SIGTERM), or Run's context
// ends, running tasks are killed and handed back; without the server's
// release extension their leases simply lapse.
//
// A foreman killed outright leaves runs behind: the next worker.New sweeps
// their containers, cgroups and scratch, and New clears the download
// folders; the server takes the tasks back when their leases lapse.
//
// One foreman per processor account: the server treats the account as the
// node (exclusive tasks, heartbeats, releases).
package foreman

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/clock"
	"github.com/kolejka-go/kolejka/internal/flock"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
)

// Sentinel errors.
var (
	// ErrStopped is what Run returns after Shutdown (as http.ErrServerClosed).
	ErrStopped = errors.New("foreman stopped")
	// ErrConfig is an invalid configuration.
	ErrConfig = errors.New("bad configuration")
	// ErrLocked is a node folder another foreman is using.
	ErrLocked = errors.New("node folder in use by another foreman")
	// ErrNoFit is a task the node cannot run even when idle.
	ErrNoFit = errors.New("task does not fit this node")
	// ErrLost is a task the server says the node no longer holds.
	ErrLost = errors.New("task lost: the server took it back")
	// ErrKilled is a task killed by a hard stop of the foreman.
	ErrKilled = errors.New("task killed: the foreman is stopping")
)

// Executor runs one task folder into a result folder; *worker.Worker is
// one. It must always write a result once the task is accepted (an SE one
// when the system fails), and stop promptly when ctx ends.
type Executor interface {
	Execute(ctx context.Context, taskDir, resultDir string, opt worker.Options) (*spec.Result, error)
}

var _ Executor = (*worker.Worker)(nil)

// Defaults of Config.
const (
	DefaultConcurrency = 8 // Kolejka's FOREMAN_CONCURENCY
	DefaultInterval    = 10 * time.Second
	DefaultWait        = 30 * time.Second
	DefaultBusyWait    = time.Second
	DefaultLease       = 60 * time.Second
)

// Config is everything a foreman needs: the parts it drives (a signed-in
// client, an executor, an image store) and the node's description.
type Config struct {
	// Client talks to the server as the node's processor account.
	Client *client.Client
	// Login signs the client in again when the server forgets its session
	// (nil with a bearer token).
	Login func(context.Context) error
	// Executor runs tasks; its results carry the node's tags (worker.Config.Tags).
	Executor Executor
	// Images, if set, is where the runtime keeps images; the images tasks
	// use are kept within Capacity.Image bytes (ImageCache).
	Images ImageStore

	// Dir is the node's folder: jobs/ (tasks being downloaded, run and
	// posted; cleared at start) and, by default, the caches. One foreman
	// per folder (Dir/foreman.lock).
	Dir string
	// CacheDir holds the blob cache and the image record (default Dir/cache).
	CacheDir string
	// CacheSize is the blob cache's budget in bytes (0: DefaultBlobCacheSize;
	// negative: unbounded).
	CacheSize int64

	// Capacity is what the node offers: consumables (cpus, memory, swap,
	// pids, storage, workspace, gpus) shared by running tasks, and per-task
	// maxima (time, image, ...). CPUs is set to len(Cores) when absent or
	// larger.
	Capacity spec.Limits
	// Cores are the cores tasks are pinned to (default: every core this
	// process may use).
	Cores []int
	// Defaults are limits given to tasks that omit one the node declares
	// (e.g. cpus=1, so that a task without a cpus limit does not take the
	// whole node).
	Defaults spec.Limits
	// Tags are the node's tags: a task is handed out only to nodes having
	// all it requires.
	Tags []string
	// Queues are the named queues the node takes tasks from (the server's
	// extension "queues"); none: the default queue, as Kolejka's foreman.
	Queues []string
	// Concurrency is how many tasks run at once at most (default 8).
	Concurrency int
	// Warm is how many containers of each task shape seen the executor
	// keeps prepared ahead of the tasks, where it can (Warmer); 0: none.
	// kolejka-foreman's default is DefaultWarm.
	Warm int
	// PassEnv are the host environment variables this node lets tasks
	// take: a task made from a type that names one of them gets its value
	// from LookupEnv (passenv.go). None by default.
	PassEnv []string
	// LookupEnv reads the node's environment (default os.LookupEnv).
	LookupEnv func(string) (string, bool)

	// Interval is the pause after an empty dequeue on servers without long
	// polling (default 10 s, Kolejka's).
	Interval time.Duration
	// Wait is how long an idle node's dequeue waits for work on servers with
	// long polling (default 30 s, at most the server's max_wait); BusyWait
	// (default 1 s) while it holds tasks (running or posting), so that what
	// they free is offered soon.
	Wait, BusyWait time.Duration
	// Retry shapes retries of requests the server could not answer.
	Retry Retry

	// Logger receives the node's log, with the task's key on each line
	// about a task (default slog.Default()).
	Logger *slog.Logger
	// Clock dates cache uses and retry deadlines (default clock.System).
	Clock clock.Clock
}

// Foreman is one node. See the package documentation for its lifecycle.
type Foreman struct {
	cfg    Config
	log    *slog.Logger
	cl     *client.Client
	blobs  *BlobCache
	images *ImageCache
	// imageFetch makes fetches of images from the server one at a time
	// (serverimages.go).
	imageFetch sync.Mutex
	jobsDir    string
	lock       *os.File
	heartbeat  time.Duration // period

	// jobsCtx is the parent of every task's context: a hard stop cancels it.
	jobsCtx    context.Context
	cancelJobs context.CancelCauseFunc
	// loopCtx bounds the dequeue loop's requests: a stop cancels it.
	loopCtx    context.Context
	cancelLoop context.CancelFunc

	wake   chan struct{} // the node's state changed (cap 1)
	done   chan struct{} // Run has returned
	jobsWG sync.WaitGroup

	loginMu   sync.Mutex
	lastLogin time.Time

	mu       sync.Mutex
	ledger   *ledger
	jobs     map[string]*job // every task the node holds: pending, running, posting
	pending  []*job          // taken, waiting to start, in order
	handBack []string        // keys to release when Run ends
	started  bool
	stopping bool // draining or killed: take and start nothing
	killed   bool
	closed   bool
}

// New makes a foreman: it validates cfg, locks cfg.Dir, clears the
// download folders a dead foreman left there, and opens the caches.
func New(cfg Config) (*Foreman, error) {
	cfg, err := cfg.complete()
	if err != nil {
		return nil, err
	}
	f := newForeman(cfg)
	if err := f.open(); err != nil {
		return nil, err
	}
	f.startWarm()
	return f, nil
}

// complete checks cfg and fills in what it leaves out: the defaults, the
// waits the server allows, the cores and the capacity's cpus.
func (cfg Config) complete() (Config, error) {
	if cfg.Client == nil || cfg.Executor == nil || cfg.Dir == "" {
		return cfg, fmt.Errorf("a foreman needs a client, an executor and a folder: %w", ErrConfig)
	}
	cfg.setDefaults()
	cfg.fitWaits(cfg.Client.Settings())
	if err := cfg.placeCores(); err != nil {
		return cfg, err
	}
	if err := checkCapacity(cfg.Capacity); err != nil {
		return cfg, err
	}
	if _, ok := spec.Fit(spec.Limits{}, cfg.Capacity, cfg.Defaults); !ok {
		return cfg, fmt.Errorf("the defaults %s ask for more than the node offers (%s): %w", cfg.Defaults, cfg.Capacity, ErrConfig)
	}
	cfg.Tags = NormalizeTags(cfg.Tags)
	if err := checkQueues(cfg.Queues, cfg.Client.Settings()); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// checkCapacity refuses a capacity that leaves no memory or no processes
// to any task: such a node would ask for nothing, ever (ledger.exhausted),
// and wait without saying why. (placeCores has refused one without cores.)
func checkCapacity(capacity spec.Limits) error {
	if name, v := noRoom(capacity); name != "" {
		return fmt.Errorf("the node offers %s %d: no task could run on it: %w", name, v, ErrConfig)
	}
	return nil
}

// checkQueues refuses queues that are not names, and named queues other
// than the default one on a server without them (it would hand the node
// the default queue's tasks instead).
func checkQueues(queues []string, st client.Settings) error {
	for _, q := range queues {
		if err := spec.CheckName(q); err != nil {
			return fmt.Errorf("queues: %v: %w", err, ErrConfig)
		}
	}
	if !client.OnlyDefaultQueue(queues) && !st.Has(api.ExtQueues) {
		return fmt.Errorf("queues: the server has no named queues (it does not announce the extension %q), so this node cannot serve %s; "+
			"serve the default queue only (no queues setting) or use a server that has them: %w",
			api.ExtQueues, strings.Join(queues, ", "), ErrConfig)
	}
	return nil
}

// setDefaults gives what cfg leaves zero its default.
func (cfg *Config) setDefaults() {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.BusyWait <= 0 {
		cfg.BusyWait = DefaultBusyWait
	}
	cfg.Retry = cfg.Retry.withDefaults()
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(cfg.Dir, "cache")
	}
	if cfg.LookupEnv == nil {
		cfg.LookupEnv = os.LookupEnv
	}
}

// fitWaits keeps the long polls within the server's max_wait (it would
// cut a longer one short), and BusyWait within Wait.
func (cfg *Config) fitWaits(st client.Settings) {
	if mw, err := spec.ParseTime(st.MaxWait); err == nil && mw > 0 {
		cfg.Wait = min(cfg.Wait, mw)
	}
	cfg.BusyWait = min(cfg.BusyWait, cfg.Wait)
}

// placeCores settles the cores tasks are pinned to (every core this
// process may use when cfg names none) and the capacity's cpus: the
// number of those cores at most, and the first that many of them.
func (cfg *Config) placeCores() error {
	if len(cfg.Cores) == 0 {
		m, err := DetectMachine(context.Background())
		if err != nil {
			return err
		}
		cfg.Cores = m.Cores
	}
	cfg.Capacity = cfg.Capacity.Clone()
	cfg.Cores = NewCores(cfg.Cores).all
	if cfg.Capacity.CPUs == nil || int(*cfg.Capacity.CPUs) > len(cfg.Cores) {
		n := int64(len(cfg.Cores))
		cfg.Capacity.CPUs = &n
	}
	if *cfg.Capacity.CPUs < 1 {
		return fmt.Errorf("the node offers %d cores: %w", *cfg.Capacity.CPUs, ErrConfig)
	}
	cfg.Cores = cfg.Cores[:*cfg.Capacity.CPUs]
	return nil
}

// newForeman is the foreman of a complete cfg, its folder not yet open:
// its ledger, its heartbeat period (a third of the server's lease) and the
// contexts that bound its loops and its tasks.
func newForeman(cfg Config) *Foreman {
	f := &Foreman{
		cfg:       cfg,
		log:       cfg.Logger,
		cl:        cfg.Client,
		jobsDir:   filepath.Join(cfg.Dir, "jobs"),
		heartbeat: DefaultLease / 3,
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		ledger:    newLedger(cfg.Capacity, cfg.Defaults, cfg.Cores, cfg.Concurrency),
		jobs:      map[string]*job{},
	}
	if lease, err := spec.ParseTime(cfg.Client.Settings().LeaseTime); err == nil && lease > 0 {
		f.heartbeat = lease / 3
	}
	f.jobsCtx, f.cancelJobs = context.WithCancelCause(context.Background())
	f.loopCtx, f.cancelLoop = context.WithCancel(context.Background())
	return f
}

// open takes the node folder: it locks it, clears the download folders a
// dead foreman left there, and opens the caches. On failure it lets the
// folder go.
func (f *Foreman) open() error {
	if err := os.MkdirAll(f.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("unable to create the node folder: %w", err)
	}
	lock, err := lockDir(f.cfg.Dir)
	if err != nil {
		return err
	}
	f.lock = lock
	if err := f.openParts(); err != nil {
		lock.Close()
		return err
	}
	return nil
}

// lockDir locks dir/foreman.lock: one foreman per node folder, until the
// file is closed (or the process ends).
func lockDir(dir string) (*os.File, error) {
	lock, err := flock.Own(filepath.Join(dir, "foreman.lock"))
	if errors.Is(err, flock.ErrLocked) {
		return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("unable to lock the node folder: %w", err)
	}
	return lock, nil
}

// openParts clears the jobs folder and opens the blob cache and, with an
// image store, the image cache.
func (f *Foreman) openParts() error {
	// Download and result folders of a foreman that died: its tasks come
	// back through the server's leases; its runs are the worker's to sweep.
	if err := os.RemoveAll(f.jobsDir); err != nil {
		return fmt.Errorf("unable to clear %s: %w", f.jobsDir, err)
	}
	if err := os.MkdirAll(f.jobsDir, 0o700); err != nil {
		return fmt.Errorf("unable to create %s: %w", f.jobsDir, err)
	}
	var err error
	if f.blobs, err = OpenBlobCache(f.cfg.CacheDir, f.cfg.CacheSize, f.log); err != nil {
		return err
	}
	f.blobs.clock = f.cfg.Clock
	if f.cfg.Images != nil {
		var budget int64
		if f.cfg.Capacity.Image != nil {
			budget = *f.cfg.Capacity.Image
		}
		if f.images, err = OpenImageCache(f.cfg.Images, budget, imageRecordFile(f.cfg.CacheDir), f.log); err != nil {
			return err
		}
		f.images.clock = f.cfg.Clock
	}
	return nil
}

// Capacity is what the node offers tasks.
func (f *Foreman) Capacity() spec.Limits { return f.cfg.Capacity.Clone() }

// Cores are the cores tasks are pinned to.
func (f *Foreman) Cores() []int { return append([]int(nil), f.cfg.Cores...) }

// Tags are the node's tags.
func (f *Foreman) Tags() []string { return append([]string(nil), f.cfg.Tags...) }

// Blobs is the node's blob cache.
func (f *Foreman) Blobs() *BlobCache { return f.blobs }

// Run takes and runs tasks until Shutdown (it then returns ErrStopped once
// every task has finished and been posted or handed back) or until ctx ends
// (a hard stop: running tasks are killed and handed back; it returns ctx's
// error). Run may be called once.
func (f *Foreman) Run(ctx context.Context) error {
	f.mu.Lock()
	if f.started || f.closed {
		f.mu.Unlock()
		return ErrStopped
	}
	f.started = true
	f.mu.Unlock()
	defer close(f.done)
	defer f.close()
	stop := context.AfterFunc(ctx, func() { f.kill() })
	defer stop()

	free, _, _ := f.ledger.request()
	f.log.Info("foreman running", "server", f.cl.URL(), "capacity", free.String(), "cores", f.cfg.Cores,
		"concurrency", f.cfg.Concurrency, "tags", f.cfg.Tags, "extensions", f.cl.Settings().Extensions)

	hbCtx, hbStop := context.WithCancel(context.Background())
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		f.heartbeats(hbCtx)
	}()

	f.dequeueLoop()
	f.mu.Lock()
	for _, j := range f.pending {
		f.handBack = append(f.handBack, j.key)
		delete(f.jobs, j.key)
	}
	f.pending = nil
	f.mu.Unlock()
	f.jobsWG.Wait()
	f.stopWarm()
	hbStop()
	<-hbDone
	f.releaseHandBack()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return ErrStopped
}

// Shutdown drains the node: it takes nothing more, hands back tasks taken
// but not started, and waits for running tasks to finish and their results
// to be posted; then Run returns. If ctx ends first, the tasks still
// running are killed and handed back, and Shutdown returns ctx's error once
// Run has returned.
func (f *Foreman) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	started := f.started
	f.stopLocked()
	f.mu.Unlock()
	if !started {
		f.close()
		return nil
	}
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		f.kill()
		<-f.done
		return ctx.Err()
	}
}

// stopLocked starts the drain: nothing more is taken or started. Called
// with f.mu held.
func (f *Foreman) stopLocked() {
	if !f.stopping {
		f.stopping = true
		f.log.Info("draining: taking no more tasks", "running", len(f.jobs)-len(f.pending))
	}
	f.cancelLoop()
	f.notify()
}

// kill is the hard stop: every task is killed and handed back.
func (f *Foreman) kill() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopLocked()
	if !f.killed {
		f.killed = true
		f.log.Warn("stopping now: killing running tasks and handing them back", "tasks", len(f.jobs))
		f.cancelJobs(ErrKilled)
	}
}

// close releases the node folder.
func (f *Foreman) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	f.cancelLoop()
	f.cancelJobs(ErrStopped)
	f.lock.Close()
}

// notify wakes the dequeue loop: the node's state changed.
func (f *Foreman) notify() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// releaseHandBack hands the tasks the node will not finish back to the
// queue at once (extension "release"); without it their leases lapse, as
// heartbeats have stopped.
func (f *Foreman) releaseHandBack() {
	f.mu.Lock()
	keys := f.handBack
	f.handBack = nil
	f.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	if !f.cl.Settings().Has("release") {
		f.log.Warn("tasks not finished: the server takes them back when their leases lapse", "tasks", keys)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var released, lost []string
	err := f.retrying(ctx, func(ctx context.Context) error {
		var err error
		released, lost, err = f.cl.Release(ctx, keys)
		return err
	})
	if err != nil {
		f.log.Error("unable to hand tasks back: the server takes them back when their leases lapse", "tasks", keys, "error", err)
		return
	}
	f.log.Info("tasks handed back to the queue", "tasks", released, "no_longer_ours", lost)
}

// retrying calls fn until it succeeds, fails for good, ctx ends or the
// retry budget is spent. A 403 (the server forgot the session) signs in
// again once.
func (f *Foreman) retrying(ctx context.Context, fn func(context.Context) error) error {
	bo := f.cfg.Retry.backoff()
	deadline := f.cfg.Clock.Now().Add(f.cfg.Retry.GiveUp)
	relogged := false
	for {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if errors.Is(err, client.ErrForbidden) && !relogged && f.cfg.Login != nil {
			relogged = true
			if f.relogin(ctx) == nil {
				continue
			}
		}
		if !transient(err) || f.cfg.Clock.Now().After(deadline) {
			return err
		}
		if err := sleep(ctx, bo.delay()); err != nil {
			return err
		}
	}
}

// relogin signs in again, at most once every few seconds for all callers.
func (f *Foreman) relogin(ctx context.Context) error {
	f.loginMu.Lock()
	defer f.loginMu.Unlock()
	now := f.cfg.Clock.Now()
	if now.Sub(f.lastLogin) < 5*time.Second {
		return nil
	}
	f.lastLogin = now
	if err := f.cfg.Login(ctx); err != nil {
		f.log.Error("unable to sign in again", "error", err)
		return err
	}
	f.log.Info("signed in again")
	return nil
}
