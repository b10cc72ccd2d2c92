// Package workertest is the conformance suite every worker runtime passes:
// each example task of testdata/tasks must give its expected verdict and
// outputs, and after every run nothing may be left behind — no process,
// cgroup, mount, container state or scratch folder.
package workertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/tasktest"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
)

// OutputLimit is the output cap of workers made here: small, so that the
// output flood ends quickly.
const OutputLimit = 1 << 20

// Env is a worker with private folders and a private cgroup root, so that
// tests running side by side (other packages' too) can check that their
// own runs left nothing.
type Env struct {
	W          *worker.Worker
	Temp       string
	State      string
	CgroupRoot string
}

// NewEnv makes a worker for rt. It needs root.
func NewEnv(t testing.TB, rt worker.Runtime) *Env {
	t.Helper()
	testenv.RequireRoot(t)
	base := t.TempDir()
	// Below the group delegated to the test, as the worker's own default.
	_, root := freshGroup(t, "kolejka-test-")
	e := &Env{
		Temp:       filepath.Join(base, "temp"),
		State:      filepath.Join(base, "state"),
		CgroupRoot: root,
	}
	for _, d := range []string{e.Temp, e.State} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.W = e.newWorker(t, rt, "none")
	t.Cleanup(func() {
		// Runs of worker processes a test killed and did not sweep itself.
		_ = e.W.Sweep(context.Background())
		for _, dir := range cgroupDirs(e.CgroupRoot) {
			os.Remove(dir)
		}
	})
	return e
}

// newWorker makes the Env's worker for rt, making each task's session
// through the kolejka-observer daemon at socket ("none": measuring tasks
// itself, whatever daemon the machine runs).
func (e *Env) newWorker(t testing.TB, rt worker.Runtime, socket string) *worker.Worker {
	t.Helper()
	return e.newWorkerWith(t, rt, socket, func(*worker.Config) {})
}

// newWorkerWith is newWorker with the configuration changed by set.
func (e *Env) newWorkerWith(t testing.TB, rt worker.Runtime, socket string, set func(*worker.Config)) *worker.Worker {
	t.Helper()
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	cfg := worker.Config{
		Temp:        e.Temp,
		StateDir:    e.State,
		CgroupRoot:  e.CgroupRoot,
		OutputLimit: OutputLimit,
		InitPath:    testenv.InitBinary(t),
		Observer:    socket,
		Logger:      slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})),
	}
	set(&cfg)
	w, err := worker.New(context.Background(), cfg, rt)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// Run executes the task in taskDir into a fresh result folder.
func (e *Env) Run(t testing.TB, taskDir string, opt worker.Options) (string, *spec.Result, error) {
	t.Helper()
	resultDir := filepath.Join(t.TempDir(), "result")
	res, err := e.W.Execute(context.Background(), taskDir, resultDir, opt)
	return resultDir, res, err
}

// AssertClean fails t if anything of this Env's runs is left.
func (e *Env) AssertClean(t testing.TB) {
	t.Helper()
	if entries, _ := os.ReadDir(e.Temp); len(entries) > 0 {
		t.Errorf("scratch left in %s: %v", e.Temp, names(entries))
	}
	if mounts, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(e.Temp)); len(mounts) > 0 {
		t.Errorf("%d mounts left below %s, e.g. %s", len(mounts), e.Temp, mounts[0].Mountpoint)
	}
	if entries, _ := os.ReadDir(filepath.Join(e.State, "runs")); len(entries) > 0 {
		t.Errorf("run registry entries left: %v", names(entries))
	}
	for _, dir := range cgroupDirs(e.CgroupRoot) {
		if entries, _ := os.ReadDir(dir); len(subdirs(entries)) > 0 {
			t.Errorf("cgroups left in %s: %v", dir, subdirs(entries))
		}
	}
}

// Conformance runs every example task on rt (the ones meant for runtime
// name) and checks verdicts, outputs and cleanliness. The worker measures
// the tasks itself: no observer daemon.
func Conformance(t *testing.T, name string, rt worker.Runtime) {
	conformance(t, name, NewEnv(t, rt), false)
}

