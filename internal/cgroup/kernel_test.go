package cgroup

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

// Tests against the host's real cgroups (v1 or v2, whichever it runs).

func TestCreateUpdateLimits(t *testing.T) {
	h := requirePrivileged(t)
	root := testRoot(t, h)
	cpus := lastCPU(t, h)
	r := &Resources{Memory: ptr(64 * MiB), Pids: ptr(16), CPUs: "0"}
	withSwap := h.Check(root+"/task", &Resources{Memory: ptr(64 * MiB), Swap: ptr(16 * MiB)}) == nil
	if withSwap {
		r.Swap = ptr(16 * MiB)
	} else {
		t.Logf("this host does not account swap; swap limits not tested")
	}
	p := root + "/task"
	g := mustCreate(t, h, p, r)
	if g.Path() != p {
		t.Fatalf("Path() = %q, want %q", g.Path(), p)
	}

	type want struct{ memory, swap, pids, cpus string }
	check := func(w want) {
		t.Helper()
		if h.Mode() == Legacy {
			if got := readTrim(t, fileIn(h, "memory", p, "memory.limit_in_bytes")); got != w.memory {
				t.Errorf("memory.limit_in_bytes = %s, want %s", got, w.memory)
			}
			if withSwap {
				if got := readTrim(t, fileIn(h, "memory", p, "memory.memsw.limit_in_bytes")); got != w.swap {
					t.Errorf("memory.memsw.limit_in_bytes = %s, want %s", got, w.swap)
				}
			}
			// A v1 cpuset group is unusable with empty mems.
			if got := readTrim(t, fileIn(h, "cpuset", p, "cpuset.mems")); got == "" {
				t.Errorf("cpuset.mems is empty: not copied from the parent")
			}
		} else {
			if got := readTrim(t, fileIn(h, "", p, "memory.max")); got != w.memory {
				t.Errorf("memory.max = %s, want %s", got, w.memory)
			}
			if withSwap {
				if got := readTrim(t, fileIn(h, "", p, "memory.swap.max")); got != w.swap {
					t.Errorf("memory.swap.max = %s, want %s", got, w.swap)
				}
			}
		}
		if got := readTrim(t, fileIn(h, "pids", p, "pids.max")); got != w.pids {
			t.Errorf("pids.max = %s, want %s", got, w.pids)
		}
		if got := readTrim(t, fileIn(h, "cpuset", p, "cpuset.cpus")); got != w.cpus {
			t.Errorf("cpuset.cpus = %q, want %q", got, w.cpus)
		}
	}
	bytes := func(n int64) string { return strconv.FormatInt(n, 10) }
	swapValue := func(memory, swap int64) string {
		if h.Mode() == Legacy {
			return bytes(memory + swap) // memsw is memory plus swap
		}
		return bytes(swap)
	}
	check(want{bytes(64 * MiB), swapValue(64*MiB, 16*MiB), "16", "0"})

	// Lower everything.
	lower := &Resources{Memory: ptr(32 * MiB), Pids: ptr(8), CPUs: cpus}
	if withSwap {
		lower.Swap = ptr(0)
	}
	if err := g.Update(lower); err != nil {
		t.Fatal(err)
	}
	check(want{bytes(32 * MiB), swapValue(32*MiB, 0), "8", cpus})

	// Raise memory above the current memory+swap limit: on v1 memsw must be
	// written first, or the kernel refuses.
	raise := &Resources{Memory: ptr(256 * MiB), Pids: ptr(32), CPUs: "0"}
	if withSwap {
		raise.Swap = ptr(64 * MiB)
	}
	if err := g.Update(raise); err != nil {
		t.Fatal(err)
	}
	check(want{bytes(256 * MiB), swapValue(256*MiB, 64*MiB), "32", "0"})

	// Lift everything: the parent's CPUs, no memory or pids limit.
	if err := g.Update(nil); err != nil {
		t.Fatal(err)
	}
	parentCPUs := readTrim(t, fileIn(h, "cpuset", root, "cpuset.cpus"))
	if h.Mode() == Legacy {
		unlimited := readTrim(t, fileIn(h, "memory", root, "memory.limit_in_bytes"))
		check(want{unlimited, unlimited, "max", parentCPUs})
	} else {
		check(want{"max", "max", "max", ""})
	}
}

