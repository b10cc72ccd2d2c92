package worker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/host"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// The worker's own behaviour, with the host runtime (no image needed); the
// runtimes' conformance suites cover the example tasks.

func newEnv(t *testing.T) *workertest.Env {
	testenv.RequireRoot(t)
	cg, err := cgroup.Host()
	if err != nil {
		t.Fatal(err)
	}
	return workertest.NewEnv(t, host.New(cg))
}

// writeTask makes a task folder from JSON and files.
func writeTask(t *testing.T, taskJSON string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(taskJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// snapshot lists a folder tree with contents, to prove nothing changed.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	// A part it cannot read would hide a change: the test stops there.
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if fi.IsDir() {
			out[rel] = "dir"
			return nil
		}
		data, err := os.ReadFile(p)
		out[rel] = string(data) + "|" + fi.Mode().String()
		return err
	})
	if err != nil {
		t.Fatalf("snapshot of %s: %v", dir, err)
	}
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, task string
		files      map[string]string
		want       []string // fragments of the error
	}{
		{"malformed json", `{"image": "x", "args": [`, nil, []string{spec.TaskFile}},
		{"unknown key", `{"image": "x", "args": ["true"], "limits": {"memmory": "1G"}}`, nil, []string{"limits.memmory", "unknown"}},
		{"bad unit", `{"image": "x", "args": ["true"], "limits": {"memory": "64MiB"}}`, nil, []string{"limits.memory", "64MiB"}},
		{"path escape", `{"image": "x", "args": ["true"], "files": {"a": "../outside"}}`, nil, []string{"files"}},
		{"absolute name", `{"image": "x", "args": ["true"], "files": {"/etc/passwd": null}}`, nil, []string{"files"}},
		{"missing file", `{"image": "x", "args": ["true"], "files": {"a.txt": null}}`, nil, []string{"a.txt"}},
		{"no args", `{"image": "x", "args": []}`, nil, []string{"args"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeTask(t, c.task, c.files)
			before := snapshot(t, dir)
			resultDir := filepath.Join(t.TempDir(), "result")
			res, err := e.W.Execute(context.Background(), dir, resultDir, worker.Options{Consume: true})
			if res != nil || err == nil {
				t.Fatalf("accepted bad input: res=%v err=%v", res, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, err := os.Stat(resultDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("result folder created: %v", err)
			}
			if after := snapshot(t, dir); !equalMaps(before, after) {
				t.Errorf("task folder changed:\n%v\n%v", before, after)
			}
			if entries, _ := os.ReadDir(filepath.Dir(resultDir)); len(entries) != 0 {
				t.Errorf("left something beside the result folder: %v", entries)
			}
			e.AssertClean(t)
		})
	}
}

func TestResultFolderInTheWay(t *testing.T) {
	e := newEnv(t)
	dir := writeTask(t, `{"image": "x", "args": ["true"]}`, nil)
	resultDir := t.TempDir()
	os.WriteFile(filepath.Join(resultDir, "precious"), []byte("keep me"), 0o644)
	res, err := e.W.Execute(context.Background(), dir, resultDir, worker.Options{})
	if res != nil || err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("res=%v err=%v, want a not-empty error", res, err)
	}
	if data, _ := os.ReadFile(filepath.Join(resultDir, "precious")); string(data) != "keep me" {
		t.Fatal("the existing result folder was touched")
	}
}

func TestEmptyResultFolderIsUsed(t *testing.T) {
	e := newEnv(t)
	dir := writeTask(t, `{"image": "x", "args": ["sh", "-c", "echo hi"], "stdout": "out"}`, nil)
	resultDir := t.TempDir()
	res, err := e.W.Execute(context.Background(), dir, resultDir, worker.Options{})
	if err != nil || res.Status != spec.StatusOK {
		t.Fatalf("res=%v err=%v", res, err)
	}
	if data, _ := os.ReadFile(filepath.Join(resultDir, "out")); string(data) != "hi\n" {
		t.Fatalf("stdout %q", data)
	}
}

