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
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// gateTimeout bounds how long kolejka-init may take to present the task's
// first process (container creation is done by then; this is exec + Go
// start-up, normally about a millisecond).
const gateTimeout = 30 * time.Second

// Worker runs tasks with one runtime. It is safe for concurrent use: a
// foreman runs several tasks at once through one Worker.
type Worker struct {
	cfg   Config
	rt    Runtime
	cg    *cgroup.Hierarchy
	cores []int
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
	runID := newRunID()
	stage := filepath.Join(filepath.Dir(filepath.Clean(resultDir)), stagePrefix+runID)
	// Registered before anything of the run exists, and held until the
	// result is published or the stage removed: a worker killed at any
	// point leaves a record that names its stage and scratch, for the
	// next worker's sweep. A registry that cannot be written (the state
	// folder broken) is the system's failure: an SE result, as before.
	lock, regErr := w.register(runID, filepath.Join(w.cfg.Temp, scratchPrefix+runID), stage)
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

	r := &run{w: w, id: runID, task: task, taskDir: taskDir, stage: stage, opt: opt,
		log: w.cfg.Logger.With("task", task.ID, "run", runID)}
	r.limits = task.Limits.Merge(w.cfg.Caps, opt.Caps)
	if r.limits.Memory != nil && r.limits.Swap == nil {
		// No swap unless asked for: a judged program that swaps has
		// meaningless timings. Written into the result's limits, so it shows.
		zero := int64(0)
		r.limits.Swap = &zero
	}
	res := &spec.Result{
		ID:     task.ID,
		Tags:   append([]string{}, w.cfg.Tags...),
		Stdout: task.Stdout,
		Stderr: task.Stderr,
		Files:  map[string]spec.File{},
	}
	runErr := regErr
	if runErr == nil {
		runErr = r.execute(ctx)
	}
	res.Limits = r.limits
	res.Stats = statsOf(r.usage, &r.out, r.cores)
	if r.out.systemError == nil && runErr != nil {
		r.out.systemError = runErr
	}
	res.Status = verdict(&r.out, r.usage)
	if r.out.started {
		code := r.out.exit.Code
		res.Result = &code
	}
	for _, f := range r.files {
		res.Files[f] = spec.File{Path: f}
	}
	res.Omitted = r.omitted
	if err := spec.WriteResult(stage, res); err != nil {
		return nil, fmt.Errorf("unable to write the result: %w", err)
	}
	// unix.Rename: os.Rename refuses to replace an (empty) folder.
	if err := unix.Rename(stage, resultDir); err != nil {
		return nil, fmt.Errorf("unable to publish the result folder %s: %w", resultDir, err)
	}
	published = true
	if opt.Consume && r.out.systemError == nil {
		os.RemoveAll(taskDir)
	}
	r.log.Info("task done", "status", res.Status, "exit", r.out.exit.Code, "wall", r.out.wall)
	return res, r.out.systemError
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

	destroy func() error // the runtime's tear-down, once a container started

	obs     *observer.Client  // the observer daemon, when one answers
	session *observer.Session // the task's top session, made by the daemon
}