// ConformanceBesideObserver is Conformance with a kolejka-observer daemon
// running and kept busy (BusyObserver), as on a node set up as
// docs/grid-node.md recommends: each task's session is made through it.
func ConformanceBesideObserver(t *testing.T, name string, rt worker.Runtime) {
	e := NewEnv(t, rt)
	e.W = e.newWorker(t, rt, BusyObserver(t))
	conformance(t, name, e, false)
}

// conformance runs every example task that applies to name on e. With
// warm, a container of each task's shape is prepared before it
// (worker.Prepare), and the task must run in it (a warm hit).
func conformance(t *testing.T, name string, e *Env, warm bool) {
	cases, err := tasktest.Cases()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if !c.AppliesTo(name) {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			var hits int64
			if warm {
				task, err := spec.LoadTask(c.Dir)
				if err != nil {
					t.Fatal(err)
				}
				if err := e.W.Prepare(context.Background(), e.W.TaskShape(task, worker.Options{})); err != nil {
					t.Fatalf("preparing a container: %v", err)
				}
				hits = e.W.WarmStats().Hits
			}
			resultDir, res, err := e.Run(t, c.Dir, worker.Options{})
			if res == nil {
				t.Fatalf("no result: %v", err)
			}
			if err != nil {
				t.Errorf("system error: %v", err)
			}
			if now := e.W.WarmStats().Hits; warm && now != hits+1 {
				t.Errorf("the task did not run in the prepared container (warm hits %d, then %d)", hits, now)
			}
			// What was written is what was returned.
			onDisk, lerr := spec.LoadResult(resultDir)
			if lerr != nil {
				t.Fatalf("reading the result back: %v", lerr)
			}
			for _, problem := range c.Check(resultDir, onDisk, OutputLimit) {
				t.Error(problem)
			}
			if onDisk.Status != res.Status {
				t.Errorf("result file says %s, Execute said %s", onDisk.Status, res.Status)
			}
			e.AssertClean(t)
		})
	}
}

// MissingImage runs a task naming an image that rt cannot find (a runtime
// with images only) and checks that it is a system error: ErrImage naming
// the image, an SE result written, nothing left.
func MissingImage(t *testing.T, e *Env) {
	t.Helper()
	const img = "kolejka-no-such-image:1"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(`{"image": "`+img+`", "args": ["true"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	resultDir, res, err := e.Run(t, dir, worker.Options{})
	if !errors.Is(err, worker.ErrImage) {
		t.Fatalf("err = %v, want ErrImage", err)
	}
	if !strings.Contains(err.Error(), img) {
		t.Errorf("error %q does not name the image", err)
	}
	if res == nil || res.Status != spec.StatusSE {
		t.Fatalf("res = %+v, want SE", res)
	}
	if _, err := spec.LoadResult(resultDir); err != nil {
		t.Fatal(err)
	}
	e.AssertClean(t)
}

// cgroupDirs lists root's folder in every mounted cgroup hierarchy.
func cgroupDirs(root string) []string {
	var dirs []string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{filepath.Join("/sys/fs/cgroup", root)}
	}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		d := filepath.Join("/sys/fs/cgroup", e.Name(), root)
		if _, err := os.Stat(d); err == nil {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

func subdirs(entries []os.DirEntry) []string {
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

func names(entries []os.DirEntry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Name()
	}
	return out
}

// freshGroup returns the host's hierarchy and the path of a new, uniquely
// named group (prefix, then random hex) below the one delegated to this
// test process; it does not create the group.
func freshGroup(t testing.TB, prefix string) (*cgroup.Hierarchy, string) {
	t.Helper()
	cg, err := cgroup.Host()
	if err != nil {
		t.Fatal(err)
	}
	d, err := cg.Delegation(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return cg, path.Join(d, prefix+randomHex())
}

func randomHex() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// testWriter sends the worker's log to the test's.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = testWriter{}

// GroupPids lists the processes in the groups root/<run>/<group> of every
// run under root (the memory hierarchy on v1, the unified one on v2);
// group is a glob ("task", "runtime", "*").
func GroupPids(root, group string) []int {
	var pids []int
	for _, base := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup"} {
		matches, _ := filepath.Glob(filepath.Join(base, root, "*", group, "cgroup.procs"))
		for _, m := range matches {
			data, _ := os.ReadFile(m)
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
		}
		if len(matches) > 0 {
			break
		}
	}
	return pids
}