func TestConsumeMovesAndRemovesTheTask(t *testing.T) {
	e := newEnv(t)
	dir := writeTask(t, `{"image": "x", "args": ["sh", "-c", "cat in.txt"], "files": {"in.txt": null}, "stdout": "out"}`,
		map[string]string{"in.txt": "moved\n"})
	resultDir, res, err := e.Run(t, dir, worker.Options{Consume: true})
	if err != nil || res.Status != spec.StatusOK {
		t.Fatalf("res=%v err=%v", res, err)
	}
	if data, _ := os.ReadFile(filepath.Join(resultDir, "out")); string(data) != "moved\n" {
		t.Fatalf("stdout %q", data)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("task folder still there: %v", err)
	}
	e.AssertClean(t)
}

func TestUnenforceableLimitIsRefused(t *testing.T) {
	e := newEnv(t)
	for _, lim := range []string{`"gpus": 1`, `"perf_instructions": "1g"`, `"cpus": 1000`, `"storage": "1G"`} {
		t.Run(lim, func(t *testing.T) {
			dir := writeTask(t, `{"image": "x", "args": ["true"], "limits": {`+lim+`}}`, nil)
			resultDir, res, err := e.Run(t, dir, worker.Options{})
			if err == nil || !errors.Is(err, worker.ErrUnsupported) {
				t.Fatalf("err = %v, want ErrUnsupported", err)
			}
			if res == nil || res.Status != spec.StatusSE || res.Result != nil {
				t.Fatalf("res = %+v, want SE without an exit code", res)
			}
			if back, err := spec.LoadResult(resultDir); err != nil || back.Status != spec.StatusSE {
				t.Fatalf("result on disk: %v %v", back, err)
			}
			e.AssertClean(t)
		})
	}
}

