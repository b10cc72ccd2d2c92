package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

// Evacuate, EffectiveCPUs and Populated: what the observer needs to nest
// sessions below groups that hold processes (cgroup v2's "no internal
// processes" rule).

func TestEvacuate(t *testing.T) {
	testEvacuate(t, requirePrivileged(t))
}

func TestUnifiedKernelEvacuate(t *testing.T) {
	testEvacuate(t, requireHybridUnified(t))
}

// testEvacuate puts a shell that forks without pause into a group, moves
// the group's processes into a leaf while it forks, and checks that the
// group holds none itself afterwards, still counts them, and can get a
// sub-group.
func testEvacuate(t *testing.T, h *Hierarchy) {
	root := testRoot(t, h)
	g := mustCreate(t, h, root+"/task", nil)
	if ok, err := g.Populated(); err != nil || ok {
		t.Errorf("empty group: Populated = %v, %v", ok, err)
	}
	p := startHelper(t, "reaper", `read x; while :; do /bin/true; done`)
	if err := g.Add(p.pid); err != nil {
		t.Fatal(err)
	}
	p.release()
	// Evacuate while it forks: the shell has children in the group.
	testenv.WaitFor(t, 30*time.Second, "the shell to fork", func() bool {
		procs, err := g.Procs(false)
		return err == nil && len(procs) > 1
	})
	if ok, err := g.Populated(); err != nil || !ok {
		t.Errorf("group with a shell: Populated = %v, %v", ok, err)
	}
	leaf, err := g.Evacuate("procs")
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Path() != root+"/task/procs" {
		t.Errorf("leaf path %s", leaf.Path())
	}
	if own, err := g.Procs(false); err != nil || len(own) != 0 {
		t.Errorf("after Evacuate the group holds %v, %v itself", own, err)
	}
	if all, err := g.Procs(true); err != nil || len(all) == 0 {
		t.Errorf("after Evacuate the group's sub-tree holds %v, %v", all, err)
	}
	if got, err := h.PathOf(p.pid); err != nil || got != leaf.Path() {
		t.Errorf("the shell is in %q, %v; want %s", got, err, leaf.Path())
	}
	// The group can get a sub-group now (on a v2 host with controllers,
	// one with limits; Create would fail with EBUSY before the move).
	sub, err := g.Child("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Evacuating again is harmless: nothing to move.
	if _, err := g.Evacuate("procs"); err != nil {
		t.Errorf("second Evacuate: %v", err)
	}
	if _, err := g.Evacuate("a/b"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Evacuate(a/b) = %v, want ErrInvalid", err)
	}
	u := mustUsage(t, g)
	if u.CPU == 0 {
		t.Errorf("the group counts no CPU of its evacuated shell")
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait()
	if ok, err := g.Populated(); err != nil || ok {
		t.Errorf("killed group: Populated = %v, %v", ok, err)
	}
	if err := g.Delete(); err != nil {
		t.Fatal(err)
	}
	if ok, err := sub.Populated(); err != nil || ok {
		t.Errorf("deleted group: Populated = %v, %v", ok, err)
	}
}

func TestEffectiveCPUs(t *testing.T) {
	h := requirePrivileged(t)
	root := testRoot(t, h)
	parent := mustCreate(t, h, root+"/task", nil)
	all, err := parent.EffectiveCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 {
		t.Fatal("no CPU")
	}
	last := all[len(all)-1]
	pinned, err := parent.Child("pinned", &Resources{CPUs: lastCPU(t, h)})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pinned.EffectiveCPUs(); err != nil || !reflect.DeepEqual(got, []int{last}) {
		t.Errorf("pinned group: EffectiveCPUs = %v, %v; want [%d]", got, err, last)
	}
	// A sub-group without a cpuset of its own runs on its parent's CPUs.
	below, err := pinned.Child("below", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := below.EffectiveCPUs(); err != nil || !reflect.DeepEqual(got, []int{last}) {
		t.Errorf("group below a pinned one: EffectiveCPUs = %v, %v; want [%d]", got, err, last)
	}
}

func TestFakeUnifiedEffectiveCPUs(t *testing.T) {
	root := fakeUnified(t, "cpuset cpu memory pids", "/k/task")
	h := NewUnified(root)
	g, err := h.Load("/k/task")
	if err != nil {
		t.Fatal(err)
	}
	// No cpuset files in the group or its parent: the root's CPUs.
	if got, err := g.EffectiveCPUs(); err != nil || !reflect.DeepEqual(got, []int{0, 1, 2, 3}) {
		t.Errorf("EffectiveCPUs = %v, %v; want the root's [0 1 2 3]", got, err)
	}
	writeFiles(t, filepath.Join(root, "k"), map[string]string{"cpuset.cpus.effective": "1,3\n"})
	if got, err := g.EffectiveCPUs(); err != nil || !reflect.DeepEqual(got, []int{1, 3}) {
		t.Errorf("EffectiveCPUs = %v, %v; want the parent's [1 3]", got, err)
	}
	writeFiles(t, filepath.Join(root, "k/task"), map[string]string{"cpuset.cpus.effective": "3\n"})
	if got, err := g.EffectiveCPUs(); err != nil || !reflect.DeepEqual(got, []int{3}) {
		t.Errorf("EffectiveCPUs = %v, %v; want its own [3]", got, err)
	}
	bare := NewUnified(fakeUnified(t, "cpu memory pids", "/k/task"))
	g, err = bare.Load("/k/task")
	if err != nil {
		t.Fatal(err)
	}
	// The fake root has cpuset.cpus.effective; remove it to have none.
	if err := os.Remove(filepath.Join(bare.mount, "cpuset.cpus.effective")); err != nil {
		t.Fatal(err)
	}
	if _, err := g.EffectiveCPUs(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("without cpuset: EffectiveCPUs = %v, want ErrUnsupported", err)
	}
}

func TestFakeUnifiedPopulated(t *testing.T) {
	root := fakeUnified(t, "cpuset cpu memory pids", "/k/task")
	g, err := NewUnified(root).Load("/k/task")
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, filepath.Join(root, "k/task"), map[string]string{"cgroup.events": "populated 1\nfrozen 0\n"})
	if ok, err := g.Populated(); err != nil || !ok {
		t.Errorf("Populated = %v, %v; want true", ok, err)
	}
	writeFiles(t, filepath.Join(root, "k/task"), map[string]string{"cgroup.events": "populated 0\nfrozen 0\n"})
	if ok, err := g.Populated(); err != nil || ok {
		t.Errorf("Populated = %v, %v; want false", ok, err)
	}
}

func TestLoadRoot(t *testing.T) {
	testLoadRoot(t, requirePrivileged(t))
}

func TestUnifiedKernelLoadRoot(t *testing.T) {
	testLoadRoot(t, requireHybridUnified(t))
}

// testLoadRoot loads the root group, moves a process out of it into a
// group and back (what the observer's detach does for a session opened by
// a process in the root), and checks that nothing that would act on every
// process of the host is allowed on it.
func testLoadRoot(t *testing.T, h *Hierarchy) {
	if d, err := h.Delegation(os.Getpid()); err != nil || d != "/" {
		t.Skipf("this process manages only the group delegated to it (%q, %v): the root is not its to move processes into", d, err)
	}
	rootGroup, err := h.Load("/")
	if err != nil {
		t.Fatal(err)
	}
	if rootGroup.Path() != "/" {
		t.Errorf("Path() = %q", rootGroup.Path())
	}
	g := mustCreate(t, h, testRoot(t, h)+"/g", nil)
	p := startHelper(t, "spin", "10ms")
	if err := g.Add(p.pid); err != nil {
		t.Fatal(err)
	}
	if err := rootGroup.Add(p.pid); err != nil {
		t.Fatal(err)
	}
	if got, err := h.PathOf(p.pid); err != nil || got != "/" {
		t.Errorf("after the move to the root: PathOf = %q, %v", got, err)
	}
	p.release()
	p.line()
	p.wait()
	for name, op := range map[string]func() error{
		"Kill":   rootGroup.Kill,
		"Delete": rootGroup.Delete,
		"Freeze": rootGroup.Freeze,
		"Thaw":   rootGroup.Thaw,
		"Update": func() error { return rootGroup.Update(&Resources{Pids: ptr(10)}) },
		"Evacuate": func() error {
			_, err := rootGroup.Evacuate("leaf")
			return err
		},
	} {
		if err := op(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s on the root = %v, want ErrInvalid", name, err)
		}
	}
}
