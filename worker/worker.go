// Package worker executes one Kolejka task folder into a result folder on
// this machine. The isolation backend is a Runtime (runc, host, docker);
// everything else is here: scratch space and inputs, the task's cgroup and
// its limits, the gate that puts the task's first process into that cgroup
// before it runs, stdio capture with caps, the time limit, stats, the
// verdict, output collection and the result file, and cleaning up after
// every outcome, including after a worker that was killed.
//
// See docs/architecture.md for the whole sequence.
package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// Worker runs tasks with one runtime. It is safe for concurrent use: a
// foreman runs several tasks at once through one Worker.
type Worker struct {
	cfg   Config
	rt    Runtime
	cg    *cgroup.Hierarchy
	cores []int
	pool  *warmPool // prepared containers (see warm.go)
}

// New prepares a worker: it finds kolejka-init and the host's cgroups and
// sweeps what runs of dead workers left behind.
func New(ctx context.Context, cfg Config, rt Runtime) (*Worker, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	cg, err := cgroup.Host()
	if err != nil {
		return nil, fmt.Errorf("unable to find cgroups: %w", err)
	}
	if err := placeRuns(cg, &cfg); err != nil {
		return nil, err
	}
	cores, err := hostCores()
	if err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, rt: rt, cg: cg, cores: cores}
	w.pool = newWarmPool(w)
	if err := w.Sweep(ctx); err != nil {
		w.cfg.Logger.Warn("sweeping leftovers of earlier runs failed", "error", err)
	}
	return w, nil
}

// placeRuns settles where the runs' groups go: the configured CgroupRoot,
// or "kolejka" below the group delegated to this process (on a v2 host
// under systemd's Delegate=yes; the root of the hierarchy otherwise, and
// inside cgroup.Confine's view of the delegation). Where this process's own
// group lies on the way (a service that starts in its delegated group), its
// processes move down into a leaf first, as v2 requires.
func placeRuns(cg *cgroup.Hierarchy, cfg *Config) error {
	if cfg.CgroupRoot == "" {
		d, err := cg.Delegation(os.Getpid())
		if err != nil {
			return fmt.Errorf("unable to find the cgroup delegated to the worker: %w", err)
		}
		cfg.CgroupRoot = path.Join(d, DefaultCgroupRoot)
	}
	if _, err := cg.MakeRoom(cfg.CgroupRoot, os.Getpid(), "supervisor"); err != nil {
		return fmt.Errorf("unable to prepare cgroup %s for the runs: %w", cfg.CgroupRoot, err)
	}
	return nil
}

// Runtime returns the worker's runtime.
func (w *Worker) Runtime() Runtime { return w.rt }

// Options of one execution.
type Options struct {
	// Consume takes the task's files without copying them where it can
	// (hard links), and removes the task folder once the result is
	// published without a system error. On every other end the task
	// folder is left as it was: nothing a user handed over is lost.
	Consume bool
	// Caps are merged into the task's limits for this execution only.
	Caps spec.Limits
	// Cores, when set, are the cores to pin the task to, in place of the
	// cpus_offset rule: a node packing tasks side by side hands each its
	// own, contiguous or not. Their number must be the task's cpus limit.
	Cores []int
	// Published, when set, is called with the result as soon as its
	// folder is published, while the run's tear-down (container, cgroups,
	// scratch) may still go on: a caller can send the result on at once.
	// Execute returns once both are done, so that the task's cores and
	// memory are free again when it does.
	Published func(*spec.Result)
	// Transient says the result folder is the caller's scratch, sent on
	// and removed once the result is out (a foreman's): its result file
	// is written without the fsyncs that only a folder meant to outlive a
	// crash of the host needs. They cost 1–5 ms on the result's path.
	Transient bool
}

