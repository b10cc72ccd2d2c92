package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/spec"
)

// gateTimeout bounds how long kolejka-init may take to present the task's
// first process (container creation is done by then; this is exec + Go
// start-up, normally about a millisecond).
const gateTimeout = 30 * time.Second

// supervisor carries one run's task from its container's start to its end,
// once the scratch folder and the task's cgroup exist (run.execute makes
// them and tears them down, with the container, whatever happens here).
// Each step is a method, called in this order by run.supervise:
//
//  1. openStdio: the task's stdin, and its stdout and stderr, captured
//     into the result folder up to the output limit.
//  2. openGate: the gate kolejka-init stops the task at, with the task's
//     argv and environment beside it.
//  3. launch: the runtime starts the container (its spec from container)
//     and one goroutine waits for its end (exited); from here the runtime's
//     Destroy is the tear-down's.
//  4. startCaptures: the output captures run; an output past its cap kills
//     the task (killTask).
//  5. admit: kolejka-init presents the task, stopped at its first
//     instruction, and the task enters its cgroup. A command init could not
//     start ends the run here (noTask); any failure kills the container and
//     ends it as a system error (abandon).
//  6. release: the task runs; its wall time starts.
//  7. arm: the time limit, the interruption of ctx and the watch on a
//     silent kolejka-init (watchInit) may now kill it.
//  8. await: the task's end, as kolejka-init reports it or as the
//     container's end shows it.
//  9. disarm: what the time limit, ctx and the init watch did, and the
//     task's wall time, into the run's outcome.
//  10. takeExit, drain, reportKilled: the exit status (init's report of the
//     task's own end over the runtime's of init's), processes the task left
//     killed and its output saved, and a task the worker killed reported
//     as Kolejka reports a killed container (137).
//
// Every step that fails returns at once; the deferred closes undo steps 1
// and 2, in reverse order, on every path.
type supervisor struct {
	r     *run
	sc    *scratch
	group *cgroup.Group // the task's cgroup

	stdin    *os.File
	stdout   *os.File
	stderr   *os.File
	captures []*capture
	// capturing: the captures were started, so they end by themselves
	// with the task's output, and are no longer aborted.
	capturing bool

	gate *gate
	proc Process

	// exited closes when the runtime's Wait returns; status and waitErr
	// are its answer, to be read only after.
	exited  chan struct{}
	status  ExitStatus
	waitErr error

	killOnce sync.Once
	// workerKilled: the worker ended the task (time limit, output cap,
	// interruption), which Kolejka does by killing its container.
	workerKilled atomic.Bool
	timedOut     atomic.Bool
	interrupted  atomic.Bool

	begin    time.Time // the task's release
	deadline time.Time // begin + the time limit; zero without one
	end      time.Time // the end of the task's last process
	timer    *time.Timer
	// stopInterrupt disarms the interruption by ctx.
	stopInterrupt func() bool
	// initLost receives watchInit's answer: whether it had to kill a
	// kolejka-init that never reported the task's end.
	initLost chan bool
}

// supervise runs the task's container through the gate and waits for its
// end (see supervisor). An error is a system failure (SE); the outcome
// (r.out) says how the task ended.
func (r *run) supervise(ctx context.Context, sc *scratch, group *cgroup.Group) error {
	s := &supervisor{r: r, sc: sc, group: group}
	if r.warm != nil {
		return s.superviseWarm(ctx)
	}
	if err := s.openStdio(); err != nil {
		return err
	}
	defer s.closeStdio()
	if err := s.openGate(); err != nil {
		return err
	}
	defer s.gate.close()
	if err := s.launch(ctx); err != nil {
		return err
	}
	return s.follow(ctx)
}

// superviseWarm is supervise with a prepared container (see warm.go): its
// gate and pipes exist; the task's command and stdio are put in place and
// the container released.
func (s *supervisor) superviseWarm(ctx context.Context) error {
	wc := s.r.warm
	s.gate, wc.gate = wc.gate, nil
	defer s.gate.close()
	err := s.warmStdio(wc)
	defer s.closeStdio()
	if err != nil {
		return err
	}
	if err := s.gate.writeCommand(s.r.task.Args, s.r.env(s.r.taskPath(s.sc))); err != nil {
		return err
	}
	proc, err := wc.prep.Release()
	if err != nil {
		return fmt.Errorf("unable to start the task: %w", err)
	}
	s.started(proc)
	return s.follow(ctx)
}