// lastCPU returns the highest CPU of the cpuset the tests' groups get (the
// root's, or the delegated group's), as a list.
func lastCPU(t *testing.T, h *Hierarchy) string {
	t.Helper()
	file := fileIn(h, "cpuset", "/", "cpuset.effective_cpus")
	if h.Mode() == Unified {
		file = fileIn(h, "", h.boundary(testBase(t, h)), "cpuset.cpus.effective")
	}
	cpus, err := parseCPUList(readTrim(t, file))
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(cpus[len(cpus)-1])
}

func TestCheckRefuses(t *testing.T) {
	h := requirePrivileged(t)
	p := testRoot(t, h) + "/g"
	err := h.Check(p, &Resources{CPUs: "0-4095"})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "cpus") {
		t.Errorf("CPUs outside the root cpuset: got %v, want ErrUnsupported naming cpus", err)
	}
	if h.Mode() == Legacy {
		err = h.Check(p, &Resources{Swap: ptr(MiB)})
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "swap") {
			t.Errorf("v1 swap without memory: got %v, want ErrUnsupported naming swap", err)
		}
	}
	for _, r := range []*Resources{{Memory: ptr(0)}, {Pids: ptr(-1)}, {Swap: ptr(-1)}, {CPUs: "1-0"}, {CPUs: "x"}} {
		if err := h.Check(p, r); !errors.Is(err, ErrInvalid) {
			t.Errorf("Check(%+v) = %v, want ErrInvalid", r, err)
		}
	}
	for _, p := range []string{"", "relative", "/a/../b", "/a/", "/"} {
		if _, err := h.Create(p, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%q) = %v, want ErrInvalid", p, err)
		}
	}
	root := testRoot(t, h)
	if _, err := h.Load(root + "/missing"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Load of a missing group = %v, want ErrNotExist", err)
	}
	// A refused Create changes nothing.
	if _, err := h.Create(root+"/refused", &Resources{CPUs: "0-4095"}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Create with unsupported cpus = %v, want ErrUnsupported", err)
	}
	for _, d := range h.dirs(root) {
		if exists(d) {
			t.Errorf("refused Create left %s behind", d)
		}
	}
}

func TestCPUAccuracy(t *testing.T) {
	h := requirePrivileged(t)
	g := mustCreate(t, h, testRoot(t, h)+"/spin", nil)
	testCPUAccuracy(t, g)
}

// testCPUAccuracy checks the group's CPU time of a 2 s spin against what
// the spinner measured itself with getrusage, from its release to its end.
// The group also counts a fixed cost outside that interval (the wake from
// the gate, the print, the exit), about 10 ms under qemu's TCG: 2 % of a
// 0.5 s spin there, so the spin is long enough for it to fall well inside
// the bound.
func testCPUAccuracy(t *testing.T, g *Group) {
	p := startHelper(t, "spin", "2s")
	if err := g.Add(p.pid); err != nil {
		t.Fatal(err)
	}
	if got, err := g.h.PathOf(p.pid); err != nil || got != g.Path() {
		t.Errorf("PathOf(%d) = %q, %v; want %q", p.pid, got, err, g.Path())
	}
	if procs, err := g.Procs(false); err != nil || len(procs) != 1 || procs[0] != p.pid {
		t.Errorf("Procs = %v, %v; want [%d]", procs, err, p.pid)
	}
	p.release()
	fields := strings.Fields(p.line())
	if status := p.wait(); status.ExitStatus() != 0 {
		t.Fatalf("spinner exited with %v", status)
	}
	self, _ := strconv.ParseInt(fields[0], 10, 64)
	selfUser, _ := strconv.ParseInt(fields[1], 10, 64)
	u := mustUsage(t, g)
	diff := u.CPU - time.Duration(self)
	t.Logf("%s: cgroup CPU %v (user %v, system %v), spinner's getrusage %v (user %v): difference %v (%.3f%%)",
		g.h.Mode(), u.CPU, u.CPUUser, u.CPUSystem, time.Duration(self), time.Duration(selfUser), diff, 100*float64(diff)/float64(self))
	if self < int64(1900*time.Millisecond) {
		t.Fatalf("spinner used only %v", time.Duration(self))
	}
	if diff < 0 {
		diff = -diff
	}
	if diff > time.Duration(self)/50 {
		t.Errorf("cgroup CPU %v differs from the spinner's own %v by more than 2%%", u.CPU, time.Duration(self))
	}
	// The user/system split is tick-sampled, but a spin is nearly all user.
	if u.CPUUser < u.CPU*8/10 || u.CPUUser+u.CPUSystem > u.CPU*11/10 {
		t.Errorf("user %v + system %v do not fit CPU %v of a spin", u.CPUUser, u.CPUSystem, u.CPU)
	}
	if g.h.Mode() == Legacy {
		var sum time.Duration
		for _, c := range u.PerCPU {
			sum += c
		}
		if len(u.PerCPU) == 0 || sum < u.CPU-time.Millisecond || sum > u.CPU+time.Millisecond {
			t.Errorf("per-CPU times %v sum to %v, want %v", u.PerCPU, sum, u.CPU)
		}
	}
}

