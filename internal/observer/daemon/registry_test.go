package daemon

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/clock"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// Registry tests against real cgroups and real processes: the host's
// hierarchy (v1 or v2), and on hybrid hosts also the kernel's
// controller-less cgroup2, where the v2 code paths (procsLeaf moves,
// cgroup.freeze, cgroup.kill, cpu.stat) run for real.

func i64(v int64) *int64 { return &v }

func dur(d time.Duration) *time.Duration { return &d }

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func mustStats(t testing.TB, r *Registry, caller int, s *observer.Session) spec.Stats {
	t.Helper()
	st, err := r.Stats(caller, s.ID, s.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func cpuOf(st spec.Stats) time.Duration {
	if st.CPU.Usage == nil {
		return 0
	}
	return *st.CPU.Usage
}

func pathOf(t testing.TB, h *cgroup.Hierarchy, pid int) string {
	t.Helper()
	p, err := h.PathOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNesting(t *testing.T) { testNesting(t, requireHost(t)) }

func TestUnifiedKernelNesting(t *testing.T) { testNesting(t, requireHybrid(t)) }

// testNesting attaches a process three sessions deep (each attach from
// inside the previous session makes the next one below it), spins there,
// and checks that each session counts what the ones below it used. Then it
// detaches level by level and closes from the top.
func testNesting(t *testing.T, h *cgroup.Hierarchy) {
	e := newEnv(t, h, Options{})
	p := e.caller()
	var ss []*observer.Session
	for i := 0; i < 3; i++ {
		s, err := e.r.AttachNew(p.pid)
		if err != nil {
			t.Fatalf("level %d: %v", i+1, err)
		}
		ss = append(ss, s)
	}
	for i, s := range ss {
		parent := e.callers
		if i > 0 {
			parent = ss[i-1].Path
		}
		if s.Path != parent+"/"+groupPrefix+s.ID {
			t.Errorf("level %d: session path %s, want it in %s", i+1, s.Path, parent)
		}
	}
	if got := pathOf(t, h, p.pid); got != ss[2].Path {
		t.Errorf("the caller is in %s, want the deepest session %s", got, ss[2].Path)
	}
	if h.Mode() == cgroup.Unified {
		// The callers group and the two outer sessions had their
		// processes moved down before a session was made below them.
		for _, g := range []string{e.callers, ss[0].Path, ss[1].Path} {
			if _, err := h.Load(g + "/" + procsLeaf); err != nil {
				t.Errorf("no %s in %s: %v", procsLeaf, g, err)
			}
		}
	}
	if e.r.Count() != 3 {
		t.Errorf("Count = %d, want 3", e.r.Count())
	}
	spun, _ := time.ParseDuration(strings.Fields(p.do("spin 300ms"))[1] + "ns")
	// Innermost first: counters only grow (the caller's runtime keeps
	// ticking), so each outer session, read later, must show at least as
	// much as the one below it.
	var cpu [3]time.Duration
	for i := 2; i >= 0; i-- {
		cpu[i] = cpuOf(mustStats(t, e.r, p.pid, ss[i]))
	}
	t.Logf("%s: spun %v; sessions counted %v (outer to inner)", h.Mode(), spun, cpu)
	if cpu[2] < spun*9/10 {
		t.Errorf("the innermost session counted %v of a %v spin", cpu[2], spun)
	}
	if cpu[1] < cpu[2] || cpu[0] < cpu[1] {
		t.Errorf("a session counts less than the one below it: %v", cpu)
	}
	// Detach from the deepest: back into its parent session (on v2, the
	// parent's procsLeaf).
	if err := e.r.Detach(p.pid, ss[2].ID, ss[2].Secret); err != nil {
		t.Fatal(err)
	}
	if got := logicalGroup(pathOf(t, h, p.pid)); got != ss[1].Path {
		t.Errorf("after detach the caller is in %s, want %s", got, ss[1].Path)
	}
	// Not in ss[2] any more: detaching again is a bad request.
	if err := e.r.Detach(p.pid, ss[2].ID, ss[2].Secret); !errors.Is(err, observer.ErrBadRequest) {
		t.Errorf("second detach = %v, want observer.ErrBadRequest", err)
	}
	// Attach back into ss[2], by id.
	if err := e.r.Attach(p.pid, ss[2].ID, ss[2].Secret); err != nil {
		t.Fatal(err)
	}
	if got := pathOf(t, h, p.pid); got != ss[2].Path {
		t.Errorf("after attach the caller is in %s, want %s", got, ss[2].Path)
	}
	// Closing the outermost from inside: the caller moves out first,
	// everything below closes with it.
	final, err := e.r.Close(p.pid, ss[0].ID, ss[0].Secret)
	if err != nil {
		t.Fatal(err)
	}
	if cpuOf(final) < cpu[0] {
		t.Errorf("final CPU %v below the earlier reading %v", cpuOf(final), cpu[0])
	}
	if got := logicalGroup(pathOf(t, h, p.pid)); got != e.callers {
		t.Errorf("after close the caller is in %s, want %s", got, e.callers)
	}
	if e.r.Count() != 0 {
		t.Errorf("Count = %d after closing the outermost session", e.r.Count())
	}
	for i, s := range ss {
		if _, err := h.Load(s.Path); !errors.Is(err, cgroup.ErrNotExist) {
			t.Errorf("level %d: cgroup %s still there (%v)", i+1, s.Path, err)
		}
		st, err := e.r.Stats(p.pid, s.ID, s.Secret)
		if err != nil {
			t.Errorf("level %d: stats after close: %v", i+1, err)
		} else if cpuOf(st) < cpu[i] {
			t.Errorf("level %d: final CPU %v below %v", i+1, cpuOf(st), cpu[i])
		}
	}
	if p.do("spin 1ms") == "" {
		t.Error("the caller did not survive the close")
	}
}

func TestMemoryLimit(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	p := e.caller()
	s := must[*observer.Session](t)(e.r.AttachNew(p.pid))
	if err := e.r.SetLimits(p.pid, s.ID, s.Secret, spec.Limits{Memory: i64(32 << 20)}); err != nil {
		t.Fatal(err)
	}
	p.send("alloc %d", 256<<20)
	status := p.Wait()
	if status.Signal() != syscall.SIGKILL {
		t.Errorf("the allocator ended with %v, want killed by the OOM killer", status)
	}
	st := mustStats(t, e.r, os.Getpid(), s) // the test is host root: allowed everywhere
	t.Logf("memory: max_usage %d, failures %d", *st.Memory.MaxUsage, *st.Memory.Failures)
	if *st.Memory.Failures < 1 {
		t.Errorf("memory failures %d after an OOM kill", *st.Memory.Failures)
	}
	if *st.Memory.MaxUsage > 33<<20 {
		t.Errorf("memory peak %d above the 32 MiB limit", *st.Memory.MaxUsage)
	}
}

func TestPidsLimit(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	p := e.caller()
	s := must[*observer.Session](t)(e.r.AttachNew(p.pid))
	// The helper (a Go program) has a handful of threads already; pids
	// counts threads too.
	if err := e.r.SetLimits(p.pid, s.ID, s.Secret, spec.Limits{Pids: i64(20)}); err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(p.do("fork 40"))
	ok, _ := strconv.Atoi(f[1])
	failed, _ := strconv.Atoi(f[2])
	st := mustStats(t, e.r, p.pid, s)
	t.Logf("forks: %d started, %d refused; pids max_usage %d, failures %d", ok, failed, *st.Pids.MaxUsage, *st.Pids.Failures)
	if failed == 0 || *st.Pids.Failures == 0 {
		t.Errorf("no fork refused under a limit of 20")
	}
	if *st.Pids.MaxUsage > 20 {
		t.Errorf("pids peak %d above the limit 20", *st.Pids.MaxUsage)
	}
	if _, err := e.r.Close(os.Getpid(), s.ID, s.Secret); err != nil {
		t.Fatal(err)
	}
}

func TestCPUsPinned(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	p := e.caller()
	s := must[*observer.Session](t)(e.r.AttachNew(p.pid))
	g := must[*cgroup.Group](t)(h.Load(e.callers))
	avail := must[[]int](t)(g.EffectiveCPUs())
	if len(avail) < 2 {
		t.Skipf("needs 2 cores, the session has %v", avail)
	}
	// One core, the second of those available.
	if err := e.r.SetLimits(p.pid, s.ID, s.Secret, spec.Limits{CPUs: i64(1), CPUsOffset: i64(1)}); err != nil {
		t.Fatal(err)
	}
	want := strconv.Itoa(avail[1])
	if got := p.do("cpus"); got != "cpus "+want {
		t.Errorf("the process may run on %q, want %q", got, "cpus "+want)
	}
	p.do("spin 50ms")
	st := mustStats(t, e.r, p.pid, s)
	if h.Mode() == cgroup.Legacy {
		if len(st.CPUs) != 1 || st.CPUs[want].Usage == nil || *st.CPUs[want].Usage < 40*time.Millisecond {
			t.Errorf("per-core stats %v: want only core %s, with the spin", st.CPUs, want)
		}
	}
	// More cores than there are: refused, not shrunk.
	err := e.r.SetLimits(p.pid, s.ID, s.Secret, spec.Limits{CPUs: i64(int64(len(avail))), CPUsOffset: i64(1)})
	if !errors.Is(err, observer.ErrUnsupported) {
		t.Errorf("cpus past the available cores = %v, want observer.ErrUnsupported", err)
	}
	if got := p.do("cpus"); got != "cpus "+want {
		t.Errorf("a refused limits call changed the cores to %q", got)
	}
}

func TestTimeLimit(t *testing.T) { testTimeLimit(t, requireHost(t)) }

func TestUnifiedKernelTimeLimit(t *testing.T) { testTimeLimit(t, requireHybrid(t)) }

// testTimeLimit checks that a session is killed at its deadline: its
// process dies within a generous bound of it (BenchmarkTimeLimit records
// the real lateness), the session stays open, and nothing may attach any
// more. The session's owner is a process of its own, alive throughout: a
// session whose creator died with its processes is closed as abandoned.
func testTimeLimit(t *testing.T, h *cgroup.Hierarchy) {
	e := newEnv(t, h, Options{})
	owner := e.caller()
	s := must[*observer.Session](t)(e.r.Open(owner.pid))
	if err := e.r.SetLimits(owner.pid, s.ID, s.Secret, spec.Limits{Time: dur(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	p := e.caller()
	if err := e.r.Attach(p.pid, s.ID, s.Secret); err != nil {
		t.Fatal(err)
	}
	e.r.mu.Lock()
	deadline := e.r.live[s.ID].deadline
	e.r.mu.Unlock()
	if deadline.IsZero() {
		t.Fatal("no deadline armed")
	}
	p.send("spinforever")
	status := p.Wait()
	late := time.Since(deadline)
	t.Logf("%s: killed %v after the deadline", h.Mode(), late)
	if status.Signal() != syscall.SIGKILL {
		t.Errorf("ended with %v, want SIGKILL", status)
	}
	if late < 0 {
		t.Errorf("killed %v before the deadline", -late)
	}
	if late > time.Second {
		t.Errorf("killed %v after the deadline (want at most 50 ms; this bound is generous for CI)", late)
	}
	q := e.caller()
	if err := e.r.Attach(q.pid, s.ID, s.Secret); !errors.Is(err, observer.ErrNotFound) {
		t.Errorf("attach after the time limit = %v, want observer.ErrNotFound", err)
	}
	st := mustStats(t, e.r, q.pid, s)
	if *st.Time < 300*time.Millisecond {
		t.Errorf("wall time %v, want at least the 300ms limit", *st.Time)
	}
}

// TestTimeLimitCountsFromStart: a limit set before any process is in the
// session counts from the first attach, not from the limits call.
func TestTimeLimitCountsFromStart(t *testing.T) {
	h := requireHost(t)
	clk := clock.NewFake(time.Now())
	e := newEnv(t, h, Options{Clock: clk})
	owner := e.caller()
	s := must[*observer.Session](t)(e.r.Open(owner.pid))
	if err := e.r.SetLimits(owner.pid, s.ID, s.Secret, spec.Limits{Time: dur(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	// The limit's time passes by the registry's clock; the timer armed at
	// the attach runs on the system's.
	clk.Advance(400 * time.Millisecond)
	p := e.caller()
	start := time.Now()
	if err := e.r.Attach(p.pid, s.ID, s.Secret); err != nil {
		t.Fatalf("attach after the limit's time but before any start: %v", err)
	}
	p.send("spinforever")
	p.Wait()
	if ran := time.Since(start); ran < 250*time.Millisecond {
		t.Errorf("killed after %v, want about 300ms from the attach", ran)
	}
}

func TestKillForkBomb(t *testing.T) { testKillForkBomb(t, requireHost(t)) }

func TestUnifiedKernelKillForkBomb(t *testing.T) { testKillForkBomb(t, requireHybrid(t)) }

func testKillForkBomb(t *testing.T, h *cgroup.Hierarchy) {
	e := newEnv(t, h, Options{})
	owner := e.caller()
	s := must[*observer.Session](t)(e.r.Open(owner.pid))
	bomb := e.caller()
	// Keep the host alive: the bomb's pids are limited, by the session
	// where it can, else (a controller-less cgroup2) by a v1 group of its
	// own, a hierarchy of its own.
	if h.Check(s.Path+"/x", &cgroup.Resources{Pids: i64(1)}) == nil {
		if err := e.r.SetLimits(owner.pid, s.ID, s.Secret, spec.Limits{Pids: i64(300)}); err != nil {
			t.Fatal(err)
		}
	} else {
		host := requireHost(t)
		p := testRootBase(t, host) + "/" + randomName()
		g, err := host.Create(p, &cgroup.Resources{Pids: i64(300)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { removeGroup(t, host, p) })
		if err := g.Add(bomb.pid); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.r.Attach(bomb.pid, s.ID, s.Secret); err != nil {
		t.Fatal(err)
	}
	bomb.send("exec sh -c f()(f|f&);f") // no spaces: helper commands are split on them
	g := must[*cgroup.Group](t)(h.Load(s.Path))
	// A bomb going off, or the kill proves nothing.
	testenv.WaitFor(t, 30*time.Second, "the bomb forks 20 processes", func() bool {
		procs, _ := g.Procs(true)
		return len(procs) >= 20
	})
	if err := e.r.Kill(owner.pid, s.ID, s.Secret); err != nil {
		t.Fatal(err)
	}
	if procs, err := g.Procs(true); err != nil || len(procs) != 0 {
		t.Errorf("after kill: %v, %v", procs, err)
	}
	bomb.Wait()
	if e.r.Count() != 1 {
		t.Errorf("Count = %d: kill must leave the session open", e.r.Count())
	}
	if _, err := e.r.Close(owner.pid, s.ID, s.Secret); err != nil {
		t.Fatal(err)
	}
}

func TestFreezeThaw(t *testing.T) { testFreezeThaw(t, requireHost(t)) }

func TestUnifiedKernelFreezeThaw(t *testing.T) { testFreezeThaw(t, requireHybrid(t)) }

// testFreezeThaw: a frozen spinner accrues no CPU; thawed, it does again.
//
// How much CPU a runnable spinner gets in a given wall time depends on what
// else the machine runs (CI runs test packages side by side on two cores),
// so the test waits for CPU to move rather than expecting a share of a fixed
// window: only a spinner that stays stopped can miss the generous deadline.
func testFreezeThaw(t *testing.T, h *cgroup.Hierarchy) {
	e := newEnv(t, h, Options{})
	owner := e.caller()
	s := must[*observer.Session](t)(e.r.Open(owner.pid))
	p := e.caller()
	if err := e.r.Attach(p.pid, s.ID, s.Secret); err != nil {
		t.Fatal(err)
	}
	p.send("spinforever")
	// Spinning before the freeze, or "no CPU while frozen" proves nothing.
	spinning := waitCPU(t, e.r, owner.pid, s, 20*time.Millisecond, 10*time.Second)
	if err := e.r.Freeze(owner.pid, s.ID, s.Secret); err != nil {
		t.Fatal(err)
	}
	before := cpuOf(mustStats(t, e.r, owner.pid, s))
	// The wait is the test: a frozen session uses no CPU however long.
	time.Sleep(300 * time.Millisecond)
	frozen := cpuOf(mustStats(t, e.r, owner.pid, s)) - before
	if err := e.r.Thaw(owner.pid, s.ID, s.Secret); err != nil {
		t.Fatal(err)
	}
	thawed := waitCPU(t, e.r, owner.pid, s, before+frozen+100*time.Millisecond, 10*time.Second) - before - frozen
	t.Logf("%s: CPU before the freeze %v, while frozen for 300ms %v, after thaw %v", h.Mode(), spinning, frozen, thawed)
	if frozen > 5*time.Millisecond {
		t.Errorf("a frozen spinner used %v of CPU in 300ms", frozen)
	}
	if thawed < 100*time.Millisecond {
		t.Errorf("a thawed spinner used only %v of CPU in 10s", thawed)
	}
	st, err := e.r.Close(owner.pid, s.ID, s.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if status := p.Wait(); status.Signal() != syscall.SIGKILL {
		t.Errorf("the spinner ended with %v at close, want SIGKILL", status)
	}
	if cpuOf(st) < before+thawed {
		t.Errorf("final CPU %v below what was read before", cpuOf(st))
	}
}

// waitCPU polls the session's stats until its CPU usage reaches want,
// failing t if it does not within limit, and returns the figure read.
func waitCPU(t testing.TB, r *Registry, caller int, s *observer.Session, want, limit time.Duration) time.Duration {
	t.Helper()
	var cpu time.Duration
	testenv.WaitFor(t, limit, fmt.Sprintf("the session's CPU reaches %v", want), func() bool {
		cpu = cpuOf(mustStats(t, r, caller, s))
		return cpu >= want
	})
	return cpu
}

// TestSecrets: every command on a session, with no secret or a wrong one,
// by a caller that may otherwise act on it, is refused with ErrForbidden
// and changes nothing; stats too (FIX: Kolejka answers stats to anyone).
func TestSecrets(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	p := e.caller()
	s := must[*observer.Session](t)(e.r.Open(p.pid))
	other := must[*observer.Session](t)(e.r.Open(p.pid))
	for _, secret := range []string{"", "0" + s.Secret[1:], other.Secret, strings.ToUpper(s.Secret)} {
		if secret == s.Secret {
			continue
		}
		for name, op := range map[string]func() error{
			"attach":  func() error { return e.r.Attach(p.pid, s.ID, secret) },
			"detach":  func() error { return e.r.Detach(p.pid, s.ID, secret) },
			"limits":  func() error { return e.r.SetLimits(p.pid, s.ID, secret, spec.Limits{Pids: i64(5)}) },
			"stats":   func() error { _, err := e.r.Stats(p.pid, s.ID, secret); return err },
			"freeze":  func() error { return e.r.Freeze(p.pid, s.ID, secret) },
			"thaw":    func() error { return e.r.Thaw(p.pid, s.ID, secret) },
			"kill":    func() error { return e.r.Kill(p.pid, s.ID, secret) },
			"close":   func() error { _, err := e.r.Close(p.pid, s.ID, secret); return err },
			"guessed": func() error { _, err := e.r.Stats(p.pid, newID(), s.Secret); return err },
		} {
			if err := op(); !errors.Is(err, observer.ErrForbidden) {
				t.Errorf("%s with secret %q: %v, want observer.ErrForbidden", name, secret, err)
			}
		}
	}
	if e.r.Count() != 2 {
		t.Errorf("Count = %d, want both sessions open", e.r.Count())
	}
	if got := pathOf(t, h, p.pid); got != e.callers && logicalGroup(got) != e.callers {
		t.Errorf("refused commands moved the caller to %s", got)
	}
	if _, err := e.r.Stats(p.pid, s.ID, s.Secret); err != nil {
		t.Errorf("with the right secret: %v", err)
	}
}

// TestOwnership: a process of another cgroup (another container) with the
// right id and secret gets ErrForbidden; the creator may act from
// anywhere; a process that later runs in the session's cgroup may act.
func TestOwnership(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	creator := e.caller()
	s := must[*observer.Session](t)(e.r.Open(creator.pid))
	stranger := e.contained(e.group("another-container"))
	if _, err := e.r.Stats(stranger.pid, s.ID, s.Secret); !errors.Is(err, observer.ErrForbidden) {
		t.Errorf("stats from another cgroup = %v, want observer.ErrForbidden", err)
	}
	if err := e.r.Attach(stranger.pid, s.ID, s.Secret); !errors.Is(err, observer.ErrForbidden) {
		t.Errorf("attach from another cgroup = %v, want observer.ErrForbidden", err)
	}
	if _, err := e.r.Close(stranger.pid, s.ID, s.Secret); !errors.Is(err, observer.ErrForbidden) {
		t.Errorf("close from another cgroup = %v, want observer.ErrForbidden", err)
	}
	// The creator moves elsewhere: still its session.
	g := must[*cgroup.Group](t)(h.Load(e.group("elsewhere")))
	if err := g.Add(creator.pid); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Stats(creator.pid, s.ID, s.Secret); err != nil {
		t.Errorf("stats by the creator from elsewhere: %v", err)
	}
	// A process in the cgroup the session was made in may act on it.
	mate := e.contained(e.callers)
	if err := e.r.Attach(mate.pid, s.ID, s.Secret); err != nil {
		t.Errorf("attach by a process of the session's cgroup: %v", err)
	}
	if _, err := e.r.Stats(mate.pid, s.ID, s.Secret); err != nil {
		t.Errorf("stats by a process inside the session: %v", err)
	}
}

func TestAbandoned(t *testing.T) { testAbandoned(t, requireHost(t)) }

func TestUnifiedKernelAbandoned(t *testing.T) { testAbandoned(t, requireHybrid(t)) }

// testAbandoned: a session whose creator died closes by itself once it
// holds no process, within about a reap interval; its final stats stay
// readable by the processes of its cgroup.
func testAbandoned(t *testing.T, h *cgroup.Hierarchy) {
	e := newEnv(t, h, Options{ReapInterval: 100 * time.Millisecond})
	creator := e.caller()
	empty := must[*observer.Session](t)(e.r.Open(creator.pid))
	busy := must[*observer.Session](t)(e.r.Open(creator.pid))
	worker := e.caller()
	if err := e.r.Attach(worker.pid, busy.ID, busy.Secret); err != nil {
		t.Fatal(err)
	}
	creator.send("exit")
	creator.Wait()
	testenv.WaitFor(t, 10*time.Second, "the empty session closes", func() bool { return e.r.Count() == 1 })
	if _, err := h.Load(empty.Path); !errors.Is(err, cgroup.ErrNotExist) {
		t.Errorf("the abandoned session's cgroup %s is still there (%v)", empty.Path, err)
	}
	reader := e.caller()
	if _, err := e.r.Stats(reader.pid, empty.ID, empty.Secret); err != nil {
		t.Errorf("stats of the closed session: %v", err)
	}
	// The busy one stays while its process runs (a reaper's pass leaves
	// it), and closes after.
	e.r.reap()
	if e.r.Count() != 1 {
		t.Fatalf("Count = %d: a session with a process closed", e.r.Count())
	}
	worker.send("exit")
	worker.Wait()
	testenv.WaitFor(t, 10*time.Second, "the busy session closes once empty", func() bool { return e.r.Count() == 0 })
}

// TestKeepClosed: final stats stay readable (with the secret) for
// KeepClosed, then the session is unknown; at most MaxClosed are kept.
func TestKeepClosed(t *testing.T) {
	h := requireHost(t)
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	e := newEnv(t, h, Options{Clock: clk, KeepClosed: 10 * time.Minute, MaxClosed: 2, StateDir: t.TempDir()})
	p := e.caller()
	var ss []*observer.Session
	for i := 0; i < 3; i++ {
		s := must[*observer.Session](t)(e.r.Open(p.pid))
		clk.Advance(time.Second)
		if _, err := e.r.Close(p.pid, s.ID, s.Secret); err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	// The oldest went when the third closed.
	if _, err := e.r.Stats(p.pid, ss[0].ID, ss[0].Secret); !errors.Is(err, observer.ErrForbidden) {
		t.Errorf("stats of the session past MaxClosed = %v, want observer.ErrForbidden", err)
	}
	clk.Advance(9 * time.Minute)
	for _, s := range ss[1:] {
		if _, err := e.r.Stats(p.pid, s.ID, s.Secret); err != nil {
			t.Errorf("stats 9 minutes after close: %v", err)
		}
	}
	if _, err := e.r.Stats(p.pid, ss[1].ID, "wrong"); !errors.Is(err, observer.ErrForbidden) {
		t.Errorf("stats of a closed session with a wrong secret = %v, want observer.ErrForbidden", err)
	}
	clk.Advance(2 * time.Minute)
	for _, s := range ss[1:] {
		if _, err := e.r.Stats(p.pid, s.ID, s.Secret); !errors.Is(err, observer.ErrForbidden) {
			t.Errorf("stats 11 minutes after close = %v, want observer.ErrForbidden", err)
		}
	}
	e.r.reap()
	e.r.mu.Lock()
	kept := len(e.r.closed.byID)
	e.r.mu.Unlock()
	if kept != 0 {
		t.Errorf("%d closed sessions kept past KeepClosed", kept)
	}
}

// TestNestingLimits: cgroup_depth and cgroup_descendants of a session
// refuse sessions below it that would exceed them.
func TestNestingLimits(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	p := e.caller()
	top := must[*observer.Session](t)(e.r.AttachNew(p.pid))
	if err := e.r.SetLimits(p.pid, top.ID, top.Secret, spec.Limits{CgroupDepth: i64(2), CgroupDescendants: i64(3)}); err != nil {
		t.Fatal(err)
	}
	a := must[*observer.Session](t)(e.r.AttachNew(p.pid)) // depth 1
	must[*observer.Session](t)(e.r.Open(p.pid))           // depth 2, below a
	if _, err := e.r.AttachNew(p.pid); err != nil {
		t.Fatalf("depth 2: %v", err)
	}
	// p is at depth 2 now; a session below it would be at depth 3.
	if _, err := e.r.Open(p.pid); !errors.Is(err, observer.ErrForbidden) || !strings.Contains(err.Error(), "cgroup_depth") {
		t.Errorf("a session 3 deep below a cgroup_depth 2 session: %v, want observer.ErrForbidden naming cgroup_depth", err)
	}
	// Three below top already: a fourth is refused even at depth 1.
	q := e.caller()
	if err := e.r.Attach(q.pid, top.ID, top.Secret); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Open(q.pid); !errors.Is(err, observer.ErrForbidden) || !strings.Contains(err.Error(), "cgroup_descendants") {
		t.Errorf("a 4th session below a cgroup_descendants 3 session: %v, want observer.ErrForbidden naming cgroup_descendants", err)
	}
	// Closing a (and the two below it) makes room.
	if _, err := e.r.Close(q.pid, a.ID, a.Secret); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Open(q.pid); err != nil {
		t.Errorf("after a close: %v", err)
	}
}

// TestLimitsRefused: what a session cannot enforce is refused with a
// clear error and changes nothing; a limits call changes only what it
// names.
func TestLimitsRefused(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	p := e.caller()
	s := must[*observer.Session](t)(e.r.Open(p.pid))
	if err := e.r.SetLimits(p.pid, s.ID, s.Secret, spec.Limits{Pids: i64(50)}); err != nil {
		t.Fatal(err)
	}
	f := false
	for name, l := range map[string]spec.Limits{
		"storage":   {Storage: i64(1 << 20)},
		"workspace": {Workspace: i64(1 << 20)},
		"network":   {Network: &f},
		"gpus":      {GPUs: i64(1)},
		"perf":      {PerfCycles: i64(1000)},
	} {
		err := e.r.SetLimits(p.pid, s.ID, s.Secret, l)
		if !errors.Is(err, observer.ErrUnsupported) || !strings.Contains(err.Error(), strings.TrimSuffix(name, "=false")) {
			t.Errorf("%s: %v, want observer.ErrUnsupported naming it", name, err)
		}
	}
	for name, l := range map[string]spec.Limits{
		"pids 0":   {Pids: i64(0)},
		"cpus 0":   {CPUs: i64(0)},
		"time 0":   {Time: dur(0)},
		"memory 0": {Memory: i64(0)},
	} {
		if err := e.r.SetLimits(p.pid, s.ID, s.Secret, l); !errors.Is(err, observer.ErrBadRequest) {
			t.Errorf("%s: %v, want observer.ErrBadRequest", name, err)
		}
	}
	// A memory limit leaves the pids limit set before.
	if err := e.r.SetLimits(p.pid, s.ID, s.Secret, spec.Limits{Memory: i64(64 << 20)}); err != nil {
		t.Fatal(err)
	}
	e.r.mu.Lock()
	l := e.r.live[s.ID].limits
	e.r.mu.Unlock()
	if l.Pids == nil || *l.Pids != 50 || l.Memory == nil || *l.Memory != 64<<20 {
		t.Errorf("limits after two calls: %v, want pids=50 memory=64M", l)
	}
}

// TestUnifiedKernelLimitsUnsupported: the hybrid host's cgroup2 has no
// controllers, so memory and pids limits cannot be enforced there: refused,
// never silently ignored.
func TestUnifiedKernelLimitsUnsupported(t *testing.T) {
	h := requireHybrid(t)
	e := newEnv(t, h, Options{})
	p := e.caller()
	s := must[*observer.Session](t)(e.r.AttachNew(p.pid))
	for name, l := range map[string]spec.Limits{
		"memory": {Memory: i64(64 << 20)},
		"pids":   {Pids: i64(10)},
		"cpus":   {CPUs: i64(1)},
	} {
		if err := e.r.SetLimits(p.pid, s.ID, s.Secret, l); !errors.Is(err, observer.ErrUnsupported) {
			t.Errorf("%s on a controller-less cgroup2: %v, want observer.ErrUnsupported", name, err)
		}
	}
	// A time limit needs no controller.
	if err := e.r.SetLimits(p.pid, s.ID, s.Secret, spec.Limits{Time: dur(time.Minute)}); err != nil {
		t.Errorf("time: %v", err)
	}
}

// TestAdopt: the worker's extension makes a session at exactly the given
// path holding the process, which only host root may act on.
func TestAdopt(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	task := e.contained(e.callers)
	p := path.Join(e.root, "run", "task")
	s, err := e.r.Adopt(os.Getpid(), task.pid, p, spec.Limits{Pids: i64(64), CgroupDepth: i64(1)})
	if err != nil {
		t.Fatal(err)
	}
	if s.Path != p {
		t.Errorf("adopted session at %s, want %s", s.Path, p)
	}
	if got := pathOf(t, h, task.pid); got != p {
		t.Errorf("the process is in %s, want %s", got, p)
	}
	// The task itself, even with the secret, may not touch its session.
	if err := e.r.SetLimits(task.pid, s.ID, s.Secret, spec.Limits{Pids: i64(1000)}); !errors.Is(err, observer.ErrForbidden) {
		t.Errorf("limits by the adopted task itself = %v, want observer.ErrForbidden", err)
	}
	// Host root may (the test stands for the worker here).
	if _, err := e.r.Stats(os.Getpid(), s.ID, s.Secret); err != nil {
		t.Errorf("stats by host root: %v", err)
	}
	// A judge inside opens sessions below, within the adopted limits.
	sub, err := e.r.AttachNew(task.pid)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sub.Path, p+"/") {
		t.Errorf("sub-session %s not below %s", sub.Path, p)
	}
	if _, err := e.r.Open(task.pid); !errors.Is(err, observer.ErrForbidden) {
		t.Errorf("depth 2 below a cgroup_depth 1 adopted session = %v, want observer.ErrForbidden", err)
	}
	if _, err := e.r.Adopt(os.Getpid(), task.pid, p, spec.Limits{}); !errors.Is(err, observer.ErrBadRequest) {
		t.Errorf("adopting a session's path again = %v, want observer.ErrBadRequest", err)
	}
	for _, bad := range []string{"", "relative", "/", "/a/../b", p + "/" + procsLeaf} {
		if _, err := e.r.Adopt(os.Getpid(), task.pid, bad, spec.Limits{}); !errors.Is(err, observer.ErrBadRequest) {
			t.Errorf("Adopt(%q) = %v, want observer.ErrBadRequest", bad, err)
		}
	}
	if _, err := e.r.Close(os.Getpid(), s.ID, s.Secret); err != nil {
		t.Fatal(err)
	}
	if status := task.Wait(); status.Signal() != syscall.SIGKILL {
		t.Errorf("the task ended with %v at close, want SIGKILL", status)
	}
	if e.r.Count() != 0 {
		t.Errorf("Count = %d after closing the adopted session", e.r.Count())
	}
}

// An adopted session is its adopter's (the worker's): once the task's
// processes are all gone the reaper leaves it, so that the worker can still
// read its figures and close it; once the adopter is gone too, it is
// abandoned and reaped. (Reaping it with the task made a busy observer's
// worker fail tasks with "cgroup does not exist".)
func TestAdoptedSessionOutlivesItsTask(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	worker := e.caller()
	task := e.contained(e.callers)
	p := path.Join(e.root, "run", "task")
	s, err := e.r.Adopt(worker.pid, task.pid, p, spec.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	task.send("exit")
	task.Wait()
	e.r.reap()
	if e.r.Count() != 1 {
		t.Fatalf("the reaper closed the adopted session when its task ended, its adopter alive")
	}
	if _, err := e.r.Stats(worker.pid, s.ID, s.Secret); err != nil {
		t.Errorf("stats after the task ended: %v", err)
	}
	if _, err := h.Load(p); err != nil {
		t.Errorf("the task's group after the task ended: %v", err)
	}
	worker.send("exit")
	worker.Wait()
	e.r.reap()
	if e.r.Count() != 0 {
		t.Errorf("Count = %d once the adopter is gone too, want 0 (reaped)", e.r.Count())
	}
}
