package worker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/host"
)

// Correctness against Kolejka and against loss, with the host
// runtime: the mechanisms are the worker's and kolejka-init's, the same
// for every runtime (the conformance suites run the example tasks on
// each).

// Kolejka's worker writes 256−N for a task killed by signal N (its stage2
// exits with Python's returncode −N) and 137 when the time limit kills the
// container; the verdicts stay ours.
func TestExitCodesAreKolejkas(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		name, args string
		limits     string
		status     spec.Status
		code       int
	}{
		{"SIGSEGV", `["sh", "-c", "kill -SEGV $$"]`, `{"time": "10s"}`, spec.StatusRE, 245},
		{"SIGKILL from inside", `["sh", "-c", "kill -KILL $$"]`, `{"time": "10s"}`, spec.StatusRE, 247},
		{"SIGTERM", `["sh", "-c", "kill -TERM $$"]`, `{"time": "10s"}`, spec.StatusRE, 256 - int(syscall.SIGTERM)},
		{"memory limit", `["sh", "-c", "x=a; while :; do x=$x$x; done"]`, `{"memory": "32M", "swap": 0, "time": "20s"}`, spec.StatusMLE, 247},
		{"time limit", `["sleep", "10"]`, `{"time": "300ms"}`, spec.StatusTLE, 137},
		{"exit 3", `["sh", "-c", "exit 3"]`, `{"time": "10s"}`, spec.StatusRE, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeTask(t, `{"image": "x", "args": `+c.args+`, "limits": `+c.limits+`}`, nil)
			_, res, err := e.Run(t, dir, worker.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != c.status || res.Result == nil || *res.Result != c.code {
				t.Fatalf("status %s, result %v; want %s %d", res.Status, deref(res.Result), c.status, c.code)
			}
		})
	}
	e.AssertClean(t)
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// du is the disk space a folder tree takes, in bytes.
func du(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			}
		}
		return nil
	})
	return total
}

