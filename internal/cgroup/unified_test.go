package cgroup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cgroup v2 against a fake cgroupfs tree: a folder of plain files shaped
// like the kernel's. It needs no privileges and runs everywhere, and it is
// what exercises the v2 limit, controller and usage code on hosts that run
// v1 (hybrid_test.go covers what the kernel's controller-less cgroup2 of a
// hybrid host can).

// fakeUnifiedGroup holds the files the kernel puts in every v2 group below
// the root once cpu, cpuset, memory and pids are enabled for it.
func fakeUnifiedGroup() map[string]string {
	return map[string]string{
		"cgroup.controllers":     "cpuset cpu memory pids",
		"cgroup.subtree_control": "",
		"cgroup.procs":           "",
		"cgroup.events":          "populated 0\nfrozen 0\n",
		"cgroup.freeze":          "0",
		"cgroup.kill":            "",
		"cpu.stat":               "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
		"cpuset.cpus":            "",
		"memory.current":         "0",
		"memory.peak":            "0",
		"memory.max":             "max",
		"memory.swap.max":        "max",
		"memory.swap.peak":       "0",
		"memory.events":          "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
		"pids.current":           "0",
		"pids.peak":              "0",
		"pids.max":               "max",
		"pids.events":            "max 0\n",
	}
}

// fakeUnified builds a v2 root offering controllers, with the groups (and
// their parents) already present, as the kernel would show them after mkdir.
func fakeUnified(t *testing.T, controllers string, groups ...string) string {
	t.Helper()
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"cgroup.controllers":     controllers,
		"cgroup.subtree_control": "",
		"cgroup.procs":           "",
		"cpu.stat":               "usage_usec 0\n",
		"cpuset.cpus.effective":  "0-3",
	})
	for _, g := range groups {
		for p := g; p != "/"; p = filepath.Dir(p) {
			writeFiles(t, filepath.Join(root, p), fakeUnifiedGroup())
		}
	}
	return root
}

func TestFakeUnifiedCreate(t *testing.T) {
	root := fakeUnified(t, "cpuset cpu io memory pids", "/kolejka/abc/task")
	h := NewUnified(root)
	if h.Mode() != Unified {
		t.Fatalf("Mode() = %v", h.Mode())
	}
	g, err := h.Create("/kolejka/abc/task", &Resources{Memory: ptr(64 * MiB), Swap: ptr(16 * MiB), Pids: ptr(32), CPUs: "1-2"})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "kolejka/abc/task")
	for file, want := range map[string]string{
		"memory.max":      "67108864",
		"memory.swap.max": "16777216",
		"pids.max":        "32",
		"cpuset.cpus":     "1-2",
	} {
		if got := readTrim(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	// Every ancestor enables what the group needs; io is offered but not
	// wanted; the group itself enables nothing (it is to hold processes).
	for _, anc := range []string{"", "kolejka", "kolejka/abc"} {
		got := strings.Fields(readTrim(t, filepath.Join(root, anc, "cgroup.subtree_control")))
		sort.Strings(got)
		if want := []string{"+cpu", "+cpuset", "+memory", "+pids"}; !reflect.DeepEqual(got, want) {
			t.Errorf("/%s cgroup.subtree_control = %v, want %v", anc, got, want)
		}
	}
	if got := readTrim(t, filepath.Join(dir, "cgroup.subtree_control")); got != "" {
		t.Errorf("the group's own subtree_control = %q, want empty", got)
	}

	// Update with nothing lifts every limit.
	if err := g.Update(nil); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"memory.max": "max", "memory.swap.max": "max", "pids.max": "max", "cpuset.cpus": ""} {
		if got := readTrim(t, filepath.Join(dir, file)); got != want {
			t.Errorf("after Update(nil): %s = %q, want %q", file, got, want)
		}
	}

	if err := g.Add(4242); err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, filepath.Join(dir, "cgroup.procs")); got != "4242" {
		t.Errorf("cgroup.procs = %q after Add(4242)", got)
	}
}

