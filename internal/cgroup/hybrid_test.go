package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

// On hybrid hosts the kernel's cgroup2 at /sys/fs/cgroup/unified has no
// controllers (they are all bound to v1), but every cgroup2 group still has
// cgroup.procs, cgroup.events, cgroup.freeze, cgroup.kill and cpu.stat. So
// the v2 code paths for moving, measuring CPU, freezing, killing and
// deleting run here against the real kernel, not only the fake tree.

func requireHybridUnified(t *testing.T) *Hierarchy {
	t.Helper()
	requirePrivileged(t)
	// A v2 host runs these paths in the other real-cgroup tests; a pure
	// v1 host has no cgroup2 tree to run them on.
	testenv.RequireCgroupLayout(t, testenv.Hybrid)
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup2"))
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) == 0 {
		t.Fatal("a hybrid host without a cgroup2 mount")
	}
	h := NewUnified(mounts[0].Mountpoint)
	if err := probeWritable(filepath.Join(h.mount, "kolejka-test-probe-"+randomName())); err != nil {
		t.Fatalf("cgroup2 at %s is not writable: %v", h.mount, err)
	}
	return h
}

func TestUnifiedKernelCheck(t *testing.T) {
	h := requireHybridUnified(t)
	b, err := os.ReadFile(filepath.Join(h.mount, "cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "memory") {
		t.Skipf("cgroup2 at %s offers memory", h.mount)
	}
	err = h.Check("/kolejka/x/task", &Resources{Memory: ptr(MiB)})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "memory") {
		t.Errorf("Check(memory) = %v, want ErrUnsupported naming memory", err)
	}
	root := testRoot(t, h)
	if _, err := h.Create(root+"/task", &Resources{Pids: ptr(8)}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Create with pids = %v, want ErrUnsupported", err)
	}
}

func TestUnifiedKernelCPUAccuracy(t *testing.T) {
	h := requireHybridUnified(t)
	testCPUAccuracy(t, mustCreate(t, h, testRoot(t, h)+"/spin", nil))
}

func TestUnifiedKernelFreezeThaw(t *testing.T) {
	h := requireHybridUnified(t)
	testFreezeThaw(t, mustCreate(t, h, testRoot(t, h)+"/freeze", nil))
}

func TestUnifiedKernelNestedUsage(t *testing.T) {
	testNestedUsage(t, requireHybridUnified(t), nil)
}

func TestUnifiedKernelKillAndDelete(t *testing.T) {
	h := requireHybridUnified(t)
	root := testRoot(t, h)
	parent := mustCreate(t, h, root+"/task", nil)
	g, err := parent.Child("tree", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := startHelper(t, "reaper", `read x; for i in 1 2 3 4 5; do sleep 60 & done; (sleep 60 & sleep 60 & wait) & wait`)
	if err := g.Add(p.pid); err != nil {
		t.Fatal(err)
	}
	p.release()
	testenv.WaitFor(t, 30*time.Second, "the tree to grow to 9 processes", func() bool {
		procs, err := parent.Procs(true)
		if err != nil {
			t.Fatal(err)
		}
		return len(procs) >= 9
	})
	if err := parent.Kill(); err != nil {
		t.Fatal(err)
	}
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
}
