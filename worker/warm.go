package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kolejka-go/kolejka/spec"
)

// Warm containers: with a runtime that is a Preparer, the worker can make a
// task's container before the task arrives (see Prepare), so that a task
// pays only for the start of its own process instead of for the
// container's creation and kolejka-init's.
//
// A prepared container belongs to a run of its own from the start: its run
// ID names its scratch folder, its registry entry (locked, so that sweeps
// leave it alone while this worker lives, and take it when the worker dies),
// its cgroup parent and its runtime's container. A task that takes it
// becomes that run. What is fixed at preparation is the task's Shape; what
// the task brings is put in place before release:
//
//   - its files are copied into the scratch task folder, which the container
//     has bind-mounted since its creation (the folder, not a copy);
//   - its cgroup ("task", below the run's) is made then, with its limits, and
//     the task enters it at the gate as in a cold run: the runtime's waiting
//     init lives in the "runtime" group and is never charged to the task, and
//     a fresh group per task makes its CPU, memory peak and pids the task's
//     alone on every cgroup version, with nothing to reset;
//   - its argv and environment are written into the gate folder, where
//     kolejka-init, which has waited at the gate since the preparation
//     (started with --await), reads them when the worker says "start";
//   - its stdio: kolejka-init is started with --stdin, --stdout and --stderr
//     naming links in the gate folder, made at assignment: the task's stdin
//     file in its folder or /dev/null, and /proc/self/fd/1 or 2 (the pipes
//     the container was given, which the worker captures) or /dev/null.
//
// A prepared container serves one task and is destroyed with its run, as a
// cold one is; one never taken is destroyed when it has waited
// Config.WarmIdle, or by Close.

// Shape is what a prepared container fixes before its task is known: a task
// runs warm only in a container of its own shape.
type Shape struct {
	Image   string
	Network bool // the task may use the network (the host's)
	// Workspace and Storage are the sizes of the run's tmpfs folders, 0
	// for none.
	Workspace, Storage int64
	// Observer: kolejka-observer's socket is mounted in.
	Observer bool
}

// DefaultWarmIdle is how long a prepared container waits for a task before
// it is destroyed.
const DefaultWarmIdle = 5 * time.Minute

// Gate links naming the task's stdio for a prepared container's
// kolejka-init (see above).
const (
	gateStdin  = "stdin"
	gateStdout = "stdout"
	gateStderr = "stderr"
)

// TaskShape is the shape of the container task runs in with opt.
func (w *Worker) TaskShape(task *spec.Task, opt Options) Shape {
	return w.shape(task, w.limits(task, opt))
}

func (w *Worker) shape(task *spec.Task, l spec.Limits) Shape {
	sh := Shape{Image: task.Image, Network: l.Network == nil || *l.Network, Observer: w.observerSocket() != ""}
	if l.Workspace != nil {
		sh.Workspace = max(*l.Workspace, 1)
	}
	if l.Storage != nil {
		sh.Storage = max(*l.Storage, 1)
	}
	return sh
}

// observerSocket is the observer's socket to mount into containers, "" for
// none: the one dialObserver would try.
func (w *Worker) observerSocket() string {
	if w.cfg.Observer == "none" {
		return ""
	}
	if fi, err := os.Stat(w.cfg.Observer); err != nil || fi.Mode().Type() != os.ModeSocket {
		return ""
	}
	return w.cfg.Observer
}

// warmContainer is a prepared container and the run it was made for.
type warmContainer struct {
	w     *Worker
	id    string
	shape Shape
	lock  *runLock
	sc    *scratch
	// gate, out and errOut (the read ends of the container's stdout and
	// stderr) pass to the run that takes the container: it sets them nil.
	gate        *gate
	out, errOut *os.File
	prep        Prepared
	expiry      *time.Timer

	destroyOnce sync.Once
}

