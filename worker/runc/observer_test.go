package runc_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/observer/daemon"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// With kolejka-observer running, the task's top session is the daemon's
// and programs inside the task (a judge) open sessions below it through
// the socket mounted into the container: a test program in a nested
// session with its own memory limit is killed by that limit while the
// judge carries on.
func TestJudgeOpensNestedSessions(t *testing.T) {
	testenv.RequireRoot(t)
	rt := newRuntime(t)

	// A daemon on a private socket.
	cg, err := cgroup.Host()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := daemon.NewRegistry(cg, daemon.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "observer.sock")
	ln, err := daemon.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := daemon.NewServer(reg, daemon.ServerOptions{})
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		reg.Shutdown(ctx)
	})

	// kolejka-observer itself (static) is the judge's tool inside.
	judge := t.TempDir()
	observerBin, err := os.ReadFile(filepath.Join(testenv.Binaries(t), "kolejka-observer"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(judge, "kolejka-observer"), observerBin, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(judge, spec.TaskFile), []byte(`{
		"image": "kolejka-test:latest",
		"args": ["sh", "-c", "./kolejka-observer run --memory 16M -- kolejka-alloc 64 > bomb.json; echo bomb=$?; ./kolejka-observer run --memory 64M -- kolejka-alloc 8 > ok.json; echo ok=$?"],
		"files": {"kolejka-observer": null},
		"limits": {"memory": "256M", "cgroup_depth": 2, "time": "30s"},
		"stdout": "out", "stderr": "err",
		"collect": [{"glob": "*.json"}]
	}`), 0o644)

	before := reg.Count()
	e := workertest.NewEnv(t, rt)
	resultDir, res, err := runWithObserver(t, e, judge, sock)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(filepath.Join(resultDir, "out"))
	errOut, _ := os.ReadFile(filepath.Join(resultDir, "err"))
	if res.Status != spec.StatusOK {
		t.Fatalf("status %s, out %q, err %q", res.Status, out, errOut)
	}
	if !strings.Contains(string(out), "bomb=137") || !strings.Contains(string(out), "ok=0") {
		t.Fatalf("out %q, err %q: the nested memory limit did not act alone", out, errOut)
	}
	bomb, err := spec.ParseStats(mustRead(t, filepath.Join(resultDir, "bomb.json")), "bomb.json")
	if err != nil {
		t.Fatal(err)
	}
	if bomb.Memory.MaxUsage == nil || *bomb.Memory.MaxUsage > 16<<20 {
		t.Fatalf("nested session peak %v over its 16M limit", bomb.Memory.MaxUsage)
	}
	// The judge's own figures include its children's: the 8 MiB one.
	if *res.Stats.Memory.MaxUsage < 8<<20 {
		t.Fatalf("task peak %d does not include the nested session's", *res.Stats.Memory.MaxUsage)
	}
	if n := reg.Count(); n != before {
		t.Fatalf("%d sessions left open (had %d)", n, before)
	}
	e.AssertClean(t)
}

func mustRead(t *testing.T, p string) []byte {
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// runWithObserver runs a task with a worker that uses the daemon at sock.
func runWithObserver(t *testing.T, e *workertest.Env, taskDir, sock string) (string, *spec.Result, error) {
	w, err := worker.New(context.Background(), worker.Config{Temp: e.Temp, StateDir: e.State, CgroupRoot: e.CgroupRoot,
		InitPath: testenv.InitBinary(t), Observer: sock}, e.W.Runtime())
	if err != nil {
		t.Fatal(err)
	}
	resultDir := filepath.Join(t.TempDir(), "result")
	res, err := w.Execute(context.Background(), taskDir, resultDir, worker.Options{})
	return resultDir, res, err
}