// execute runs the task and leaves r.out, r.usage and r.files filled in.
// An error is a system failure (SE).
func (r *run) execute(ctx context.Context) error {
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
	r.obs = w.dialObserver()
	if r.obs != nil {
		defer r.obs.CloseIdleConnections()
	}
	if err := unsupportedLimits(r.limits, r.obs != nil); err != nil {
		return err
	}
	if err := w.rt.Check(r.limits); err != nil {
		return err
	}
	res := &cgroup.Resources{Memory: r.limits.Memory, Swap: r.limits.Swap, Pids: r.limits.Pids,
		CPUs: cgroup.FormatCPUList(r.cores), Devices: taskDevices}
	if err := w.cg.Check(w.cfg.CgroupRoot+"/"+r.id+"/task", res); err != nil {
		return fmt.Errorf("unable to enforce the limits: %w", err)
	}

	sc, err := newScratch(w.cfg.Temp, r.id, r.limits)
	if err != nil {
		return err
	}
	// Tear-down runs its independent parts side by side: the container,
	// the cgroups and the scratch folder.
	var group *cgroup.Group
	parent := w.cfg.CgroupRoot + "/" + r.id
	defer func() {
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
			if g, err := w.cg.Load(parent); err == nil {
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
			if group != nil {
				warn("removing the task's cgroup", group.Delete())
			}
		}()
		go func() {
			defer wg.Done()
			warn("cleaning the scratch folder", sc.remove())
		}()
		wg.Wait()
	}()
	if err := sc.copyInputs(r.task, r.taskDir, r.opt.Consume); err != nil {
		if errors.Is(err, errNoSpace) {
			r.out.workspaceFull = true
			r.log.Warn("task refused", "error", err)
			return nil
		}
		return err
	}

	group, err = w.cg.Create(parent+"/task", res)
	if err != nil {
		return fmt.Errorf("unable to create the task's cgroup: %w", err)
	}

	// Measured also when start fails after the task ran (its output could
	// not be saved: the node's disk full), so that the SE result still
	// says what the task used.
	startErr := r.start(ctx, sc, group)
	if u, err := group.Usage(); err == nil {
		r.usage = u
	} else if startErr == nil {
		return fmt.Errorf("unable to measure the task: %w", err)
	}
	if startErr != nil {
		return startErr
	}
	r.out.workspaceFull = r.out.workspaceFull || sc.workspaceFull() || sc.storageFull()
	return r.gather(sc)
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

// start runs the container through the gate and waits for its end.
func (r *run) start(ctx context.Context, sc *scratch, group *cgroup.Group) (err error) {
	w := r.w
	stdin, err := r.openStdin(sc)
	if err != nil {
		return err
	}
	defer stdin.Close()
	stdout, stderr, captures, err := r.openOutputs()
	if err != nil {
		return err
	}
	started := false
	defer func() {
		if !started {
			for _, c := range captures {
				c.abort()
			}
		}
	}()
	g, err := newGate(filepath.Join(sc.dir, "gate"))
	if err != nil {
		return err
	}
	defer g.close()
	gateDir := ContainerGateDir
	if r.hostFS() {
		gateDir = g.hostDir()
	}
	if err := g.writeCommand(r.task.Args, r.env(r.taskPath(sc))); err != nil {
		return err
	}
	initArgs := []string{"--gate", gateDir + "/" + gateSocket,
		"--env-file", gateDir + "/" + gateEnv, "--args-file", gateDir + "/" + gateArgs}

	c := &Container{
		RunID:        r.id,
		Image:        r.task.Image,
		TaskDir:      sc.task,
		ResultDir:    sc.result,
		Scratch:      sc.runtime,
		Limits:       r.limits,
		CPUSet:       cgroup.FormatCPUList(r.cores),
		Env:          []string{"PATH=" + basePath},
		InitPath:     w.cfg.InitPath,
		InitArgs:     initArgs,
		GateDir:      g.dir,
		Stdin:        stdin,
		Stdout:       stdout,
		Stderr:       stderr,
		CgroupParent: w.cfg.CgroupRoot + "/" + r.id,
	}
	if sc.storageFS {
		c.Storage = sc.storage
	}
	if r.obs != nil {
		c.ObserverSocket = w.cfg.Observer
	}
	proc, err := w.rt.Start(ctx, c)
	if err != nil {
		return fmt.Errorf("unable to start the task: %w", err)
	}
	r.destroy = proc.Destroy // by execute's tear-down, whatever happens next
	// The container has its copies now; ours would keep pipes open forever.
	stdin.Close()
	// Wait once, in the background: the gate must notice a container that
	// dies before reaching it, and everything below waits on exited.
	var st ExitStatus
	var werr error
	exited := make(chan struct{})
	go func() {
		st, werr = proc.Wait()
		close(exited)
	}()

	// workerKilled: the worker ended the task (time limit, output cap,
	// interruption), which Kolejka does by killing its container.
	var workerKilled atomic.Bool
	killTask := sync.OnceFunc(func() {
		workerKilled.Store(true)
		if err := group.Kill(); err != nil {
			r.log.Warn("killing the task failed; killing its container", "error", err)
			_ = proc.Kill()
		}
	})
	for _, cp := range captures {
		cp.closeWriter()
		cp.start(func() {
			r.out.outputLimit = true
			killTask()
		})
	}
	started = true

	gctx, cancel := context.WithTimeout(ctx, gateTimeout)
	pid, err := g.wait(gctx, exited)
	cancel()
	if err == nil && pid == 0 {
		// The command could not be started (not found, not executable):
		// kolejka-init said so on the task's stderr and exits with 127 or
		// 126, which is the task's result (RE), as in a shell.
		<-exited
		if werr != nil {
			return fmt.Errorf("unable to wait for the task: %w", werr)
		}
		r.out.started, r.out.exit = true, st
		return r.waitCaptures(captures)
	}
	if err == nil {
		err = r.enter(group, pid)
		if err != nil {
			g.refuse("cannot enter the task's cgroup")
			err = fmt.Errorf("unable to move the task into its cgroup: %w", err)
		}
	}
	if err != nil {
		_ = proc.Kill()
		<-exited
		return errors.Join(err, r.waitCaptures(captures))
	}

	// From here the task runs. The timer and ctx kill it; its end (or
	// theirs) is seen by Wait.
	var timer *time.Timer
	var deadline time.Time
	begin := time.Now()
	if err := g.release(); err != nil {
		_ = proc.Kill()
		<-exited
		return errors.Join(err, r.waitCaptures(captures))
	}
	r.out.started = true
	initWatch := make(chan bool, 1)
	go func() { initWatch <- watchInit(group, g.ended, exited, proc.Kill, r.log) }()
	var timedOut atomic.Bool
	if r.limits.Time != nil {
		deadline = begin.Add(*r.limits.Time)
		timer = time.AfterFunc(*r.limits.Time, func() {
			select {
			case <-g.ended:
				return // ended in time; its container is only slow to go
			default:
			}
			timedOut.Store(true)
			killTask()
		})
		defer func() { r.out.timedOut = r.out.timedOut || timedOut.Load() }()
	}
	var interrupted atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		interrupted.Store(true)
		killTask()
	})
	// The task's end is what kolejka-init reports; the container's end
	// (what the runtime sees) can come much later (Docker's engine).
	select {
	case <-g.ended:
	case <-exited:
	}
	end := time.Now()
	select {
	case <-g.ended:
		if !g.endedAt.IsZero() {
			end = g.endedAt
		}
	default:
	}
	<-exited
	stop()
	initLost := <-initWatch
	if interrupted.Load() {
		r.out.systemError = fmt.Errorf("interrupted: %w", context.Cause(ctx))
	}
	if timer != nil && !timer.Stop() && timedOut.Load() {
		// The timer fired and killed: its kill may still be in progress.
		killTask()
	}
	if initLost && !interrupted.Load() && !(timer != nil && end.After(deadline)) {
		// Without init's report the task's status is unknown; a time limit
		// that passed still decides (TLE).
		r.out.systemError = errors.New("kolejka-init did not report the end of the task: its container was killed")
	}
	r.out.wall = end.Sub(begin)
	if !deadline.IsZero() && end.After(deadline) {
		r.log.Debug("time limit", "late", end.Sub(deadline))
	}
	if werr != nil {
		return fmt.Errorf("unable to wait for the task: %w", werr)
	}
	r.out.exit = st
	// Init is gone, so its connection is closed and the reader has ended
	// (or will, at once): only then may its findings be read.
	<-g.ended
	if g.coded {
		// kolejka-init's report is the task's own end (256−N for signal
		// N, see pid1); the container's status is init's, which mirrors
		// it unless init itself was killed (then 128+N, as Docker reports
		// a killed container).
		r.out.exit = ExitStatus{Code: g.code, Signal: g.signal}
	}
	// Processes the task left (only possible when the runtime gives no pid
	// namespace) must not outlive it, nor keep its output pipes open.
	if err := group.Kill(); err != nil {
		r.log.Warn("killing leftover processes failed", "error", err)
	}
	err = r.waitCaptures(captures)
	if workerKilled.Load() && r.out.exit.Signal == int(unix.SIGKILL) {
		// Kolejka ends a task past its time limit by killing its
		// container (stage0's `docker kill`), whose exit code the engine
		// reports as 137; ours killed only the task, which init reports
		// as 247, the code judges read as the memory limit's kill.
		r.out.exit = ExitStatus{Code: 128 + int(unix.SIGKILL), Signal: int(unix.SIGKILL)}
	}
	return err
}