func TestCommandNotFound(t *testing.T) {
	e := newEnv(t)
	dir := writeTask(t, `{"image": "x", "args": ["no-such-command-here"], "stderr": "err"}`, nil)
	resultDir, res, err := e.Run(t, dir, worker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != spec.StatusRE || res.Result == nil || *res.Result != 127 {
		t.Fatalf("status %s result %v, want RE 127", res.Status, res.Result)
	}
	data, _ := os.ReadFile(filepath.Join(resultDir, "err"))
	if !strings.Contains(string(data), "no-such-command-here") {
		t.Fatalf("stderr %q does not name the command", data)
	}
}

func TestCapsFromOptionsAreMerged(t *testing.T) {
	e := newEnv(t)
	dir := writeTask(t, `{"image": "x", "args": ["true"], "limits": {"memory": "1G", "time": "10s"}}`, nil)
	mem, _ := spec.ParseSize("256M")
	_, res, err := e.Run(t, dir, worker.Options{Caps: spec.Limits{Memory: &mem}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Limits.Memory == nil || *res.Limits.Memory != mem {
		t.Fatalf("memory limit %v, want the cap %d", res.Limits.Memory, mem)
	}
	if res.Limits.Swap == nil || *res.Limits.Swap != 0 {
		t.Fatalf("swap %v, want 0 when memory is limited and swap is not given", res.Limits.Swap)
	}
	if res.Limits.Time == nil || res.Limits.Time.Seconds() != 10 {
		t.Fatalf("time %v", res.Limits.Time)
	}
}

func TestTasksLeavingDaemonsEndWithThem(t *testing.T) {
	e := newEnv(t)
	// The daemon would keep stdout open forever; it must die with the task.
	dir := writeTask(t, `{"image": "x", "args": ["sh", "-c", "(trap '' HUP TERM; sleep 1000) & echo started"], "stdout": "out", "limits": {"time": "20s"}}`, nil)
	_, res, err := e.Run(t, dir, worker.Options{})
	if err != nil || res.Status != spec.StatusOK {
		t.Fatalf("res=%+v err=%v", res, err)
	}
	if *res.Stats.Time > 5e9 {
		t.Fatalf("took %v: the daemon held the task open", *res.Stats.Time)
	}
	e.AssertClean(t)
}

func TestExplicitCores(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs two cores")
	}
	e := newEnv(t)
	dir := writeTask(t, `{"image": "x", "args": ["sh", "-c", "grep Cpus_allowed_list /proc/self/status"], "limits": {"cpus": 1}, "stdout": "out"}`, nil)
	resultDir, res, err := e.Run(t, dir, worker.Options{Cores: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(filepath.Join(resultDir, "out"))
	if !strings.HasSuffix(strings.TrimSpace(string(out)), "\t1") {
		t.Fatalf("pinned to %q, want core 1", out)
	}
	if res.Limits.CPUsOffset == nil || *res.Limits.CPUsOffset != 1 {
		t.Fatalf("cpus_offset %v", res.Limits.CPUsOffset)
	}
	for _, bad := range [][]int{{0, 1}, {4096}, {1, 1}} {
		if _, res, err := e.Run(t, dir, worker.Options{Cores: bad}); !errors.Is(err, worker.ErrUnsupported) || res.Status != spec.StatusSE {
			t.Errorf("cores %v: %v %v", bad, res.Status, err)
		}
	}
}

// A task that ends past its time limit is TLE even when the limit's timer
// runs late and finds it already ended: the verdict agrees with the time
// the result reports.
func TestLateTimerStillJudgesTLE(t *testing.T) {
	e := newEnv(t)
	worker.DelayTimeLimit(t, 3*time.Second)
	dir := writeTask(t, `{"image": "x", "args": ["sleep", "0.6"], "limits": {"time": "300ms"}}`, nil)
	_, res, err := e.Run(t, dir, worker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stats.Time == nil || *res.Stats.Time < 300*time.Millisecond {
		t.Fatalf("time %v: the task did not outlive its limit", res.Stats.Time)
	}
	if res.Status != spec.StatusTLE {
		t.Errorf("status %s with time %v over a limit of 300ms, want TLE", res.Status, *res.Stats.Time)
	}
	e.AssertClean(t)
}

// Options.Published hands over the result once its folder is published,
// before Execute returns.
func TestPublishedBeforeExecuteReturns(t *testing.T) {
	e := newEnv(t)
	task := writeTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "echo out"], "stdout": "out"}`, nil)
	// Transient (a foreman's result folder) changes only how the result
	// file is written: the folder is as complete when published.
	for _, transient := range []bool{false, true} {
		t.Run(fmt.Sprint("transient=", transient), func(t *testing.T) {
			resultDir := filepath.Join(t.TempDir(), "r")
			var calls int
			var seen *spec.Result
			var out, file []byte
			res, err := e.W.Execute(context.Background(), task, resultDir, worker.Options{Transient: transient, Published: func(r *spec.Result) {
				calls++
				seen = r
				// The folder is complete already: what the caller sends on.
				if loaded, err := spec.LoadResult(resultDir); err != nil || loaded.Status != r.Status {
					t.Errorf("result folder when published: %v, %+v", err, loaded)
				}
				out, _ = os.ReadFile(filepath.Join(resultDir, "out"))
				file, _ = os.ReadFile(filepath.Join(resultDir, spec.ResultFile))
			}})
			if err != nil || res.Status != spec.StatusOK {
				t.Fatalf("execute: %v %+v", err, res)
			}
			if calls != 1 || seen != res || string(out) != "out\n" {
				t.Errorf("Published called %d times with %p (Execute returned %p), stdout then %q", calls, seen, res, out)
			}
			if want, _ := res.Encode(); string(file) != string(want) {
				t.Errorf("%s when published:\n%s\nwant\n%s", spec.ResultFile, file, want)
			}
		})
	}
}