// Execute runs the task in taskDir and writes its result folder resultDir,
// which must not exist or be empty; the folder appears complete or not at
// all.
//
// Bad input (an invalid task, a result folder in the way) returns a nil
// result and an error, and changes nothing. Once the task is accepted,
// Execute always writes a result: when the system fails to run the task
// (missing image, a limit this host cannot enforce, a runtime failure) the
// result has status SE and the error says why.
func (w *Worker) Execute(ctx context.Context, taskDir, resultDir string, opt Options) (*spec.Result, error) {
	task, err := spec.LoadTask(taskDir) // validated, its files checked
	if err != nil {
		return nil, err
	}
	if err := checkResultDir(resultDir); err != nil {
		return nil, err
	}
	if task.ID == "" {
		task.ID = newTaskID()
	}
	// Counted from here to the end of its tear-down: no container is
	// prepared beside a running task, nor beside the publication of its
	// result and the tear-down (warmPool.begin), which are on the way to
	// the owner's answer (a foreman posts the result meanwhile).
	w.pool.begin()
	defer w.pool.end()
	// A prepared container of the task's shape, if there is one, makes
	// the run: its ID, registry entry, scratch, cgroup parent and gate.
	wc := w.takeWarm(ctx, task, opt)
	runID := newRunID()
	if wc != nil {
		runID = wc.id
		// Whatever the run did not take or tear down goes after it.
		defer wc.destroy()
	}
	stage := filepath.Join(filepath.Dir(filepath.Clean(resultDir)), stagePrefix+runID)
	// Registered before anything of the run exists, and held until the
	// result is published or the stage removed: a worker killed at any
	// point leaves a record that names its stage and scratch, for the
	// next worker's sweep. A registry that cannot be written (the state
	// folder broken) is the system's failure: an SE result, as before.
	var lock *runLock
	var regErr error
	if wc != nil {
		// The prepared run's entry, held since its preparation, now
		// names the stage too; wc.destroy releases it.
		regErr = wc.lock.update(wc.sc.dir, stage)
	} else {
		lock, regErr = w.register(runID, filepath.Join(w.cfg.Temp, scratchPrefix+runID), stage)
	}
	if lock != nil {
		defer lock.release()
	}
	if err := os.Mkdir(stage, 0o755); err != nil {
		return nil, fmt.Errorf("unable to create the result folder: %w", err)
	}
	published := false
	defer func() {
		if !published {
			os.RemoveAll(stage)
		}
	}()

	r := w.newRun(runID, task, taskDir, stage, opt)
	r.warm = wc
	runErr := regErr
	if runErr == nil {
		runErr = r.execute(ctx)
	}
	// What the result says is final here: the task is gone, measured, and
	// its outputs are in the stage. The run's tear-down (container,
	// cgroups, scratch) goes on while the result is written and published,
	// off the result's path; Execute still returns only once it is done,
	// and holds the run's registry record until then, so a worker killed
	// meanwhile leaves the rest to the next sweep.
	tornDown := r.startTearDown()
	defer func() { <-tornDown }()
	res := r.result(runErr)
	if err := writeResult(stage, res, opt.Transient); err != nil {
		// The disk may be full of the run's own scratch (a task that
		// filled it): write again once the tear-down has freed it.
		<-tornDown
		if err := writeResult(stage, res, opt.Transient); err != nil {
			return nil, fmt.Errorf("unable to write the result: %w", err)
		}
	}
	// unix.Rename: os.Rename refuses to replace an (empty) folder.
	if err := unix.Rename(stage, resultDir); err != nil {
		return nil, fmt.Errorf("unable to publish the result folder %s: %w", resultDir, err)
	}
	published = true
	if opt.Consume && r.out.systemError == nil {
		os.RemoveAll(taskDir)
	}
	if opt.Published != nil {
		opt.Published(res)
	}
	if wc != nil {
		// The next container of the shape is made once the run is
		// over, if no other run is active (see warmPool.take).
		w.pool.refill(wc.shape)
	}
	r.log.Info("task done", "status", res.Status, "exit", r.out.exit.Code, "wall", r.out.wall, "warm", wc != nil)
	return res, r.out.systemError
}

// writeResult writes the result file into the stage, a folder nobody sees
// before it is renamed into place whole: durably (spec.WriteResult), or
// for a transient result folder with a plain write.
func writeResult(stage string, res *spec.Result, transient bool) error {
	if !transient {
		return spec.WriteResult(stage, res)
	}
	data, err := res.Encode()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(stage, spec.ResultFile), data, 0o644)
}

// newRun prepares the execution of task with the limits it runs with:
// its own, under the worker's and the caller's caps.
func (w *Worker) newRun(id string, task *spec.Task, taskDir, stage string, opt Options) *run {
	return &run{w: w, id: id, task: task, taskDir: taskDir, stage: stage, opt: opt,
		log: w.cfg.Logger.With("task", task.ID, "run", id), limits: w.limits(task, opt)}
}

// limits are the limits task runs with: its own, under the worker's and
// the caller's caps.
func (w *Worker) limits(task *spec.Task, opt Options) spec.Limits {
	l := task.Limits.Merge(w.cfg.Caps, opt.Caps)
	if l.Memory != nil && l.Swap == nil {
		// No swap unless asked for: a judged program that swaps has
		// meaningless timings. Written into the result's limits, so it shows.
		zero := int64(0)
		l.Swap = &zero
	}
	return l
}

// takeWarm returns a prepared container for task, or nil (warm containers
// off, or none of its shape ready: the pool then prepares one for the
// next task of the shape).
func (w *Worker) takeWarm(ctx context.Context, task *spec.Task, opt Options) *warmContainer {
	if _, ok := w.rt.(Preparer); !ok {
		return nil
	}
	return w.pool.take(ctx, w.TaskShape(task, opt))
}