func TestFakeUnifiedCheckRefuses(t *testing.T) {
	root := fakeUnified(t, "cpu io pids", "/k/task")
	h := NewUnified(root)
	err := h.Check("/kolejka/x/task", &Resources{Memory: ptr(MiB)})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "memory") {
		t.Errorf("Check(memory) = %v, want ErrUnsupported naming memory", err)
	}
	err = h.Check("/kolejka/x/task", &Resources{CPUs: "0"})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "cpuset") {
		t.Errorf("Check(cpus) = %v, want ErrUnsupported naming cpuset", err)
	}
	if err := h.Check("/kolejka/x/task", &Resources{Pids: ptr(5)}); err != nil {
		t.Errorf("Check(pids) = %v, want nil", err)
	}
	if _, err := h.Create("/k/task", &Resources{Memory: ptr(MiB)}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Create(memory) = %v, want ErrUnsupported", err)
	}
	// Without memory only cpu and pids get enabled.
	if _, err := h.Create("/k/task", &Resources{Pids: ptr(5)}); err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(readTrim(t, filepath.Join(root, "cgroup.subtree_control")))
	sort.Strings(got)
	if want := []string{"+cpu", "+pids"}; !reflect.DeepEqual(got, want) {
		t.Errorf("root cgroup.subtree_control = %v, want %v", got, want)
	}

	root = fakeUnified(t, "cpuset cpu memory pids", "/k/task")
	if err := NewUnified(root).Check("/kolejka/x/task", &Resources{CPUs: "2-5"}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "[4 5]") {
		t.Errorf("Check(cpus 2-5 of 0-3) = %v, want ErrUnsupported naming CPUs 4 and 5", err)
	}
	// A group with memory.max but no memory.swap.max: swap not accounted.
	if err := os.Remove(filepath.Join(root, "k", "memory.swap.max")); err != nil {
		t.Fatal(err)
	}
	if err := NewUnified(root).Check("/kolejka/x/task", &Resources{Memory: ptr(MiB), Swap: ptr(0)}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "swap") {
		t.Errorf("Check(swap) without swap accounting = %v, want ErrUnsupported naming swap", err)
	}
}