// prepare makes a container of shape sh, waiting to be released.
func (w *Worker) prepare(ctx context.Context, sh Shape) (_ *warmContainer, err error) {
	pr, ok := w.rt.(Preparer)
	if !ok {
		return nil, fmt.Errorf("unable to prepare a container: the %s runtime cannot: %w", w.rt.Name(), ErrUnsupported)
	}
	wc := &warmContainer{w: w, id: newRunID(), shape: sh}
	wc.lock, err = w.register(wc.id, filepath.Join(w.cfg.Temp, scratchPrefix+wc.id), "")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			wc.destroy()
		}
	}()
	l := spec.Limits{Network: &sh.Network}
	if sh.Workspace > 0 {
		l.Workspace = &sh.Workspace
	}
	if sh.Storage > 0 {
		l.Storage = &sh.Storage
	}
	if wc.sc, err = newScratch(w.cfg.Temp, wc.id, l); err != nil {
		return nil, err
	}
	if wc.gate, err = newGate(filepath.Join(wc.sc.dir, "gate")); err != nil {
		return nil, err
	}
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("unable to open %s: %w", os.DevNull, err)
	}
	defer stdin.Close()
	out, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("unable to create a pipe: %w", err)
	}
	defer outW.Close() // the container has its copy
	wc.out = out
	errOut, errW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("unable to create a pipe: %w", err)
	}
	defer errW.Close()
	wc.errOut = errOut

	gateDir := ContainerGateDir
	c := &Container{
		RunID:     wc.id,
		Image:     sh.Image,
		TaskDir:   wc.sc.task,
		ResultDir: wc.sc.result,
		Scratch:   wc.sc.runtime,
		Limits:    l,
		Env:       []string{"PATH=" + basePath},
		InitPath:  w.cfg.InitPath,
		InitArgs: []string{"--gate", gateDir + "/" + gateSocket, "--await",
			"--env-file", gateDir + "/" + gateEnv, "--args-file", gateDir + "/" + gateArgs,
			"--stdin", gateDir + "/" + gateStdin, "--stdout", gateDir + "/" + gateStdout,
			"--stderr", gateDir + "/" + gateStderr},
		GateDir:        wc.gate.dir,
		ObserverSocket: w.observerSocket(),
		Stdin:          stdin,
		Stdout:         outW,
		Stderr:         errW,
		CgroupParent:   w.cfg.CgroupRoot + "/" + wc.id,
	}
	if wc.sc.storageFS {
		c.Storage = wc.sc.storage
	}
	if wc.prep, err = pr.Prepare(ctx, c); err != nil {
		return nil, fmt.Errorf("unable to prepare a container for %s: %w", sh.Image, err)
	}
	// Ready once its kolejka-init waits at the gate: an init that cannot
	// start fails the preparation, not the task that takes the container.
	if err := wc.gate.open(ctx, time.Now().Add(gateTimeout), nil); err != nil {
		return nil, fmt.Errorf("unable to prepare a container for %s: %w", sh.Image, err)
	}
	return wc, nil
}

// destroy removes what is left of the container's run: the container, its
// cgroups, its scratch folder, the gate and pipes no run took, and its
// registry entry. It may follow a run's tear-down, which leaves it little.
func (wc *warmContainer) destroy() {
	wc.destroyOnce.Do(func() {
		log := wc.w.cfg.Logger
		if wc.expiry != nil {
			wc.expiry.Stop()
		}
		if wc.prep != nil {
			if err := wc.prep.Destroy(); err != nil {
				log.Warn("destroying a prepared container failed", "run", wc.id, "error", err)
			}
		}
		if wc.gate != nil {
			wc.gate.close()
		}
		for _, f := range []*os.File{wc.out, wc.errOut} {
			if f != nil {
				f.Close()
			}
		}
		if g, err := wc.w.cg.Load(wc.w.cfg.CgroupRoot + "/" + wc.id); err == nil {
			if err := g.Delete(); err != nil {
				log.Warn("removing a prepared container's cgroup failed", "run", wc.id, "error", err)
			}
		}
		if wc.sc != nil {
			if err := wc.sc.remove(); err != nil {
				log.Warn("removing a prepared container's scratch failed", "run", wc.id, "error", err)
			}
		}
		if wc.lock != nil {
			wc.lock.release()
		}
	})
}

// Prepare makes a container of shape sh and keeps it for the next task of
// that shape (see Execute). Containers prepared and never used are
// destroyed after Config.WarmIdle, or by Close.
func (w *Worker) Prepare(ctx context.Context, sh Shape) error {
	wc, err := w.prepare(ctx, sh)
	if err != nil {
		return err
	}
	if !w.pool.put(wc) {
		wc.destroy()
		return errors.New("unable to keep a prepared container: the worker is closed")
	}
	return nil
}

// WarmStats counts the runs in prepared containers.
type WarmStats struct {
	Hits   int64 // tasks that ran in a prepared container
	Misses int64 // tasks that found none of their shape
	Ready  int   // prepared containers waiting now
}

// WarmStats says how the worker's prepared containers have served.
func (w *Worker) WarmStats() WarmStats {
	p := w.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	ready := 0
	for _, list := range p.ready {
		ready += len(list)
	}
	return WarmStats{Hits: p.hits.Load(), Misses: p.misses.Load(), Ready: ready}
}

// SetWarm changes Config.Warm: how many containers of each shape seen are
// kept prepared from now on (0: none, beyond those Prepare makes).
func (w *Worker) SetWarm(n int) {
	w.pool.mu.Lock()
	w.pool.per = max(n, 0)
	w.pool.mu.Unlock()
}

// Close destroys the prepared containers no task took and stops preparing
// more. Runs in progress are not affected.
func (w *Worker) Close() error {
	w.pool.close()
	return nil
}