// checkResultDir accepts a folder that does not exist yet (its parent must)
// or an empty one: never overwrite what a user has (Kolejka deletes it).
func checkResultDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		parent := filepath.Dir(filepath.Clean(dir))
		if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
			return fmt.Errorf("result folder %s: its parent folder does not exist", dir)
		}
		return nil
	case err != nil:
		return fmt.Errorf("result folder %s: %w", dir, err)
	case len(entries) > 0:
		return fmt.Errorf("result folder %s is not empty; choose a new folder", dir)
	}
	return nil
}

func newTaskID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// run is one execution in progress.
type run struct {
	w       *Worker
	id      string
	task    *spec.Task
	taskDir string
	stage   string // the result folder being written
	opt     Options
	log     *slog.Logger

	limits spec.Limits
	cores  []int
	out    outcome
	usage  *cgroup.Usage
	files  []string // result files, by name
	// omitted: what the task produced that the result leaves out, by
	// printable name, with why (see gather).
	omitted map[string]string

	scratch *scratch       // the run's scratch folder, once made
	group   *cgroup.Group  // the task's cgroup, once made
	warm    *warmContainer // the prepared container the run takes, if any
	destroy func() error   // the runtime's tear-down, once a container started

	obs     *observer.Client  // the observer daemon, when one answers
	session *observer.Session // the task's top session, made by the daemon
}

// execute runs the task and leaves r.out, r.usage and r.files filled in.
// An error is a system failure (SE).
//
// It checks the limits against the node, makes the scratch folder with
// the task's inputs and the task's cgroup, has the task supervised (see
// supervisor), measures it and gathers its outputs. What it made is torn
// down afterwards, whatever happened (startTearDown).
func (r *run) execute(ctx context.Context) error {
	w := r.w
	if err := r.placeCores(); err != nil {
		return err
	}
	r.obs = w.dialObserver()
	if r.obs != nil {
		defer r.obs.CloseIdleConnections()
	}
	res, err := r.checkLimits()
	if err != nil {
		return err
	}

	var sc *scratch
	if r.warm != nil {
		// The prepared container's: the container is in it already, and
		// goes with the run's tear-down like one started for it.
		sc, r.destroy = r.warm.sc, r.warm.prep.Destroy
	} else if sc, err = newScratch(w.cfg.Temp, r.id, r.limits); err != nil {
		return err
	}
	r.scratch = sc // torn down by Execute (startTearDown)
	if err := sc.copyInputs(r.task, r.taskDir, r.opt.Consume); err != nil {
		if errors.Is(err, errNoSpace) {
			r.out.workspaceFull = true
			r.log.Warn("task refused", "error", err)
			return nil
		}
		return err
	}

	r.group, err = w.cg.Create(r.cgroupParent()+"/task", res)
	if err != nil {
		return fmt.Errorf("unable to create the task's cgroup: %w", err)
	}

	// Measured also when supervise fails after the task ran (its output
	// could not be saved: the node's disk full), so that the SE result
	// still says what the task used.
	runErr := r.supervise(ctx, sc, r.group)
	if u, err := r.group.Usage(); err == nil {
		r.usage = u
	} else if runErr == nil {
		return fmt.Errorf("unable to measure the task: %w", err)
	}
	if runErr != nil {
		return runErr
	}
	r.out.workspaceFull = r.out.workspaceFull || sc.workspaceFull() || sc.storageFull()
	return r.gather(sc)
}

// cgroupParent is the run's cgroup: the task's group and the runtime's go
// below it.
func (r *run) cgroupParent() string { return r.w.cfg.CgroupRoot + "/" + r.id }

// placeCores settles the cores the task runs on: the ones the caller
// handed over (Options.Cores), or the cpus_offset rule's, and writes the
// offset into the limits the result shows.
func (r *run) placeCores() error {
	w := r.w
	switch {
	case r.opt.Cores != nil:
		if err := checkCores(w.cores, r.opt.Cores, r.limits.CPUs); err != nil {
			return err
		}
		r.cores = append([]int(nil), r.opt.Cores...)
		off := int64(slices.Index(w.cores, r.cores[0]))
		r.limits.CPUsOffset = &off
	case r.limits.CPUs != nil:
		var off int64
		if r.limits.CPUsOffset != nil {
			off = *r.limits.CPUsOffset
		}
		cores, err := pickCores(w.cores, *r.limits.CPUs, off)
		if err != nil {
			return err
		}
		r.cores = cores
		r.limits.CPUsOffset = &off
	}
	return nil
}

