package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/host"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// A worker process killed mid-task (kill -9) leaves its run behind: the
// task still runs, its cgroups, scratch and registry entry remain. The next
// worker to start must sweep all of it.

func TestMain(m *testing.M) {
	testenv.RunHelpers(testenv.Helpers{"worker": runChild})
	os.Exit(m.Run())
}

// runChild executes one task as a separate worker process:
// spec is "task|result|temp|state|cgroup root|init".
func runChild(spec string) int {
	p := strings.Split(spec, "|")
	cg, err := cgroup.Host()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w, err := worker.New(context.Background(), worker.Config{Temp: p[2], StateDir: p[3], CgroupRoot: p[4], InitPath: p[5],
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}, host.New(cg))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := w.Execute(context.Background(), p[0], p[1], worker.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestKilledWorkerIsSweptByTheNext(t *testing.T) {
	e := newEnv(t)
	dir := writeTask(t, `{"image": "x", "args": ["sh", "-c", "sleep 1000 & sleep 1000"], "limits": {"workspace": "8M", "memory": "64M"}, "stdout": "out"}`, nil)
	parent := t.TempDir()
	resultDir := filepath.Join(parent, "result")
	// The user's own files beside the result folder, one named like ours.
	os.MkdirAll(filepath.Join(parent, ".kolejka-result-mine"), 0o755)
	os.WriteFile(filepath.Join(parent, ".kolejka-result-mine", "keep"), []byte("mine"), 0o644)
	os.WriteFile(filepath.Join(parent, "notes"), []byte("mine"), 0o644)
	child := testenv.StartHelper(t, "worker", strings.Join([]string{dir, resultDir, e.Temp, e.State, e.CgroupRoot, testenv.InitBinary(t)}, "|"), nil)
	// Wait until the task runs: its cgroup holds the two sleeps.
	var pids []int
	testenv.WaitFor(t, 20*time.Second, "the task starts (its cgroup holds the two sleeps)", func() bool {
		pids = workertest.GroupPids(e.CgroupRoot, "*")
		return len(pids) >= 3
	})
	child.Kill()

	// What the dead worker left.
	if entries, _ := os.ReadDir(e.Temp); len(entries) == 0 {
		t.Fatal("expected the killed worker's scratch to remain (the test would prove nothing)")
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) != nil {
			t.Fatalf("task process %d died with its worker (the test would prove nothing)", pid)
		}
	}
	stages, _ := filepath.Glob(filepath.Join(parent, ".kolejka-result-[0-9a-f]*"))
	if len(stages) != 1 {
		t.Fatalf("expected the killed worker's unfinished result folder beside the result, found %v (the test would prove nothing)", stages)
	}

	// A new worker on the same folders sweeps on start.
	cg, _ := cgroup.Host()
	if _, err := worker.New(context.Background(), worker.Config{Temp: e.Temp, StateDir: e.State, CgroupRoot: e.CgroupRoot,
		InitPath: testenv.InitBinary(t)}, host.New(cg)); err != nil {
		t.Fatal(err)
	}
	// The sweep has killed the group and seen it empty; a killed process
	// leaves its cgroup in do_exit before it becomes a zombie, so under
	// load it may still be on its way out for a moment. A survivor would
	// sleep for 1000 s.
	for _, pid := range pids {
		testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("task process %d to die in the sweep", pid), func() bool {
			if syscall.Kill(pid, 0) != nil {
				return true
			}
			data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			return strings.Contains(string(data), ") Z ")
		})
	}
	e.AssertClean(t)
	if _, err := os.Stat(resultDir); err == nil {
		t.Error("a result appeared for a run whose worker was killed")
	}
	if _, err := os.Stat(stages[0]); err == nil {
		t.Errorf("the dead run's unfinished result folder %s survived the sweep", stages[0])
	}
	if data, _ := os.ReadFile(filepath.Join(parent, ".kolejka-result-mine", "keep")); string(data) != "mine" {
		t.Error("the sweep touched the user's folder named like a result stage")
	}
	if data, _ := os.ReadFile(filepath.Join(parent, "notes")); string(data) != "mine" {
		t.Error("the sweep touched the user's file beside the result folder")
	}
}