// warmPool holds prepared containers by shape.
type warmPool struct {
	w *Worker
	// per is how many containers of a shape seen are kept ready
	// (Config.Warm); 0: only those made by Prepare.
	per  int
	idle time.Duration

	mu     sync.Mutex
	ready  map[Shape][]*warmContainer
	making map[Shape]int
	// active counts the worker's runs from their start to the end of
	// their tear-down. Containers are made only while it is 0: a
	// preparation costs about a cold start's CPU, and made beside a
	// running task it would take that task's cores (and the kernel's
	// cgroup and mount locks) from it, made beside a result on its way
	// out it would delay the owner's answer. wanted holds the shapes to
	// make once the last run is over.
	active int
	wanted map[Shape]bool
	// changed is closed, and replaced, whenever a container becomes
	// ready or a preparation ends: take waits on it for one being made.
	changed chan struct{}
	closed  bool
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc

	hits, misses atomic.Int64
}

func newWarmPool(w *Worker) *warmPool {
	ctx, cancel := context.WithCancel(context.Background())
	idle := w.cfg.WarmIdle
	if idle <= 0 {
		idle = DefaultWarmIdle
	}
	return &warmPool{w: w, per: w.cfg.Warm, idle: idle, ready: map[Shape][]*warmContainer{},
		making: map[Shape]int{}, wanted: map[Shape]bool{}, changed: make(chan struct{}), ctx: ctx, cancel: cancel}
}

// begin counts a run from its start: no container is made from now until
// every run begun has ended.
func (p *warmPool) begin() {
	p.mu.Lock()
	p.active++
	p.mu.Unlock()
}

// end counts a run over. The last run to end has the shapes wanted
// meanwhile made.
func (p *warmPool) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.active--
	if p.active > 0 {
		return
	}
	for sh := range p.wanted {
		delete(p.wanted, sh)
		p.refillLocked(sh)
	}
}

// broadcastLocked wakes the takes waiting for a container being made.
func (p *warmPool) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// put keeps wc until a task takes it or it has waited p.idle; false when
// the pool is closed.
func (p *warmPool) put(wc *warmContainer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.putLocked(wc)
}

func (p *warmPool) putLocked(wc *warmContainer) bool {
	if p.closed {
		return false
	}
	p.broadcastLocked()
	p.ready[wc.shape] = append(p.ready[wc.shape], wc)
	wc.expiry = time.AfterFunc(p.idle, func() {
		if p.remove(wc) {
			wc.destroy()
		}
	})
	return true
}

// remove takes wc out of the pool, if it is there.
func (p *warmPool) remove(wc *warmContainer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.ready[wc.shape]
	for i, x := range list {
		if x == wc {
			p.ready[wc.shape] = append(list[:i:i], list[i+1:]...)
			return true
		}
	}
	return false
}

// take returns a prepared container of shape sh still waiting, or nil; it
// counts the hit or miss. A container of the shape being made is waited
// for (until ctx ends): its preparation is further on than a cold start
// would be. After a miss the pool makes one of the shape, and after a hit
// the next, once the worker's runs are all over (begin, end): made now, it
// would take the cores, and the kernel's cgroup and mount locks, from the
// very task that just arrived.
func (p *warmPool) take(ctx context.Context, sh Shape) *warmContainer {
	var wc *warmContainer
look:
	for {
		p.mu.Lock()
		list := p.ready[sh]
		if len(list) == 0 {
			if p.making[sh] == 0 || p.closed {
				p.mu.Unlock()
				break
			}
			changed := p.changed
			p.mu.Unlock()
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				break look
			}
		}
		wc = list[0]
		p.ready[sh] = list[1:]
		p.mu.Unlock()
		wc.expiry.Stop()
		if wc.prep.Current() {
			break
		}
		// Its init was killed meanwhile (a node's OOM killer, an
		// operator), or its image was replaced: no task may meet that.
		p.w.cfg.Logger.Info("a prepared container went stale before its task", "run", wc.id, "image", sh.Image)
		wc.destroy()
		wc = nil
	}
	if wc != nil {
		p.hits.Add(1)
	} else {
		p.misses.Add(1)
		p.refill(sh)
	}
	return wc
}

// WarmShapes bounds the prepared containers a worker keeps at once to
// WarmShapes × Config.Warm: tasks of ever new shapes (sizes, images) would
// otherwise have the node hold containers, their mounts and waiting inits,
// outside any task's limits, for every shape seen in the idle time.
const WarmShapes = 4

// held is how many containers are ready or being made, of every shape.
func (p *warmPool) held() int {
	n := 0
	for _, list := range p.ready {
		n += len(list)
	}
	for _, m := range p.making {
		n += m
	}
	return n
}

