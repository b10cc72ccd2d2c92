package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// cgroup v1 against fake trees: usage parsing, limit writing and the
// handling of unusual mounts, without privileges. kernel_test.go covers v1
// on the real kernel.

// fakeLegacy builds v1 hierarchies under one folder, one per controller
// (or co-mount) folder name, with the group folders present.
func fakeLegacy(t *testing.T, folders map[string]map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for dir, files := range folders {
		writeFiles(t, filepath.Join(root, dir), files)
	}
	return root
}

func TestFakeLegacyUsage(t *testing.T) {
	root := fakeLegacy(t, map[string]map[string]string{
		"cpu,cpuacct/g": {
			"cgroup.procs":         "",
			"cpuacct.usage":        "1500000123\n",
			"cpuacct.usage_user":   "1000000000\n",
			"cpuacct.usage_sys":    "500000123\n",
			"cpuacct.usage_percpu": "1000000000 500000123 \n",
		},
		"memory/g": {
			"cgroup.procs":                    "",
			"memory.usage_in_bytes":           "1000\n",
			"memory.max_usage_in_bytes":       "5000\n",
			"memory.failcnt":                  "7\n",
			"memory.memsw.max_usage_in_bytes": "5300\n",
			"memory.oom_control":              "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
		},
		// v1 counts OOM kills and refused forks in the group where they
		// happen: a sub-group's count belongs to the group's too.
		"memory/g/sub": {"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"},
		"pids/g":       {"cgroup.procs": "", "pids.current": "4\n", "pids.peak": "9\n", "pids.events": "max 2\n"},
		"pids/g/sub":   {"pids.events": "max 1\n"},
	})
	h := NewLegacy(map[string]string{
		"cpu":     filepath.Join(root, "cpu,cpuacct"),
		"cpuacct": filepath.Join(root, "cpu,cpuacct"),
		"memory":  filepath.Join(root, "memory"),
		"pids":    filepath.Join(root, "pids"),
		"blkio":   filepath.Join(root, "blkio"), // not ours: ignored
	})
	if got := h.dirs("/g"); len(got) != 3 {
		t.Errorf("dirs = %v, want the co-mounted cpu,cpuacct once, memory and pids", got)
	}
	g, err := h.Load("/g")
	if err != nil {
		t.Fatal(err)
	}
	u := mustUsage(t, g)
	want := &Usage{
		CPU: 1500000123, CPUUser: time.Second, CPUSystem: 500000123,
		PerCPU: []time.Duration{time.Second, 500000123},
		Memory: 1000, MemoryPeak: 5000, SwapPeak: 300, MemoryFailures: 7, OOMKills: 3,
		Pids: 4, PidsPeak: 9, PidsFailures: 3,
	}
	if !reflect.DeepEqual(u, want) {
		t.Errorf("Usage = %+v\nwant %+v", u, want)
	}

	// Kernels before 4.7 lack usage_user/usage_sys: ticks of 10 ms.
	cpu := filepath.Join(root, "cpu,cpuacct/g")
	for _, f := range []string{"cpuacct.usage_user", "cpuacct.usage_sys"} {
		if err := os.Remove(filepath.Join(cpu, f)); err != nil {
			t.Fatal(err)
		}
	}
	// The split (1.5 s : 0.25 s in ticks) is scaled to the exact total.
	writeFiles(t, cpu, map[string]string{"cpuacct.stat": "user 150\nsystem 25\n"})
	if u := mustUsage(t, g); u.CPUUser != 1285714391 || u.CPUSystem != 214285732 || u.CPU != 1500000123 {
		t.Errorf("from cpuacct.stat: CPU %v user %v system %v; want 1.500000123s split 6:1", u.CPU, u.CPUUser, u.CPUSystem)
	}
	// Tick-sampled usage_user/usage_sys larger than the exact total (a
	// short task) are scaled down to it too.
	writeFiles(t, cpu, map[string]string{"cpuacct.usage": "1000000\n", "cpuacct.usage_user": "0\n", "cpuacct.usage_sys": "4000000\n"})
	if u := mustUsage(t, g); u.CPU != time.Millisecond || u.CPUUser != 0 || u.CPUSystem != time.Millisecond {
		t.Errorf("CPU %v user %v system %v; want 1ms all system", u.CPU, u.CPUUser, u.CPUSystem)
	}
}