func TestFakeUnifiedUsage(t *testing.T) {
	root := fakeUnified(t, "cpuset cpu memory pids", "/k/task")
	dir := filepath.Join(root, "k/task")
	writeFiles(t, dir, map[string]string{
		"cpu.stat":         "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
		"memory.current":   "1000\n",
		"memory.peak":      "5000\n",
		"memory.swap.peak": "300\n",
		"memory.events":    "low 0\nhigh 2\nmax 7\noom 1\noom_kill 3\noom_group_kill 0\n",
		"pids.current":     "4\n",
		"pids.peak":        "9\n",
		"pids.events":      "max 2\n",
	})
	g, err := NewUnified(root).Load("/k/task")
	if err != nil {
		t.Fatal(err)
	}
	u := mustUsage(t, g)
	want := &Usage{
		CPU: 1500 * time.Millisecond, CPUUser: time.Second, CPUSystem: 500 * time.Millisecond,
		Memory: 1000, MemoryPeak: 5000, SwapPeak: 300, MemoryFailures: 7, OOMKills: 3,
		Pids: 4, PidsPeak: 9, PidsFailures: 2,
	}
	if !reflect.DeepEqual(u, want) {
		t.Errorf("Usage = %+v\nwant %+v", u, want)
	}
	// Before Linux 5.19 there is no memory.peak.
	if err := os.Remove(filepath.Join(dir, "memory.peak")); err != nil {
		t.Fatal(err)
	}
	if u := mustUsage(t, g); u.MemoryPeak != 0 || u.Memory != 1000 {
		t.Errorf("without memory.peak: peak %d, memory %d; want 0, 1000", u.MemoryPeak, u.Memory)
	}
	if _, err := NewUnified(root).Load("/k/missing"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
}

func TestFakeUnifiedProcsFreezeKill(t *testing.T) {
	root := fakeUnified(t, "cpuset cpu memory pids", "/k/task/sub")
	h := NewUnified(root)
	g, err := h.Load("/k/task")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "k/task")
	writeFiles(t, dir, map[string]string{"cgroup.procs": "12\n7\n"})
	writeFiles(t, filepath.Join(dir, "sub"), map[string]string{"cgroup.procs": "30\n"})
	if got, err := g.Procs(false); err != nil || !reflect.DeepEqual(got, []int{7, 12}) {
		t.Errorf("Procs(false) = %v, %v; want [7 12]", got, err)
	}
	if got, err := g.Procs(true); err != nil || !reflect.DeepEqual(got, []int{7, 12, 30}) {
		t.Errorf("Procs(true) = %v, %v; want [7 12 30]", got, err)
	}
	if kids, err := h.Children("/k/task"); err != nil || !reflect.DeepEqual(kids, []string{"/k/task/sub"}) {
		t.Errorf("Children = %v, %v", kids, err)
	}

	// The kernel reports the group frozen in cgroup.events.
	writeFiles(t, dir, map[string]string{"cgroup.events": "populated 1\nfrozen 1\n"})
	if err := g.Freeze(); err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, filepath.Join(dir, "cgroup.freeze")); got != "1" {
		t.Errorf("cgroup.freeze = %q after Freeze", got)
	}
	writeFiles(t, dir, map[string]string{"cgroup.events": "populated 1\nfrozen 0\n"})
	if err := g.Thaw(); err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, filepath.Join(dir, "cgroup.freeze")); got != "0" {
		t.Errorf("cgroup.freeze = %q after Thaw", got)
	}

	// Kill writes cgroup.kill and waits for "populated 0".
	writeFiles(t, dir, map[string]string{"cgroup.events": "populated 1\nfrozen 0\n"})
	done := make(chan error)
	go func() { done <- g.Kill() }()
	select {
	case err := <-done:
		t.Fatalf("Kill returned %v while the group was populated", err)
	case <-time.After(50 * time.Millisecond):
	}
	if got := readTrim(t, filepath.Join(dir, "cgroup.kill")); got != "1" {
		t.Errorf("cgroup.kill = %q during Kill", got)
	}
	writeFiles(t, dir, map[string]string{"cgroup.events": "populated 0\nfrozen 0\n"})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Kill did not return once the group was empty")
	}
}