// refill makes containers of shape sh in the background until per of them
// are ready or being made, within the pool's bound (WarmShapes); while a
// run is active it only notes the shape, for end.
func (p *warmPool) refill(sh Shape) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refillLocked(sh)
}

func (p *warmPool) refillLocked(sh Shape) {
	if p.active > 0 {
		if p.per > 0 && !p.closed {
			p.wanted[sh] = true
		}
		return
	}
	for !p.closed && len(p.ready[sh])+p.making[sh] < p.per && p.held() < WarmShapes*p.per {
		p.making[sh]++
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			wc, err := p.w.prepare(p.ctx, sh)
			p.mu.Lock()
			p.making[sh]--
			// Ready in the same step as no longer being made: a take
			// waiting for it sees one or the other.
			kept := err == nil && p.putLocked(wc)
			if err != nil {
				p.broadcastLocked()
			}
			if errors.Is(err, ErrUnsupported) {
				// The runtime cannot here (see its Prepare): once is enough.
				p.per = 0
			}
			p.mu.Unlock()
			switch {
			case errors.Is(err, ErrUnsupported):
				p.w.cfg.Logger.Info("warm containers off", "reason", err)
			case err != nil:
				if p.ctx.Err() == nil {
					p.w.cfg.Logger.Warn("preparing a container failed", "image", sh.Image, "error", err)
				}
			case !kept:
				wc.destroy()
			default:
				p.refill(sh)
			}
		}()
		if p.making[sh] > 0 && len(p.ready[sh]) == 0 {
			// One at a time while none is ready: a shape that cannot be
			// prepared (its image missing) costs one failure per task.
			break
		}
	}
}

func (p *warmPool) close() {
	p.mu.Lock()
	p.closed = true
	p.cancel()
	ready := p.ready
	p.ready = map[Shape][]*warmContainer{}
	p.mu.Unlock()
	p.wg.Wait()
	for _, list := range ready {
		for _, wc := range list {
			wc.destroy()
		}
	}
}

// warmStdio makes the gate's stdio links for the task and its captures
// from the container's pipes. Streams the task does not capture go to
// /dev/null; their pipes are drained (only runc's init could write there).
func (s *supervisor) warmStdio(wc *warmContainer) error {
	r := s.r
	link := func(name, target string) error {
		if err := os.Symlink(target, filepath.Join(s.gate.dir, name)); err != nil {
			return fmt.Errorf("unable to pass the task's %s: %w", name, err)
		}
		return nil
	}
	stdin := os.DevNull
	if r.task.Stdin != "" {
		stdin = path.Join(ContainerTaskDir, r.task.Stdin)
	}
	if err := link(gateStdin, stdin); err != nil {
		return err
	}
	limit := r.w.cfg.OutputLimit
	take := func(f **os.File, name, fd string, dst string) (string, error) {
		pipe := *f
		*f = nil
		if dst == "" {
			go func() { _, _ = io.Copy(io.Discard, pipe); pipe.Close() }()
			return os.DevNull, nil
		}
		c, err := captureFrom(filepath.Join(r.stage, dst), limit, pipe)
		if err != nil {
			pipe.Close()
			return "", err
		}
		s.captures = append(s.captures, c)
		r.files = append(r.files, dst)
		return "/proc/self/fd/" + fd, nil
	}
	outTarget, err := take(&wc.out, gateStdout, "1", r.task.Stdout)
	if err != nil {
		return err
	}
	errDst := r.task.Stderr
	shared := errDst != "" && errDst == r.task.Stdout
	if shared {
		errDst = ""
	}
	errTarget, err := take(&wc.errOut, gateStderr, "2", errDst)
	if err != nil {
		return err
	}
	if shared {
		// Both streams into stdout's pipe, in their order, as "2>&1".
		errTarget = outTarget
	}
	if err := link(gateStdout, outTarget); err != nil {
		return err
	}
	return link(gateStderr, errTarget)
}

// captureFrom is a capture (see newCapture) of the pipe whose read end is
// pipe, the write end being the container's already.
func captureFrom(path string, limit int64, pipe *os.File) (*capture, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("unable to create %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("unable to create %s: %w", path, err)
	}
	return &capture{r: pipe, file: f, limit: limit, done: make(chan error, 1)}, nil
}

// update rewrites the run's record (a prepared container's run, taken by
// a task: its stage is known now). The lock is held throughout.
func (l *runLock) update(scratch, stage string) error {
	rec, _ := json.Marshal(runRecord{Scratch: scratch, Stage: stage, Pid: os.Getpid()})
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("unable to register the run's result folder: %w", err)
	}
	if _, err := l.f.WriteAt(rec, 0); err != nil {
		return fmt.Errorf("unable to register the run's result folder: %w", err)
	}
	return nil
}