func TestFakeLegacyCreate(t *testing.T) {
	unlimited := "9223372036854771712"
	root := fakeLegacy(t, map[string]map[string]string{
		"cpuset": {"cpuset.cpus": "0-3\n", "cpuset.mems": "0\n", "cpuset.effective_cpus": "0-3\n"},
		// As the kernel shows a new group: empty cpus and mems.
		"cpuset/g": {"cgroup.procs": "", "cpuset.cpus": "\n", "cpuset.mems": "\n"},
		"memory":   {"memory.memsw.limit_in_bytes": unlimited},
		"memory/g": {
			"cgroup.procs":                "",
			"memory.limit_in_bytes":       unlimited,
			"memory.memsw.limit_in_bytes": unlimited,
		},
		"pids/g": {"cgroup.procs": "", "pids.max": "max"},
	})
	h := NewLegacy(map[string]string{
		"cpuset": filepath.Join(root, "cpuset"),
		"memory": filepath.Join(root, "memory"),
		"pids":   filepath.Join(root, "pids"),
	})
	g, err := h.Create("/g", &Resources{Memory: ptr(64 * MiB), Swap: ptr(16 * MiB), Pids: ptr(8), CPUs: "1"})
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"memory/g/memory.limit_in_bytes":       "67108864",
		"memory/g/memory.memsw.limit_in_bytes": "83886080", // memory + swap
		"pids/g/pids.max":                      "8",
		"cpuset/g/cpuset.cpus":                 "1",
		"cpuset/g/cpuset.mems":                 "0", // copied from the parent
	} {
		if got := readTrim(t, filepath.Join(root, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if err := g.Update(nil); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"memory/g/memory.limit_in_bytes":       "-1",
		"memory/g/memory.memsw.limit_in_bytes": "-1",
		"pids/g/pids.max":                      "max",
		"cpuset/g/cpuset.cpus":                 "0-3", // the parent's
	} {
		if got := readTrim(t, filepath.Join(root, file)); got != want {
			t.Errorf("after Update(nil): %s = %q, want %q", file, got, want)
		}
	}
	if err := h.Check("/kolejka/x/task", &Resources{Swap: ptr(MiB)}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("v1 swap without memory: %v, want ErrUnsupported", err)
	}
	if err := h.Check("/kolejka/x/task", &Resources{Memory: ptr(MiB), Swap: ptr(MiB)}); err != nil {
		t.Errorf("v1 memory and swap: %v", err)
	}
	if err := h.Check("/kolejka/x/task", &Resources{Devices: nil, CPUs: "4"}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("CPU 4 of 0-3: %v, want ErrUnsupported", err)
	}
}

func TestFakeLegacyUnaddressable(t *testing.T) {
	// cpuset and memory co-mounted, without the per-name symlinks.
	root := fakeLegacy(t, map[string]map[string]string{"cpuset,memory": {}, "pids": {}})
	h := NewLegacy(map[string]string{
		"cpuset": filepath.Join(root, "cpuset,memory"),
		"memory": filepath.Join(root, "cpuset,memory"),
		"pids":   filepath.Join(root, "pids"),
	})
	for _, r := range []*Resources{{Memory: ptr(MiB)}, {CPUs: "0"}} {
		if err := h.Check("/kolejka/x/task", r); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "cannot address") {
			t.Errorf("Check(%+v) = %v, want ErrUnsupported explaining the mount", r, err)
		}
	}
	if err := h.Check("/kolejka/x/task", &Resources{Pids: ptr(3)}); err != nil {
		t.Errorf("Check(pids) = %v", err)
	}
	if err := h.Check("/kolejka/x/task", &Resources{Memory: ptr(MiB), Swap: ptr(0), Pids: ptr(-1)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative pids: %v, want ErrInvalid", err)
	}
}

// A path that exists in one v1 hierarchy only (a host process's memory
// path under systemd's v1 layout): Create makes its ancestors in the
// others, MissingParents names exactly those beforehand, and RemoveEmpty
// takes them away again once empty, touching nothing else.
func TestFakeLegacyMissingParents(t *testing.T) {
	root := fakeLegacy(t, map[string]map[string]string{
		"memory/user/session": {"cgroup.procs": ""},
		"pids":                {"pids.max": "max"},
		"cpuset":              {"cpuset.cpus": "0\n", "cpuset.mems": "0\n"},
	})
	h := NewLegacy(map[string]string{
		"cpuset": filepath.Join(root, "cpuset"),
		"memory": filepath.Join(root, "memory"),
		"pids":   filepath.Join(root, "pids"),
	})
	dirs, err := h.MissingParents("/user/session/s")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(dirs)
	want := []string{
		filepath.Join(root, "cpuset/user"), filepath.Join(root, "cpuset/user/session"),
		filepath.Join(root, "pids/user"), filepath.Join(root, "pids/user/session"),
	}
	if !slices.Equal(dirs, want) {
		t.Fatalf("MissingParents = %q, want %q", dirs, want)
	}
	if _, err := h.MissingParents("../x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("MissingParents of a relative path: %v, want ErrInvalid", err)
	}
	for _, d := range want {
		if err := os.MkdirAll(d, 0o755); err != nil { // what Create makes
			t.Fatal(err)
		}
	}
	// A folder that is in use stays (a file stands for the kernel's EBUSY),
	// and so do its parents; one outside the hierarchy is never touched.
	busy := filepath.Join(root, "pids/user/session")
	if err := os.WriteFile(filepath.Join(busy, "cgroup.procs"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	dotted := filepath.Join(root, "pids") + "/../pids/user"
	left := h.RemoveEmpty(append([]string{outside, dotted, filepath.Join(root, "pids")}, want...))
	wantLeft := []string{filepath.Join(root, "pids"), filepath.Join(root, "pids/user"), busy}
	if !slices.Equal(left, wantLeft[1:]) {
		t.Errorf("RemoveEmpty left %q, want %q", left, wantLeft[1:])
	}
	for _, d := range append(wantLeft, outside, filepath.Join(root, "memory/user/session")) {
		if !exists(d) {
			t.Errorf("%s was removed", d)
		}
	}
	for _, d := range want[:2] {
		if exists(d) {
			t.Errorf("%s is still there", d)
		}
	}
	// Once free, the rest goes; what is gone already is no error.
	if err := os.Remove(filepath.Join(busy, "cgroup.procs")); err != nil {
		t.Fatal(err)
	}
	if left := h.RemoveEmpty(want); len(left) != 0 {
		t.Errorf("RemoveEmpty of free folders left %q", left)
	}
	if exists(filepath.Join(root, "pids/user")) {
		t.Error("pids/user is still there")
	}
}