// follow carries a started container's task to its end (steps 4 to 10).
func (s *supervisor) follow(ctx context.Context) error {
	s.startCaptures()

	var err error
	if s.r.warm != nil {
		// A prepared container's kolejka-init has waited at the gate
		// since the preparation (--await): the command is in place now.
		err = s.gate.start()
	}
	held := false
	if err == nil {
		held, err = s.admit(ctx)
	}
	if err == nil && !held {
		return s.noTask()
	}
	if err == nil {
		err = s.release()
	}
	if err != nil {
		return s.abandon(err)
	}

	// From here the task runs. The timer and ctx kill it; its end (or
	// theirs) is seen by Wait.
	s.arm(ctx)
	defer s.recordTimeout()
	s.await()
	s.disarm(ctx)
	if s.waitErr != nil {
		return fmt.Errorf("unable to wait for the task: %w", s.waitErr)
	}
	s.takeExit()
	err = s.drain()
	s.reportKilled()
	return err
}

// openStdio makes the task's stdin (its stdin file, or /dev/null) and its
// stdout and stderr (see openOutputs).
func (s *supervisor) openStdio() error {
	stdin, err := s.openStdin()
	if err != nil {
		return err
	}
	s.stdout, s.stderr, s.captures, err = s.openOutputs()
	if err != nil {
		stdin.Close()
		return err
	}
	s.stdin = stdin
	return nil
}

// closeStdio releases the captures unless they were started, and our
// stdin.
func (s *supervisor) closeStdio() {
	if !s.capturing {
		for _, c := range s.captures {
			c.abort()
		}
	}
	s.stdin.Close()
}

func (s *supervisor) openStdin() (*os.File, error) {
	if s.r.task.Stdin == "" {
		return os.Open(os.DevNull)
	}
	f, err := os.Open(filepath.Join(s.sc.task, s.r.task.Stdin))
	if err != nil {
		return nil, fmt.Errorf("unable to open stdin: %w", err)
	}
	return f, nil
}

