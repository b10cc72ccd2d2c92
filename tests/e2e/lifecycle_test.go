package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/spec"
)

// The task lifecycle on a real grid: a queued task cancelled never runs; a
// running one is killed on its node within a heartbeat and the node takes
// the next task; `kolejka-client execute` waiting on a cancelled task
// stops at once with its own exit code; a clone runs the same task again;
// `task ls` and `task show` say where each task is.
func TestGridLifecycle(t *testing.T) {
	const lease = 3 * time.Second // heartbeats every second
	g := newGrid(t, "--lease", "3s")
	ctx := context.Background()
	heartbeat := lease / 3
	if got, _ := spec.ParseTime(g.Alice.Settings().LeaseTime); got != lease {
		t.Fatalf("the server's lease is %v, want %v", got, lease)
	}
	cli := func(args ...string) (string, string) {
		t.Helper()
		out, errOut, code := g.KolejkaClient(ctx, args...)
		if code != 0 {
			t.Fatalf("kolejka-client %v: exit %d: %s", args, code, errOut)
		}
		return out, errOut
	}
	show := func(key string) map[string]any {
		t.Helper()
		out, _ := cli("task", "show", "--json", key)
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("task show --json: %v: %s", err, out)
		}
		return m
	}
	echo := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "cat in; echo run"], "files": {"in": {"path": "in"}},
		"limits": {"time": "10s"}, "stdout": "out"}`, "in", "the input\n")

	// A queued task cancelled before any node exists never runs.
	queued := g.Put(echo)
	if out, _ := cli("task", "cancel", queued); !strings.Contains(out, "cancelled (it was queued)") {
		t.Errorf("task cancel: %q", out)
	}
	g.startForeman("a", pin(0))
	first := g.Put(echo)
	if _, err := g.result(first, 30*time.Second); err != nil {
		t.Fatalf("a task after the cancelled one: %v", err)
	}
	if m := show(queued); m["state"] != "cancelled" || len(m["attempts"].([]any)) != 0 || m["node"] != "" {
		t.Errorf("the cancelled queued task after the node ran another: %v", m)
	}

	// A running task cancelled is killed within a heartbeat; the node (it
	// runs the exclusive task alone) then takes the next one.
	sleeper := g.Put(gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sleep", "1000"], "exclusive": true, "limits": {"time": "1200s"}}`))
	gridtest.WaitFor(t, "the sleeper running", 30*time.Second, func() bool { return processes("sleep 1000") > 0 })
	next := g.Put(echo)
	began := time.Now()
	if _, err := g.Alice.Cancel(ctx, sleeper); err != nil {
		t.Fatal(err)
	}
	gridtest.WaitFor(t, "the sleeper killed", lease+2*time.Second, func() bool { return processes("sleep 1000") == 0 })
	killed := time.Since(began)
	t.Logf("running task killed %v after the cancel (heartbeat every %v, lease %v)", killed, heartbeat, lease)
	if killed > heartbeat+time.Second {
		t.Errorf("killed %v after the cancel: more than a heartbeat (%v) and a second to kill", killed, heartbeat)
	}
	if _, err := g.result(next, 30*time.Second); err != nil {
		t.Fatalf("the next task after the cancelled exclusive one: %v", err)
	}
	if m := show(sleeper); m["state"] != "cancelled" || m["node"] != "a" || len(m["attempts"].([]any)) != 1 || m["status"] != "" {
		t.Errorf("the cancelled running task: %v", m)
	}
	if _, err := g.Alice.Result(ctx, sleeper, 0); !errors.Is(err, client.ErrCancelled) {
		t.Errorf("its result: %v", err)
	}

	// execute waiting on a task someone cancels stops at once, exit 9.
	type ran struct {
		errOut string
		code   int
		at     time.Time
	}
	exited := make(chan ran, 1)
	go func() {
		_, errOut, code := g.KolejkaClient(ctx, "execute", gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sleep", "1001"], "limits": {"time": "1200s"}}`),
			filepath.Join(t.TempDir(), "result"))
		exited <- ran{errOut, code, time.Now()}
	}()
	var waiting string
	gridtest.WaitFor(t, "execute's task running", 30*time.Second, func() bool {
		list, err := g.Alice.Tasks(ctx, client.TaskFilter{State: "running"})
		if err != nil || len(list.Tasks) != 1 {
			return false
		}
		waiting = list.Tasks[0].Key
		return true
	})
	began = time.Now()
	if _, err := g.Alice.Cancel(ctx, waiting); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-exited:
		t.Logf("execute exited %v after the cancel: %d %s", r.at.Sub(began), r.code, strings.TrimSpace(r.errOut))
		if r.code != 9 || !strings.Contains(r.errOut, "was cancelled") {
			t.Errorf("execute of a cancelled task: exit %d: %s; want 9 saying it was cancelled", r.code, r.errOut)
		}
		if d := r.at.Sub(began); d > heartbeat {
			t.Errorf("execute took %v to stop after the cancel", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("execute still waits 20 s after its task was cancelled")
	}
	gridtest.WaitFor(t, "execute's task killed", lease+2*time.Second, func() bool { return processes("sleep 1001") == 0 })

	// clone: the same task, its files by reference, a new key, run again.
	out, _ := cli("task", "clone", first)
	clone := strings.TrimSpace(out)
	if len(clone) != 32 || clone == first {
		t.Fatalf("task clone printed %q", out)
	}
	dir, err := g.result(clone, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "out")); string(data) != "the input\nrun\n" {
		t.Errorf("the clone's output %q", data)
	}
	m := show(clone)
	for _, k := range []string{"key", "state", "queue", "type", "node", "attempts", "status"} {
		if _, ok := m[k]; !ok {
			t.Errorf("task show --json has no %q", k)
		}
	}
	if m["state"] != "done" || m["status"] != "OK" || m["node"] != "a" || m["queue"] != "default" || m["finished"] == "" {
		t.Errorf("task show of the clone: %v", m)
	}

	// ls: newest first, each in its state.
	out, _ = cli("task", "ls", "--json")
	var list struct {
		Tasks []struct{ Key, State string } `json:"tasks"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ts := range list.Tasks {
		got = append(got, ts.Key[:6]+":"+ts.State)
	}
	want := []string{clone[:6] + ":done", waiting[:6] + ":cancelled", next[:6] + ":done", sleeper[:6] + ":cancelled", first[:6] + ":done", queued[:6] + ":cancelled"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("task ls: %v, want %v", got, want)
	}
	out, _ = cli("task", "ls", "--state", "cancelled", "--json")
	if strings.Count(out, `"key"`) != 3 {
		t.Errorf("task ls --state cancelled: %s", out)
	}
}