func TestFakeUnifiedOOMEvents(t *testing.T) {
	root := fakeUnified(t, "cpuset cpu memory pids", "/k/task")
	g, err := NewUnified(root).Load("/k/task")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := g.OOMEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "k/task/memory.events")
	// memory.high being hit is not an OOM.
	writeFiles(t, filepath.Dir(file), map[string]string{"memory.events": "low 0\nhigh 5\nmax 0\noom 0\noom_kill 0\n"})
	select {
	case <-events:
		t.Errorf("event for a memory.high breach")
	case <-time.After(200 * time.Millisecond):
	}
	writeFiles(t, filepath.Dir(file), map[string]string{"memory.events": "low 0\nhigh 5\nmax 1\noom 1\noom_kill 1\n"})
	select {
	case <-events:
	case <-time.After(30 * time.Second):
		t.Fatal("no event for an OOM kill")
	}
	cancel()
	select {
	case _, open := <-events:
		if open {
			t.Errorf("unexpected event after cancel")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{"0": {0}, "0-1,3": {0, 1, 3}, "3,0-1,1": {0, 1, 3}, " 2-4\n": {2, 3, 4}} {
		if got, err := parseCPUList(in); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a", "1-", "3-1", "-1", "1,,x", "0-99999999"} {
		if got, err := parseCPUList(in); err == nil {
			t.Errorf("parseCPUList(%q) = %v, want an error", in, got)
		}
	}
}

func TestFormatCPUList(t *testing.T) {
	for _, c := range []struct {
		cpus []int
		want string
	}{{nil, ""}, {[]int{0}, "0"}, {[]int{0, 1, 2, 3}, "0-3"}, {[]int{0, 2, 3, 5, 6, 7}, "0,2-3,5-7"}} {
		if got := FormatCPUList(c.cpus); got != c.want {
			t.Errorf("FormatCPUList(%v) = %q, want %q", c.cpus, got, c.want)
		}
		if c.want != "" {
			if back, err := parseCPUList(c.want); err != nil || !reflect.DeepEqual(back, c.cpus) {
				t.Errorf("parseCPUList(%q) = %v, %v; want %v", c.want, back, err, c.cpus)
			}
		}
	}
}

// A group delegated to a service (systemd's Delegate=yes marks it
// user.delegate or trusted.delegate): Check takes the controllers it was
// given as the ones there are, and Create enables them from it down,
// writing nothing above it.
func TestFakeUnifiedDelegation(t *testing.T) {
	const d = "/system.slice/k.service"
	root := fakeUnified(t, "cpuset cpu io memory pids", d+"/kolejka/run/task")
	// The service was given cpu, memory and pids (no cpuset) and the groups
	// above it have theirs on already.
	writeFiles(t, filepath.Join(root, d), map[string]string{"cgroup.controllers": "cpu memory pids"})
	writeFiles(t, root, map[string]string{"cgroup.subtree_control": "cpu io memory pids"})
	writeFiles(t, filepath.Join(root, "system.slice"), map[string]string{"cgroup.subtree_control": "cpu memory pids"})
	// systemd's mark for a system service, where root may set it (tmpfs
	// has trusted xattrs, and user ones only since Linux 6.6); a user
	// manager's otherwise.
	if err := unix.Setxattr(filepath.Join(root, d), "trusted.delegate", []byte("1"), 0); err != nil {
		if err := unix.Setxattr(filepath.Join(root, d), "user.delegate", []byte("1"), 0); err != nil {
			t.Fatalf("marking the fake service's group delegated: %v", err)
		}
	}
	h := NewUnified(root)
	for p, want := range map[string]string{d + "/kolejka/run": d, d: d, "/system.slice": "/", "/": "/", "/other": "/"} {
		if got := h.boundary(p); got != want {
			t.Errorf("boundary(%s) = %s, want %s", p, got, want)
		}
	}

	err := h.Check(d+"/kolejka/run/task", &Resources{CPUs: "0"})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), filepath.Join(root, d, "cgroup.controllers")) {
		t.Errorf("cpus in a delegation without cpuset: %v, want ErrUnsupported naming the service's cgroup.controllers", err)
	}
	if err := h.Check("/elsewhere/task", &Resources{CPUs: "0"}); err != nil {
		t.Errorf("cpus outside the delegation: %v", err)
	}

	before := map[string]string{}
	for _, g := range []string{"", "system.slice"} {
		before[g] = readTrim(t, filepath.Join(root, g, "cgroup.subtree_control"))
	}
	if _, err := h.Create(d+"/kolejka/run/task", &Resources{Memory: ptr(64 * MiB), Pids: ptr(8)}); err != nil {
		t.Fatal(err)
	}
	for g, was := range before {
		if got := readTrim(t, filepath.Join(root, g, "cgroup.subtree_control")); got != was {
			t.Errorf("/%s cgroup.subtree_control, above the delegation, became %q (was %q)", g, got, was)
		}
	}
	for _, g := range []string{d, d + "/kolejka", d + "/kolejka/run"} {
		got := strings.Fields(readTrim(t, filepath.Join(root, g, "cgroup.subtree_control")))
		sort.Strings(got)
		if want := []string{"+cpu", "+memory", "+pids"}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s cgroup.subtree_control = %v, want %v", g, got, want)
		}
	}
}