// enter moves the task (stopped at its first instruction) into its cgroup:
// through the observer daemon when there is one, so that the group becomes
// the task's top session (its limits stay the worker's: only the nesting
// limits go to the daemon), else directly.
func (r *run) enter(group *cgroup.Group, pid int) error {
	if r.obs != nil {
		sess, err := r.obs.Adopt(pid, r.w.cg.Absolute(group.Path()), spec.Limits{CgroupDepth: r.limits.CgroupDepth, CgroupDescendants: r.limits.CgroupDescendants})
		if err == nil {
			r.session = sess
			return nil
		}
		if r.limits.CgroupDepth != nil || r.limits.CgroupDescendants != nil {
			return fmt.Errorf("kolejka-observer refused the task's session: %w", err)
		}
		r.log.Warn("kolejka-observer refused the task's session; measuring it without", "error", err)
	}
	return group.Add(pid)
}

func (r *run) waitCaptures(captures []*capture) error {
	var errs []error
	for _, c := range captures {
		if err := c.wait(); err != nil {
			errs = append(errs, fmt.Errorf("unable to save the task's output: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (r *run) openStdin(sc *scratch) (*os.File, error) {
	if r.task.Stdin == "" {
		return os.Open(os.DevNull)
	}
	f, err := os.Open(filepath.Join(sc.task, r.task.Stdin))
	if err != nil {
		return nil, fmt.Errorf("unable to open stdin: %w", err)
	}
	return f, nil
}

// openOutputs makes the task's stdout and stderr: captures into the result
// folder for the streams the task names, /dev/null for the others.
func (r *run) openOutputs() (stdout, stderr *os.File, caps []*capture, err error) {
	devnull := func() (*os.File, error) { return os.OpenFile(os.DevNull, os.O_WRONLY, 0) }
	limit := r.w.cfg.OutputLimit
	if r.task.Stdout != "" {
		c, err := newCapture(filepath.Join(r.stage, r.task.Stdout), limit)
		if err != nil {
			return nil, nil, nil, err
		}
		caps = append(caps, c)
		stdout = c.w
		r.files = append(r.files, r.task.Stdout)
	} else if stdout, err = devnull(); err != nil {
		return nil, nil, nil, err
	}
	switch {
	case r.task.Stderr != "" && r.task.Stderr == r.task.Stdout:
		stderr = stdout
	case r.task.Stderr != "":
		c, err := newCapture(filepath.Join(r.stage, r.task.Stderr), limit)
		if err != nil {
			for _, c := range caps {
				c.abort()
			}
			return nil, nil, nil, err
		}
		caps = append(caps, c)
		stderr = c.w
		r.files = append(r.files, r.task.Stderr)
	default:
		if stderr, err = devnull(); err != nil {
			return nil, nil, nil, err
		}
	}
	return stdout, stderr, caps, nil
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