// What leaves a task is bounded by what it could write: its workspace.
// A sparse file past it, or one file linked many times, is not copied
// whole onto the node's disk: it is left out, named in "omitted", OLE.
func TestOutputsAreBoundedByTheWorkspace(t *testing.T) {
	e := newEnv(t)
	limits := `"limits": {"workspace": "16M", "memory": "256M", "time": "20s"}`
	t.Run("sparse", func(t *testing.T) {
		dir := writeTask(t, `{"image": "x", "args": ["sh", "-c", "truncate -s 1G ../result/big && echo kept > ../result/small && echo done"], "stdout": "out", `+limits+`}`, nil)
		resultDir, res, err := e.Run(t, dir, worker.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != spec.StatusOLE {
			t.Errorf("status %s, want OLE", res.Status)
		}
		if _, listed := res.Files["big"]; listed {
			t.Error("the 1 GiB sparse file is listed in the result")
		}
		if _, err := os.Stat(filepath.Join(resultDir, "big")); err == nil {
			t.Error("the 1 GiB sparse file is in the result folder")
		}
		if why := res.Omitted["big"]; !strings.Contains(why, "1073741824 bytes") || !strings.Contains(why, "workspace limit") {
			t.Errorf("omitted %q: want big's size and the bound", res.Omitted)
		}
		if data, _ := os.ReadFile(filepath.Join(resultDir, "small")); string(data) != "kept\n" {
			t.Errorf("small is %q: the other outputs must be delivered", data)
		}
		if n := du(t, resultDir); n > 1<<20 {
			t.Errorf("the result folder takes %d bytes of disk", n)
		}
		if back, err := spec.LoadResult(resultDir); err != nil || back.Omitted["big"] == "" {
			t.Errorf("the result on disk: %v, omitted %v", err, back)
		}
	})
	t.Run("links", func(t *testing.T) {
		dir := writeTask(t, `{"image": "x", "args": ["sh", "-c", "dd if=/dev/zero of=../result/a bs=1M count=6 2>/dev/null && ln ../result/a ../result/b && ln ../result/a ../result/c"], `+limits+`}`, nil)
		resultDir, res, err := e.Run(t, dir, worker.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, hasA := res.Files["a"]
		_, hasB := res.Files["b"]
		if res.Status != spec.StatusOLE || !hasA || !hasB || res.Omitted["c"] == "" {
			t.Fatalf("status %s, files %v, omitted %v: want a and b (12 MiB) collected, c (18 MiB in all) left out, OLE", res.Status, res.Files, res.Omitted)
		}
		if fi, err := os.Stat(filepath.Join(resultDir, "b")); err != nil || fi.Size() != 6<<20 {
			t.Errorf("b: %v", err)
		}
	})
	t.Run("within", func(t *testing.T) {
		dir := writeTask(t, `{"image": "x", "args": ["sh", "-c", "dd if=/dev/zero of=../result/a bs=1M count=10 2>/dev/null"], `+limits+`}`, nil)
		_, res, err := e.Run(t, dir, worker.Options{})
		if err != nil || res.Status != spec.StatusOK || res.Omitted != nil {
			t.Fatalf("status %s, omitted %v, %v: a 10 MiB output within 16M is OK", res.Status, res.Omitted, err)
		}
	})
	e.AssertClean(t)
}

// With --consume the task's files are not lost when the run fails: the
// task folder stays as it was, to be run again. Only a published result
// without a system error removes it.
func TestConsumeKeepsTheTaskOnFailure(t *testing.T) {
	e := newEnv(t)
	cg, err := cgroup.Host()
	if err != nil {
		t.Fatal(err)
	}
	// A runtime failure after the inputs are in: kolejka-init missing.
	broken, err := worker.New(context.Background(), worker.Config{Temp: e.Temp, StateDir: e.State, CgroupRoot: e.CgroupRoot,
		InitPath: filepath.Join(t.TempDir(), "no-kolejka-init"), Observer: "none",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, host.New(cg))
	if err != nil {
		t.Fatal(err)
	}
	for _, limits := range []string{`{}`, `{"workspace": "8M"}`} {
		t.Run("limits "+limits, func(t *testing.T) {
			dir := writeTask(t, `{"image": "x", "args": ["sh", "-c", "cat in.txt sub/data"], "files": {"in.txt": null, "sub/data": "data.bin"}, "limits": `+limits+`}`,
				map[string]string{"in.txt": "precious\n", "data.bin": strings.Repeat("d", 100000)})
			before := snapshot(t, dir)
			resultDir := filepath.Join(t.TempDir(), "result")
			res, err := broken.Execute(context.Background(), dir, resultDir, worker.Options{Consume: true})
			if err == nil || res == nil || res.Status != spec.StatusSE {
				t.Fatalf("res %+v, err %v: want SE", res, err)
			}
			if after := snapshot(t, dir); !equalMaps(before, after) {
				t.Fatalf("the consumed task folder changed on a failed run:\nbefore %v\nafter  %v", keys(before), keys(after))
			}
			// And it runs again, now consumed for good.
			_, res, err = e.Run(t, dir, worker.Options{Consume: true})
			if err != nil || res.Status != spec.StatusOK {
				t.Fatalf("the retry: %+v %v", res, err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("the task folder is still there after a good run: %v", err)
			}
			e.AssertClean(t)
		})
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// An output the result cannot name costs only itself: the result and the
// other files are delivered, and "omitted" says what was left out and why.
func TestOddOutputNamesAreLeftOut(t *testing.T) {
	e := newEnv(t)
	dir := writeTask(t, `{"image": "x", "args": ["sh", "-c", "echo x > \"../result/$(printf 'bad\\377')\"; mkdir ../result/kolejka_result.json; echo y > ../result/kolejka_result.json/z; echo kept > ../result/good; echo captured > ../result/out; echo hi"], "stdout": "out"}`, nil)
	resultDir, res, err := e.Run(t, dir, worker.Options{})
	if err != nil || res == nil {
		t.Fatalf("res %+v, err %v", res, err)
	}
	if res.Status != spec.StatusOK {
		t.Errorf("status %s, want OK (names are not a limit)", res.Status)
	}
	back, err := spec.LoadResult(resultDir)
	if err != nil {
		t.Fatalf("no readable result folder: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(resultDir, "good")); string(data) != "kept\n" {
		t.Errorf("good is %q", data)
	}
	if data, _ := os.ReadFile(filepath.Join(resultDir, "out")); string(data) != "hi\n" {
		t.Errorf("stdout is %q: the capture must win over a file of the same name", data)
	}
	for name, want := range map[string]string{`"bad\xff"`: "not valid UTF-8", "kolejka_result.json/z": "clashes with kolejka_result.json", "out": "stdout"} {
		if !strings.Contains(back.Omitted[name], want) {
			t.Errorf("omitted[%s] = %q, want it to say %q (omitted: %v)", name, back.Omitted[name], want, back.Omitted)
		}
	}
	if len(back.Files) != 2 {
		t.Errorf("files %v, want good and out", back.Files)
	}
	e.AssertClean(t)
}

// An argument list too long for the kernel's exec is the task's failure to
// start (RE, 126 as in a shell), explained on its stderr, not a system
// error: the runtimes never exec it, kolejka-init does.
func TestArgumentListTooLong(t *testing.T) {
	e := newEnv(t)
	var env []string
	for i := range 30 {
		env = append(env, fmt.Sprintf(`"V%d": "%s"`, i, strings.Repeat("v", 100<<10)))
	}
	for _, c := range []struct{ name, task string }{
		{"one 200 KiB argument", `{"image": "x", "args": ["echo", "` + strings.Repeat("a", 200<<10) + `"], "stdout": "out", "stderr": "err"}`},
		{"3 MiB of environment", `{"image": "x", "args": ["true"], "environment": {` + strings.Join(env, ", ") + `}, "stdout": "out", "stderr": "err"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			resultDir, res, err := e.Run(t, writeTask(t, c.task, nil), worker.Options{})
			if err != nil {
				t.Fatalf("system error: %v", err)
			}
			if res.Status != spec.StatusRE || res.Result == nil || *res.Result != 126 {
				t.Fatalf("status %s result %v, want RE 126", res.Status, deref(res.Result))
			}
			data, _ := os.ReadFile(filepath.Join(resultDir, "err"))
			if !strings.Contains(string(data), "argument list too long") || !strings.Contains(string(data), "Linux takes at most") {
				t.Errorf("stderr %q does not say why", data)
			}
		})
	}
	// Within the limits, long arguments and environments reach the task.
	long := strings.Repeat("b", 100<<10)
	resultDir, res, err := e.Run(t, writeTask(t, `{"image": "x", "args": ["sh", "-c", "printf '%s' \"$1\" | wc -c; printf '%s' \"$V\" | wc -c", "sh", "`+long+`"], "environment": {"V": "`+long+`"}, "stdout": "out"}`, nil), worker.Options{})
	if err != nil || res.Status != spec.StatusOK {
		t.Fatalf("%+v %v", res, err)
	}
	if data, _ := os.ReadFile(filepath.Join(resultDir, "out")); strings.Join(strings.Fields(string(data)), " ") != "102400 102400" {
		t.Errorf("the task saw %q, want two 102400-byte strings", data)
	}
	e.AssertClean(t)
}