// checkLimits refuses limits this node cannot enforce (the worker's, the
// runtime's, the cgroups') and returns the task's cgroup resources.
func (r *run) checkLimits() (*cgroup.Resources, error) {
	if err := unsupportedLimits(r.limits, r.obs != nil); err != nil {
		return nil, err
	}
	if err := r.w.rt.Check(r.limits); err != nil {
		return nil, err
	}
	res := &cgroup.Resources{Memory: r.limits.Memory, Swap: r.limits.Swap, Pids: r.limits.Pids,
		CPUs: cgroup.FormatCPUList(r.cores), Devices: taskDevices}
	if err := r.w.cg.Check(r.cgroupParent()+"/task", res); err != nil {
		return nil, fmt.Errorf("unable to enforce the limits: %w", err)
	}
	return res, nil
}

// startTearDown starts tearDown of what execute made, if it made anything,
// and returns a channel closed when it is done.
func (r *run) startTearDown() <-chan struct{} {
	done := make(chan struct{})
	if r.scratch == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		r.tearDown(r.scratch)
	}()
	return done
}

// tearDown removes what the run made, its independent parts side by side:
// the container, the cgroups and the scratch folder.
func (r *run) tearDown(sc *scratch) {
	var wg sync.WaitGroup
	warn := func(what string, err error) {
		if err != nil {
			r.log.Warn(what+" failed", "error", err)
		}
	}
	taskGone := make(chan struct{})
	wg.Add(3)
	go func() {
		defer wg.Done()
		if r.destroy != nil {
			warn("destroying the container", r.destroy())
		}
		// The parent goes with one rmdir per hierarchy once the task's
		// group and the runtime's are gone; only leftovers would need
		// the slow kill-and-walk.
		<-taskGone
		if g, err := r.w.cg.Load(r.cgroupParent()); err == nil {
			warn("removing the run's cgroup", g.Delete())
		}
	}()
	go func() {
		defer wg.Done()
		defer close(taskGone)
		if r.session != nil {
			// The daemon forgets the session and removes its cgroup.
			_, err := r.obs.Close(r.session.ID, r.session.Secret)
			warn("closing the task's session", err)
		}
		if r.group != nil {
			warn("removing the task's cgroup", r.group.Delete())
		}
	}()
	go func() {
		defer wg.Done()
		warn("cleaning the scratch folder", sc.remove())
	}()
	wg.Wait()
}

// unsupportedLimits refuses limits no runtime of this worker enforces yet;
// nested-session limits need the observer daemon.
func unsupportedLimits(l spec.Limits, observed bool) error {
	var bad []string
	if l.GPUs != nil && *l.GPUs > 0 {
		bad = append(bad, "gpus (this node has no GPU support)")
	}
	if l.GPUMemory != nil && *l.GPUMemory > 0 {
		bad = append(bad, "gpu_memory (this node has no GPU support)")
	}
	if l.PerfInstructions != nil {
		bad = append(bad, "perf_instructions (hardware counters are not enforced)")
	}
	if l.PerfCycles != nil {
		bad = append(bad, "perf_cycles (hardware counters are not enforced)")
	}
	if !observed && (l.CgroupDepth != nil || l.CgroupDescendants != nil) {
		bad = append(bad, "cgroup_depth/cgroup_descendants (nested sessions need kolejka-observer running)")
	}
	if len(bad) > 0 {
		return fmt.Errorf("unable to enforce limits %s: %w", strings.Join(bad, ", "), ErrUnsupported)
	}
	return nil
}

// hostFS reports whether the runtime runs tasks in the host's file system.
func (r *run) hostFS() bool {
	h, ok := r.w.rt.(HostFS)
	return ok && h.HostFS()
}

// taskPath is where the task sees its folder: ContainerTaskDir, or the
// scratch folder itself for a runtime without a root file system of its own.
func (r *run) taskPath(sc *scratch) string {
	if r.hostFS() {
		return sc.task
	}
	return ContainerTaskDir
}

// basePath is the PATH of Kolejka's stage2, the task's unless it sets one.
const basePath = "/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"

// env is the task's environment, as Kolejka's stage2 builds it: a fixed
// base, then the task's own variables on top. The image's ENV is not used.
func (r *run) env(taskPath string) []string {
	vars := map[string]string{
		"IFS":  " ",
		"PATH": basePath,
		"PWD":  taskPath,
		"USER": "root",
		"HOME": taskPath,
	}
	for k, v := range r.task.Environment {
		vars[k] = v
	}
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// dialObserver connects to the observer daemon if one answers.
func (w *Worker) dialObserver() *observer.Client {
	if w.cfg.Observer == "none" {
		return nil
	}
	if fi, err := os.Stat(w.cfg.Observer); err != nil || fi.Mode().Type() != os.ModeSocket {
		return nil
	}
	c, err := observer.Dial(w.cfg.Observer)
	if err != nil {
		w.cfg.Logger.Debug("no kolejka-observer", "socket", w.cfg.Observer, "error", err)
		return nil
	}
	return c
}
