package hardening_test

// The node's side of correctness: a task cannot reach kolejka-init, which
// reports its end; a wedged init does not hang the worker; an observer
// daemon kept busy beside the tasks does not fail them.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/tests/hardening"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// busyCPUs keeps the machine's cores busy with shell loops until cleanup:
// the load under which races against kolejka-init were won.
func busyCPUs(t testing.TB, n int) {
	t.Helper()
	var cmds []*exec.Cmd
	for range n {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	t.Cleanup(func() {
		for _, cmd := range cmds {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
}

// nodes are the runc node and, where an engine answers, the docker one.
func nodes(t *testing.T) []*hostNode {
	out := []*hostNode{runcNode(t)}
	if exec.Command("docker", "info").Run() == nil {
		out = append(out, dockerNode(t))
	} else {
		testenv.RequireDocker(t)
	}
	return out
}

// TestCorrectnessNodeGrabInit: a task that goes for PID 1 from its first
// instruction, over and over, on a loaded machine, never gets it.
func TestCorrectnessNodeGrabInit(t *testing.T) {
	const runs = 15
	r := caseOf(t, hardening.Hostile, "H25", fmt.Sprintf("goes for kolejka-init (PID 1) from its first instruction for 200 ms: ptrace attach, /proc/1/mem for writing; %d runs per runtime with 3 busy loops on the node (runc, docker)", runs),
		"every attempt refused (EPERM/EACCES: init is not dumpable from before the task exists); OK, the report init sends is the task's; the node healthy after it")
	busyCPUs(t, 3)
	for _, n := range nodes(t) {
		t.Run(n.name, func(t *testing.T) {
			dir := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["kolejka-grab-init", "200"], "stdout": "out", "limits": {"time": "20s"}}`)
			var last string
			refused := 0
			for i := range runs {
				mark := fmt.Sprintf("H25-%s-%d-%s", n.name, i, randomHex(4))
				resultDir, res, _, err := n.run(t, markedCopy(t, dir, mark), mark)
				if res == nil {
					t.Fatalf("run %d: no result: %v", i, err)
				}
				out, _ := os.ReadFile(filepath.Join(resultDir, "out"))
				last = strings.TrimSpace(string(out))
				if res.Status != spec.StatusOK || !strings.HasPrefix(last, "refused") {
					t.Errorf("run %d: %s, the task printed %q", i, verdict(res), last)
					continue
				}
				refused++
			}
			r.Observe("%s: %d of %d runs refused every attempt (the last: %q)", n.name, refused, runs, last)
			r.Observe("%s", n.healthy(t, "H25-"+n.name))
		})
	}
}

// initOf finds the kolejka-init of the run marked mark, waiting for it: the
// parent of the task's process (init's own environment is not the task's).
func initOf(t testing.TB, mark string) int {
	t.Helper()
	var pid int
	gridtest.WaitFor(t, "the run's kolejka-init", 20*time.Second, func() bool {
		for _, p := range markedProcs(mark) {
			status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
			for _, line := range strings.Split(string(status), "\n") {
				if ppid, ok := strings.CutPrefix(line, "PPid:"); ok {
					parent, _ := strconv.Atoi(strings.TrimSpace(ppid))
					comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", parent))
					if strings.TrimSpace(string(comm)) == "kolejka-init" {
						pid = parent
						return true
					}
				}
			}
		}
		return false
	})
	return pid
}

// TestCorrectnessNodeInitStopped: kolejka-init wedged (stopped from
// outside, as a task that could reach it would stop it) while its task
// runs: the time limit still ends the run, and an interrupt (the worker's
// SIGTERM) still ends it at once.
func TestCorrectnessNodeInitStopped(t *testing.T) {
	r := caseOf(t, hardening.Fault, "F20", "kolejka-init stopped (SIGSTOP from the host) while its task sleeps: once under a 2 s time limit, once without a limit, interrupted after 1 s (runc, docker)",
		"the time limit holds: TLE within the limit and the 2 s grace for init's report; the interrupted run ends within the grace as SE (interrupted); the container is killed; the node healthy after it")
	for _, n := range nodes(t) {
		t.Run(n.name, func(t *testing.T) {
			for _, c := range []struct {
				name, limits string
				interrupt    bool
				want         spec.Status
			}{
				{"time limit", `"limits": {"time": "2s"}`, false, spec.StatusTLE},
				{"interrupt", `"limits": {}`, true, spec.StatusSE},
			} {
				mark := "F20-" + n.name + "-" + randomHex(4)
				dir := markedCopy(t, gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sleep", "60"], `+c.limits+`}`), mark)
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					pid := initOf(t, mark)
					if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
						t.Errorf("stopping init %d: %v", pid, err)
					}
					if c.interrupt {
						time.Sleep(time.Second) // the case under test: the task stays stopped a while, then is interrupted
						cancel()
					}
				}()
				began := time.Now()
				res, err := n.w.Execute(ctx, dir, filepath.Join(t.TempDir(), "result"), worker.Options{})
				took := time.Since(began)
				cancel()
				wg.Wait()
				if res == nil {
					t.Fatalf("%s: no result: %v", c.name, err)
				}
				r.Observe("%s, %s: %s after %v (%v)", n.name, c.name, verdict(res), took.Round(time.Millisecond), err)
				if res.Status != c.want {
					t.Errorf("%s: status %s, want %s", c.name, res.Status, c.want)
				}
				if took > 10*time.Second {
					t.Errorf("%s: the run took %v with init stopped", c.name, took)
				}
				r.Observe("%s", n.healthy(t, mark))
			}
		})
	}
}

// TestCorrectnessNodeBusyObserver: short tasks while kolejka-observer
// serves the worker and judges keep it busy (a loop of `kolejka-observer
// run -- true`): the daemon's reaper must not take a task's session (and
// cgroup) from under the worker when the task's processes end.
func TestCorrectnessNodeBusyObserver(t *testing.T) {
	bin := bins(t)
	r := caseOf(t, hardening.Fault, "F09", "short tasks (sleep 0.3: 40 on runc, 15 on docker) while a real kolejka-observer serves the worker and a loop of `kolejka-observer run -- true` keeps it busy",
		"every task OK with its figures: the daemon's reaper leaves an adopted session to the worker that adopted it; the node healthy after it")
	for _, n := range nodes(t) {
		t.Run(n.name, func(t *testing.T) {
			sock, _ := serveObserver(t, n, bin)
			judged := workertest.KeepBusy(t, sock)
			count := 40
			if n.name == "docker" {
				count = 15
			}
			task := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sleep", "0.3"], "limits": {"time": "20s"}}`)
			ok := 0
			var bad []string
			for i := range count {
				mark := fmt.Sprintf("F09-%s-%d-%s", n.name, i, randomHex(4))
				_, res, _, err := n.run(t, markedCopy(t, task, mark), mark)
				switch {
				case res == nil:
					bad = append(bad, fmt.Sprintf("no result: %v", err))
				case res.Status != spec.StatusOK || res.Stats.CPU.Usage == nil:
					bad = append(bad, fmt.Sprintf("%s (%v)", verdict(res), err))
				default:
					ok++
				}
			}
			r.Observe("%s: %d of %d OK beside %d judge sessions", n.name, ok, count, judged())
			for _, b := range bad {
				t.Error(b)
			}
			if judged() == 0 {
				t.Error("the observer was never kept busy: the case proves nothing")
			}
			r.Observe("%s", n.healthy(t, "F09-"+n.name))
		})
	}
}