func TestMemoryPeakAccuracy(t *testing.T) {
	h := requirePrivileged(t)
	g := mustCreate(t, h, testRoot(t, h)+"/alloc", nil)
	const size = 64 * MiB
	p := startHelper(t, "alloc", strconv.Itoa(size))
	if err := g.Add(p.pid); err != nil {
		t.Fatal(err)
	}
	// Memory charged before the move stays with the old group, so the
	// group starts near zero; whatever it holds now is part of the fixed
	// base. The rest of the base: the kernel charges a group in batches of
	// 64 pages per CPU (MEMCG_CHARGE_BATCH) and counts a CPU's unused
	// batch as used.
	base := mustUsage(t, g).Memory
	stock := int64(runtime.NumCPU()) * 64 * int64(os.Getpagesize())
	p.release()
	if l := p.line(); l != "done" {
		t.Fatalf("allocator said %q", l)
	}
	u := mustUsage(t, g)
	extra := u.MemoryPeak - base - size
	t.Logf("%s: memory peak %d B after touching %d B, base %d B: %+d B (%.3f%%); now %d B",
		h.Mode(), u.MemoryPeak, size, base, extra, 100*float64(extra)/size, u.Memory)
	if extra < 0 || extra > size/100+stock {
		t.Errorf("memory peak %d is not within 1%% + %d B (per-CPU charge batches) above %d + base %d", u.MemoryPeak, stock, size, base)
	}
	if u.Memory < size {
		t.Errorf("memory now %d, want at least %d while the allocation is held", u.Memory, size)
	}
}