// openOutputs makes the task's stdout and stderr: captures into the result
// folder for the streams the task names, /dev/null for the others.
func (s *supervisor) openOutputs() (stdout, stderr *os.File, caps []*capture, err error) {
	r := s.r
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

// openGate makes the gate in the scratch folder and writes the task's
// command into it.
func (s *supervisor) openGate() error {
	g, err := newGate(filepath.Join(s.sc.dir, "gate"))
	if err != nil {
		return err
	}
	if err := g.writeCommand(s.r.task.Args, s.r.env(s.r.taskPath(s.sc))); err != nil {
		g.close()
		return err
	}
	s.gate = g
	return nil
}

// container is what the runtime starts: kolejka-init, pointed at the gate,
// in the task's folders, limits and cores.
func (s *supervisor) container() *Container {
	r, w, sc := s.r, s.r.w, s.sc
	gateDir := ContainerGateDir
	if r.hostFS() {
		gateDir = s.gate.hostDir()
	}
	c := &Container{
		RunID:     r.id,
		Image:     r.task.Image,
		TaskDir:   sc.task,
		ResultDir: sc.result,
		Scratch:   sc.runtime,
		Limits:    r.limits,
		CPUSet:    cgroup.FormatCPUList(r.cores),
		Env:       []string{"PATH=" + basePath},
		InitPath:  w.cfg.InitPath,
		InitArgs: []string{"--gate", gateDir + "/" + gateSocket,
			"--env-file", gateDir + "/" + gateEnv, "--args-file", gateDir + "/" + gateArgs},
		GateDir:      s.gate.dir,
		Stdin:        s.stdin,
		Stdout:       s.stdout,
		Stderr:       s.stderr,
		CgroupParent: r.cgroupParent(),
	}
	if sc.storageFS {
		c.Storage = sc.storage
	}
	if r.obs != nil {
		c.ObserverSocket = w.cfg.Observer
	}
	return c
}

// launch starts the container and waits for its end in the background,
// once: the gate must notice a container that dies before reaching it, and
// every later step waits on exited.
func (s *supervisor) launch(ctx context.Context) error {
	proc, err := s.r.w.rt.Start(ctx, s.container())
	if err != nil {
		return fmt.Errorf("unable to start the task: %w", err)
	}
	s.started(proc)
	return nil
}

// started takes the started container: its tear-down is the run's, and
// one goroutine waits for its end.
func (s *supervisor) started(proc Process) {
	s.proc = proc
	s.r.destroy = proc.Destroy // by execute's tear-down, whatever happens next
	// The container has its copies now; ours would keep pipes open forever.
	s.stdin.Close()
	s.exited = make(chan struct{})
	go func() {
		s.status, s.waitErr = proc.Wait()
		close(s.exited)
	}()
}

// startCaptures drops our copies of the output pipes' write ends and
// starts copying the task's output; a stream past its cap is OLE.
func (s *supervisor) startCaptures() {
	for _, cp := range s.captures {
		cp.closeWriter()
		cp.start(func() {
			s.r.out.outputLimit = true
			s.killTask()
		})
	}
	s.capturing = true
}

// killTask ends the task for the worker (time limit, output cap,
// interruption): its cgroup's processes, or, if that fails, its container.
// Only the first call acts; the others wait for it.
func (s *supervisor) killTask() {
	s.killOnce.Do(func() {
		s.workerKilled.Store(true)
		if err := s.group.Kill(); err != nil {
			s.r.log.Warn("killing the task failed; killing its container", "error", err)
			_ = s.proc.Kill()
		}
	})
}

// admit waits for kolejka-init to present the task at the gate and moves
// the task into its cgroup. held is false, with no error, when init could
// not start the command at all.
func (s *supervisor) admit(ctx context.Context) (held bool, err error) {
	gctx, cancel := context.WithTimeout(ctx, gateTimeout)
	pid, err := s.gate.wait(gctx, s.exited)
	cancel()
	if err != nil || pid == 0 {
		return false, err
	}
	if err := s.enter(pid); err != nil {
		s.gate.refuse("cannot enter the task's cgroup")
		return false, fmt.Errorf("unable to move the task into its cgroup: %w", err)
	}
	return true, nil
}

// enter moves the task (stopped at its first instruction) into its cgroup:
// through the observer daemon when there is one, so that the group becomes
// the task's top session (its limits stay the worker's: only the nesting
// limits go to the daemon), else directly.
func (s *supervisor) enter(pid int) error {
	r := s.r
	if r.obs != nil {
		sess, err := r.obs.Adopt(pid, r.w.cg.Absolute(s.group.Path()), spec.Limits{CgroupDepth: r.limits.CgroupDepth, CgroupDescendants: r.limits.CgroupDescendants})
		if err == nil {
			r.session = sess
			return nil
		}
		if r.limits.CgroupDepth != nil || r.limits.CgroupDescendants != nil {
			return fmt.Errorf("kolejka-observer refused the task's session: %w", err)
		}
		r.log.Warn("kolejka-observer refused the task's session; measuring it without", "error", err)
	}
	return s.group.Add(pid)
}

// noTask ends a run whose command kolejka-init could not start (not found,
// not executable): init said so on the task's stderr and exits with 127 or
// 126, which is the task's result (RE), as in a shell.
func (s *supervisor) noTask() error {
	<-s.exited
	if s.waitErr != nil {
		return fmt.Errorf("unable to wait for the task: %w", s.waitErr)
	}
	s.r.out.started, s.r.out.exit = true, s.status
	return s.waitCaptures()
}

// abandon ends a run that failed before its task ran: the container is
// killed and the output it wrote saved.
func (s *supervisor) abandon(err error) error {
	_ = s.proc.Kill()
	<-s.exited
	return errors.Join(err, s.waitCaptures())
}

// release lets the task run.
func (s *supervisor) release() error {
	s.begin = time.Now()
	if err := s.gate.release(); err != nil {
		return err
	}
	s.r.out.started = true
	return nil
}

// arm starts what may end the running task: the watch on kolejka-init, the
// time limit and the interruption of ctx.
func (s *supervisor) arm(ctx context.Context) {
	s.initLost = make(chan bool, 1)
	go func() { s.initLost <- watchInit(s.group, s.gate.ended, s.exited, s.proc.Kill, s.r.log) }()
	if limit := s.r.limits.Time; limit != nil {
		s.deadline = s.begin.Add(*limit)
		s.timer = afterFunc(*limit, s.timeUp)
	}
	s.stopInterrupt = context.AfterFunc(ctx, func() {
		s.interrupted.Store(true)
		s.killTask()
	})
}

// afterFunc starts the time limit's timer; a test delays it to stand for a
// loaded machine.
var afterFunc = time.AfterFunc

// timeUp is the time limit's kill, unless the task ended in time and only
// its container is slow to go.
func (s *supervisor) timeUp() {
	select {
	case <-s.gate.ended:
		return
	default:
	}
	s.timedOut.Store(true)
	s.killTask()
}

// recordTimeout puts the time limit's kill into the outcome (TLE).
func (s *supervisor) recordTimeout() {
	s.r.out.timedOut = s.r.out.timedOut || s.timedOut.Load()
}

// await waits for the task's end and then for the container's. The task's
// end is what kolejka-init reports; the container's end (what the runtime
// sees) can come much later (Docker's engine).
func (s *supervisor) await() {
	select {
	case <-s.gate.ended:
	case <-s.exited:
	}
	s.end = time.Now()
	select {
	case <-s.gate.ended:
		if !s.gate.endedAt.IsZero() {
			s.end = s.gate.endedAt
		}
	default:
	}
	<-s.exited
}

// disarm stops the interruption and the time limit, and records in the
// outcome what they and the init watch did, and the task's wall time.
func (s *supervisor) disarm(ctx context.Context) {
	out := &s.r.out
	s.stopInterrupt()
	initLost := <-s.initLost
	if s.interrupted.Load() {
		out.systemError = fmt.Errorf("interrupted: %w", context.Cause(ctx))
	}
	if s.timer != nil && !s.timer.Stop() && s.timedOut.Load() {
		// The timer fired and killed: its kill may still be in progress.
		s.killTask()
	}
	if initLost && !s.interrupted.Load() && !(s.timer != nil && s.end.After(s.deadline)) {
		// Without init's report the task's status is unknown; a time limit
		// that passed still decides (TLE).
		out.systemError = errors.New("kolejka-init did not report the end of the task: its container was killed")
	}
	out.wall = s.end.Sub(s.begin)
	if !s.deadline.IsZero() && s.end.After(s.deadline) {
		s.r.log.Debug("time limit", "late", s.end.Sub(s.deadline))
		// A task whose wall time passed its limit is TLE even when it
		// ended before the timer's kill ran (a loaded machine runs timers
		// late): the verdict never disagrees with the time reported.
		s.timedOut.Store(true)
	}
}

// takeExit sets the task's exit status: the runtime's, unless
// kolejka-init reported the task's own end.
func (s *supervisor) takeExit() {
	s.r.out.exit = s.status
	// Init is gone, so its connection is closed and the reader has ended
	// (or will, at once): only then may its findings be read.
	<-s.gate.ended
	if s.gate.coded {
		// kolejka-init's report is the task's own end (256−N for signal
		// N, see pid1); the container's status is init's, which mirrors
		// it unless init itself was killed (then 128+N, as Docker reports
		// a killed container).
		s.r.out.exit = ExitStatus{Code: s.gate.code, Signal: s.gate.signal}
	}
}

// drain kills the processes the task left (only possible when the runtime
// gives no pid namespace), which must not outlive it nor keep its output
// pipes open, and waits for its output to be saved.
func (s *supervisor) drain() error {
	if err := s.group.Kill(); err != nil {
		s.r.log.Warn("killing leftover processes failed", "error", err)
	}
	return s.waitCaptures()
}

// reportKilled reports a task the worker killed as Kolejka does. Kolejka
// ends a task past its time limit by killing its container (stage0's
// `docker kill`), whose exit code the engine reports as 137; ours killed
// only the task, which init reports as 247, the code judges read as the
// memory limit's kill. It runs after drain: an output cap passed while the
// output drains kills too.
func (s *supervisor) reportKilled() {
	if s.workerKilled.Load() && s.r.out.exit.Signal == int(unix.SIGKILL) {
		s.r.out.exit = ExitStatus{Code: 128 + int(unix.SIGKILL), Signal: int(unix.SIGKILL)}
	}
}

// waitCaptures waits for every output stream to reach its end and be
// saved.
func (s *supervisor) waitCaptures() error {
	var errs []error
	for _, c := range s.captures {
		if err := c.wait(); err != nil {
			errs = append(errs, fmt.Errorf("unable to save the task's output: %w", err))
		}
	}
	return errors.Join(errs...)
}