func TestPidsLimit(t *testing.T) {
	h := requirePrivileged(t)
	g := mustCreate(t, h, testRoot(t, h)+"/pids", &Resources{Pids: ptr(8)})
	// The shell forks sleepers until the limit refuses one (dash then
	// exits); 7 sleepers and the shell make 8.
	p := startHelper(t, "reaper", `read x; i=0; while [ $i -lt 20 ]; do sleep 60 & i=$((i+1)); done; wait`)
	if err := g.Add(p.pid); err != nil {
		t.Fatal(err)
	}
	p.release()
	var u *Usage
	testenv.WaitFor(t, 30*time.Second, "a fork refused under a limit of 8", func() bool {
		u = mustUsage(t, g)
		return u.PidsFailures > 0
	})
	t.Logf("pids now %d, peak %d, refused forks %d", u.Pids, u.PidsPeak, u.PidsFailures)
	// The limit is never passed, and the peak is reported. It is 8 almost
	// always; on Debian's 6.1 kernel under emulation (make test-v2) the
	// kernel has twice counted a refused fork with 5 tasks in the group
	// (peak 5), in 2 runs of about 8: not understood, so not asserted.
	if u.PidsPeak > 8 || u.PidsPeak < 2 {
		t.Errorf("pids peak %d, want at most the limit of 8 (and the shell and a sleeper)", u.PidsPeak)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	if procs, err := g.Procs(true); err != nil || len(procs) != 0 {
		t.Errorf("after Kill: Procs = %v, %v", procs, err)
	}
	p.wait()
	if u := mustUsage(t, g); u.Pids != 0 {
		t.Errorf("after Kill: pids.current %d", u.Pids)
	}
}

func TestOOMKill(t *testing.T) {
	h := requirePrivileged(t)
	g := mustCreate(t, h, testRoot(t, h)+"/oom", &Resources{Memory: ptr(32 * MiB)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := g.OOMEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := startHelper(t, "alloc", strconv.Itoa(128*MiB))
	if err := g.Add(p.pid); err != nil {
		t.Fatal(err)
	}
	p.release()
	status := p.wait()
	if status.Signal() != syscall.SIGKILL {
		t.Errorf("allocator ended with %v, want killed by SIGKILL", status)
	}
	select {
	case <-events:
	case <-time.After(30 * time.Second):
		t.Errorf("no OOM event within 30s")
	}
	u := mustUsage(t, g)
	t.Logf("%s: OOM kills %d, memory failures %d, peak %d", h.Mode(), u.OOMKills, u.MemoryFailures, u.MemoryPeak)
	if u.OOMKills < 1 {
		t.Errorf("OOMKills = %d, want at least 1", u.OOMKills)
	}
	// The kernel lets a task that is being OOM-killed charge past the
	// limit on its way out (a page or so).
	if u.MemoryPeak > 32*MiB+32*MiB/100 {
		t.Errorf("memory peak %d well above the limit %d", u.MemoryPeak, 32*MiB)
	}
	cancel()
	select {
	case _, open := <-events:
		for open {
			_, open = <-events
		}
	case <-time.After(30 * time.Second):
		t.Errorf("events channel not closed after cancel")
	}
}

func TestFreezeThaw(t *testing.T) {
	h := requirePrivileged(t)
	testFreezeThaw(t, mustCreate(t, h, testRoot(t, h)+"/freeze", nil))
}

func testFreezeThaw(t *testing.T, g *Group) {
	p := startHelper(t, "spin-forever", "")
	if err := g.Add(p.pid); err != nil {
		t.Fatal(err)
	}
	p.release()
	// Freeze a spinner that spins: it has used CPU in the group.
	testenv.WaitFor(t, 30*time.Second, "the spinner to use CPU", func() bool { return mustUsage(t, g).CPU > 5*time.Millisecond })
	if err := g.Freeze(); err != nil {
		t.Fatal(err)
	}
	before := mustUsage(t, g).CPU
	time.Sleep(200 * time.Millisecond) // the behaviour under test: no CPU for a frozen group over this window
	frozen := mustUsage(t, g).CPU - before
	if err := g.Thaw(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: CPU while frozen 200ms: %v", g.h.Mode(), frozen)
	if frozen > time.Millisecond {
		t.Errorf("frozen group used %v of CPU in 200ms", frozen)
	}
	// Thawed, it spins again: 20 ms of CPU (the host may be busy, so no
	// fixed share of wall time is asserted).
	testenv.WaitFor(t, 30*time.Second, "the thawed spinner to use 20 ms of CPU", func() bool {
		return mustUsage(t, g).CPU-before-frozen >= 20*time.Millisecond
	})
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	if s := p.wait(); s.Signal() != syscall.SIGKILL {
		t.Errorf("spinner ended with %v, want SIGKILL", s)
	}
}

func TestKillForkBombAndDelete(t *testing.T) {
	h := requirePrivileged(t)
	root := testRoot(t, h)
	parent := mustCreate(t, h, root+"/task", &Resources{Pids: ptr(64)})
	// The bomb runs in a sub-group, so Kill and Delete must reach below.
	g, err := parent.Child("bomb", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := startHelper(t, "reaper", `read x; f(){ f | f & }; f; wait`)
	if err := g.Add(p.pid); err != nil {
		t.Fatal(err)
	}
	p.release()
	// Let the bomb hit its limit (on a busy host that takes a while).
	var u *Usage
	testenv.WaitFor(t, 30*time.Second, "the bomb to hit its limit", func() bool {
		u = mustUsage(t, parent)
		return u.PidsFailures > 0
	})
	t.Logf("fork bomb: %d pids now, peak %d, %d forks refused", u.Pids, u.PidsPeak, u.PidsFailures)
	// The kernel's pids.peak is a racy watermark by its own comment
	// (pids_update_watermark: concurrent forks may leave a lower value):
	// on Debian's 6.1 under qemu the bomb read 63. The limit is what is
	// asserted: never passed, and forks refused.
	if u.PidsPeak > 64 || u.PidsPeak < 32 || u.PidsFailures == 0 {
		t.Errorf("the bomb reached %d pids with %d forks refused, want at most 64 (about 64) and some refused", u.PidsPeak, u.PidsFailures)
	}
	start := time.Now()
	if err := parent.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Kill took %v", time.Since(start))
	if procs, err := parent.Procs(true); err != nil || len(procs) != 0 {
		t.Fatalf("after Kill: Procs = %v, %v", procs, err)
	}
	p.wait()
	if err := parent.Delete(); err != nil {
		t.Fatal(err)
	}
	for _, d := range append(h.dirs(parent.Path()), h.dirs(g.Path())...) {
		if exists(d) {
			t.Errorf("Delete left %s", d)
		}
	}
	if err := parent.Delete(); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := parent.Usage(); !errors.Is(err, ErrNotExist) {
		t.Errorf("Usage of a deleted group = %v, want ErrNotExist", err)
	}
}

func TestNestedUsage(t *testing.T) {
	h := requirePrivileged(t)
	testNestedUsage(t, h, &Resources{Memory: ptr(256 * MiB)})
}

// testNestedUsage runs a spinner two levels below a group and checks that
// the group counts it.
func testNestedUsage(t *testing.T, h *Hierarchy, r *Resources) {
	root := testRoot(t, h)
	session := mustCreate(t, h, root+"/session", r)
	sub, err := session.Child("sub", r)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := sub.Child("leaf", nil)
	if err != nil {
		t.Fatal(err)
	}
	if kids, err := h.Children(session.Path()); err != nil || len(kids) != 1 || kids[0] != sub.Path() {
		t.Errorf("Children(%s) = %v, %v; want [%s]", session.Path(), kids, err, sub.Path())
	}
	if kids, err := h.Children(root + "/none"); err != nil || len(kids) != 0 {
		t.Errorf("Children of a missing path = %v, %v", kids, err)
	}
	p := startHelper(t, "spin", "200ms")
	if err := leaf.Add(p.pid); err != nil {
		t.Fatal(err)
	}
	if procs, _ := session.Procs(false); len(procs) != 0 {
		t.Errorf("session holds %v itself", procs)
	}
	if procs, _ := session.Procs(true); len(procs) != 1 || procs[0] != p.pid {
		t.Errorf("session's processes below it: %v, want [%d]", procs, p.pid)
	}
	p.release()
	p.line()
	p.wait()
	us, ul := mustUsage(t, session), mustUsage(t, leaf)
	t.Logf("%s: leaf CPU %v, session CPU %v; leaf memory peak %d, session %d", h.Mode(), ul.CPU, us.CPU, ul.MemoryPeak, us.MemoryPeak)
	if ul.CPU < 150*time.Millisecond {
		t.Errorf("leaf CPU %v for a 200ms spin", ul.CPU)
	}
	if us.CPU < ul.CPU {
		t.Errorf("session CPU %v below its leaf's %v", us.CPU, ul.CPU)
	}
	if us.MemoryPeak < ul.MemoryPeak {
		t.Errorf("session memory peak %d below its leaf's %d", us.MemoryPeak, ul.MemoryPeak)
	}
	loaded, err := h.Load(leaf.Path())
	if err != nil {
		t.Fatal(err)
	}
	if ulo := mustUsage(t, loaded); ulo.CPU != ul.CPU {
		t.Errorf("loaded leaf CPU %v, want %v", ulo.CPU, ul.CPU)
	}
	if _, err := session.Child("a/b", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Child(a/b) = %v, want ErrInvalid", err)
	}
	if err := session.Delete(); err != nil {
		t.Fatal(err)
	}
	for _, d := range h.dirs(leaf.Path()) {
		if exists(d) {
			t.Errorf("Delete left %s", d)
		}
	}
}
