package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
)

// fired is one firing of `schedule show --json` or `trigger show --json`.
type fired struct {
	Fire    string `json:"fire"`
	State   string `json:"state"`
	Started string `json:"started"`
	Key     string `json:"key"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Time    string `json:"time"`
}

// shownTrigger is `schedule show --json` or `trigger show --json`.
type shownTrigger struct {
	Name   string  `json:"name"`
	Paused bool    `json:"paused"`
	Fires  []fired `json:"fires"`
}

// showTrigger runs `kolejka-client KIND show NAME --json` (kind is
// schedule or trigger); its firings newest first.
func (g *grid) showTrigger(ctx context.Context, kind, name string) shownTrigger {
	g.T.Helper()
	out, errOut, code := g.KolejkaClient(ctx, kind, "show", "--json", name)
	var s shownTrigger
	if code != 0 {
		g.T.Fatalf("%s show %s: exit %d: %s", kind, name, code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		g.T.Fatalf("%s show %s --json: %v: %s", kind, name, err, out)
	}
	return s
}

// taskShown is the part of `task show --json` these tests read.
type taskShown struct {
	State    string `json:"state"`
	Status   string `json:"status"`
	Finished string `json:"finished"`
	Attempts []struct {
		TimeAssign string `json:"time_assign"`
	} `json:"attempts"`
}

func (g *grid) taskShow(ctx context.Context, key string) taskShown {
	g.T.Helper()
	out, errOut, code := g.KolejkaClient(ctx, "task", "show", "--json", key)
	var s taskShown
	if code != 0 {
		g.T.Fatalf("task show %s: exit %d: %s", key, code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		g.T.Fatalf("task show %s --json: %v: %s", key, err, out)
	}
	return s
}

func parseTime(t *testing.T, what, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("%s: %q is not an RFC 3339 time: %v", what, s, err)
	}
	return v
}

// A schedule every 2 s with --overlap forbid, whose task sleeps 5 s, on a
// grid of real processes: the ticks while a task runs are skipped (naming
// the task still going), the started tasks never overlap (each is handed
// out after the one before it finished) and end OK; once paused, the
// schedule does not fire again.
func TestGridScheduleForbidOverlap(t *testing.T) {
	g := newGrid(t)
	g.StartForeman("a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	slow := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "limits": {"time": "30s", "memory": "64M"}, "args": ["sleep", "5"]}`)
	if out, errOut, code := g.KolejkaClient(ctx, "schedule", "put", "--every", "2s", "--overlap", "forbid", "--task", slow, "slow"); code != 0 || strings.TrimSpace(out) != "1" {
		t.Fatalf("schedule put: exit %d %q %s", code, out, errOut)
	}

	// Two tasks started and ended OK, and a tick skipped between them.
	var s shownTrigger
	done := func(f fired) bool { return f.State == "started" && f.Status == "OK" }
	gridtest.WaitFor(t, "two started firings ended OK", 40*time.Second, func() bool {
		s = g.showTrigger(ctx, "schedule", "slow")
		n := 0
		for _, f := range s.Fires {
			if done(f) {
				n++
			}
		}
		return n >= 2
	})
	fires := slices.Clone(s.Fires)
	slices.Reverse(fires) // oldest first
	var started []fired
	skipped := 0
	for _, f := range fires {
		switch f.State {
		case "started":
			if f.Started != "task" || f.Key == "" {
				t.Errorf("firing %+v: want a task with its key", f)
			}
			started = append(started, f)
		case "skipped":
			skipped++
			// It names the work still going: the last task started.
			if len(started) == 0 || !strings.Contains(f.Reason, started[len(started)-1].Key) {
				t.Errorf("skipped firing %+v does not name the task before it (%v)", f, started)
			}
		default:
			t.Errorf("firing %+v: want started or skipped", f)
		}
	}
	if skipped == 0 {
		t.Errorf("no tick was skipped while a 5 s task ran under a 2 s schedule: %+v", fires)
	}
	// Each started task ran alone: handed out after the one before it
	// finished. The last may still be queued or running.
	var prevFinish time.Time
	for i, f := range started {
		task := g.taskShow(ctx, f.Key)
		if f.Status == "OK" && task.Status != "OK" {
			t.Errorf("task %s: the firing says OK, the task %+v", f.Key, task)
		}
		if len(task.Attempts) == 0 {
			if i != len(started)-1 {
				t.Errorf("task %s of firing %s was never handed out, yet a later tick started another", f.Key, f.Fire)
			}
			continue
		}
		assigned := parseTime(t, f.Key+" time_assign", task.Attempts[0].TimeAssign)
		if i > 0 && !assigned.After(prevFinish) {
			t.Errorf("task %s was handed out at %v, before the task before it finished at %v: two ran at once", f.Key, assigned, prevFinish)
		}
		if task.Finished == "" {
			if i != len(started)-1 {
				t.Errorf("task %s has not finished, yet a later tick started another", f.Key)
			}
			continue
		}
		prevFinish = parseTime(t, f.Key+" finished", task.Finished)
		if !done(f) && i != len(started)-1 {
			t.Errorf("firing %+v: want its task ended OK", f)
		}
	}

	// Paused: no firing after it, over three ticks.
	if out, errOut, code := g.KolejkaClient(ctx, "schedule", "pause", "slow"); code != 0 || strings.TrimSpace(out) != "paused" {
		t.Fatalf("schedule pause: exit %d %q %s", code, out, errOut)
	}
	before := g.showTrigger(ctx, "schedule", "slow")
	if !before.Paused {
		t.Errorf("show after pause: paused is false")
	}
	for end := time.Now().Add(6500 * time.Millisecond); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if after := g.showTrigger(ctx, "schedule", "slow"); len(after.Fires) != len(before.Fires) {
			t.Fatalf("a paused schedule fired: %d firings, then %d: %+v", len(before.Fires), len(after.Fires), after.Fires[0])
		}
	}
}

// A result trigger chained into a workflow on a grid of real processes:
// a task of type compile ending OK starts a run whose step reads the
// result's file under trigger/ and the task's key in KOLEJKA_TRIGGER_KEY;
// a compile task ending RE, and another type's task ending OK, start
// nothing.
func TestGridTriggerResultChainsWorkflow(t *testing.T) {
	g := newGrid(t)
	g.StartForeman("a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := func(args ...string) string {
		t.Helper()
		out, errOut, code := g.KolejkaClient(ctx, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		return strings.TrimSpace(out)
	}
	compile := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "limits": {"time": "10s", "memory": "64M"},
		"args": ["sh", "-c", "echo built {word}; exit {code}"], "params": {"word": {}, "code": {"default": "0"}}, "stdout": "out.txt"}`)
	client("type", "put", "compile", compile)
	other := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "limits": {"time": "10s", "memory": "64M"},
		"args": ["sh", "-c", "echo other"], "stdout": "out.txt"}`)
	client("type", "put", "other", other)
	wf := writeFolder(t, map[string]string{
		"kolejka_workflow.json": `{"tasks": {"use": {"task": "use"}}}`,
		"use/kolejka_task.json": `{` + limits + `, "args": ["sh", "-c", "cat trigger/out.txt; echo \"key=$KOLEJKA_TRIGGER_KEY\""], "stdout": "out.txt"}`,
	})
	client("trigger", "put", "--on-result", "--type", "compile", "--status", "OK", "--workflow", wf, "chain")

	// The ones that do not match, first: their ends are dispatched before
	// the matching one's.
	failing := client("task", "put", "--type", "compile", "-p", "word=broken", "-p", "code=3")
	otherKey := client("task", "put", "--type", "other")
	for key, want := range map[string]string{failing: "RE", otherKey: "OK"} {
		dir, err := g.result(key, time.Minute)
		if err != nil {
			t.Fatalf("result of %s: %v", key, err)
		}
		var r struct {
			Status string `json:"status"`
		}
		if b, err := os.ReadFile(filepath.Join(dir, "kolejka_result.json")); err != nil || json.Unmarshal(b, &r) != nil || r.Status != want {
			t.Fatalf("task %s: status %q (%v), want %s", key, r.Status, err, want)
		}
	}
	source := client("task", "put", "--type", "compile", "-p", "word=fine")

	var s shownTrigger
	gridtest.WaitFor(t, "the chain's firing", time.Minute, func() bool {
		s = g.showTrigger(ctx, "trigger", "chain")
		return len(s.Fires) > 0
	})
	f := s.Fires[0]
	if len(s.Fires) != 1 || f.State != "started" || f.Started != "workflow" || f.Fire != "result:"+source || f.Key == "" {
		t.Fatalf("firings %+v: want one, a workflow started by %s's result (not by %s nor %s)", s.Fires, source, failing, otherKey)
	}
	out := filepath.Join(t.TempDir(), "out")
	if _, errOut, code := g.KolejkaClient(ctx, "workflow", "get", f.Key, out); code != 0 {
		t.Fatalf("workflow get %s: exit %d: %s", f.Key, code, errOut)
	}
	var summary map[string]any
	if b, err := os.ReadFile(filepath.Join(out, "kolejka_workflow_result.json")); err != nil || json.Unmarshal(b, &summary) != nil {
		t.Fatalf("kolejka_workflow_result.json: %v", err)
	}
	if summary["state"] != "ok" {
		t.Errorf("the run's state %v, want ok: %v", summary["state"], summary)
	}
	got, err := os.ReadFile(filepath.Join(out, "use", "out.txt"))
	if want := "built fine\nkey=" + source + "\n"; err != nil || string(got) != want {
		t.Errorf("the step's output %q (%v), want %q", got, err, want)
	}
	// Its end is shown on the firing.
	if s = g.showTrigger(ctx, "trigger", "chain"); len(s.Fires) != 1 || s.Fires[0].Status != "ok" {
		t.Errorf("firings after the run: %+v, want one, ok", s.Fires)
	}
}

// A webhook on a grid of real processes: a token from `kolejka-server
// token --trigger hook alice` fires it with `kolejka-client trigger fire`
// and a parameter, which the task it starts runs with; the same token can
// neither submit a task nor list triggers; a wrong token is refused; a
// repeat with the same --idempotency-key answers the same key and starts
// nothing.
func TestGridWebhookScopedToken(t *testing.T) {
	g := newGrid(t)
	g.StartForeman("a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	build := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "limits": {"time": "10s", "memory": "64M"},
		"args": ["sh", "-c", "echo rev={rev}"], "params": {"rev": {}}, "stdout": "out.txt"}`)
	if _, errOut, code := g.KolejkaClient(ctx, "type", "put", "build", build); code != 0 {
		t.Fatalf("type put: exit %d: %s", code, errOut)
	}
	if _, errOut, code := g.KolejkaClient(ctx, "trigger", "put", "--on-request", "--type", "build", "hook"); code != 0 {
		t.Fatalf("trigger put: exit %d: %s", code, errOut)
	}
	token := strings.TrimSpace(g.Admin("token", "--trigger", "hook", "alice"))
	// as runs kolejka-client with token (and nothing else) from its own
	// configuration file.
	as := func(token string, args ...string) (string, string, int) {
		t.Helper()
		conf := filepath.Join(t.TempDir(), "kolejka.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf("[client]\nserver = http://%s\ntoken = %s\n", g.Addr, token)), 0o600); err != nil {
			t.Fatal(err)
		}
		return gridtest.RunCommand(ctx, filepath.Join(g.Bin, "kolejka-client"), append([]string{"--config-file", conf}, args...)...)
	}
	stats, err := g.Alice.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}

	out, errOut, code := as(token, "trigger", "fire", "-p", "rev=abc", "hook")
	key := strings.TrimSpace(out)
	if code != 0 || key == "" {
		t.Fatalf("trigger fire with the scoped token: exit %d %q: %s", code, out, errOut)
	}
	dir, err := g.result(key, time.Minute)
	if err != nil {
		t.Fatalf("the webhook's task %s: %v", key, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "out.txt")); err != nil || string(b) != "rev=abc\n" {
		t.Errorf("the webhook's task printed %q (%v), want rev=abc", b, err)
	}

	// The scoped token does nothing else; a wrong token fires nothing.
	const exitLogin = 5 // kolejka-client's exit code of a refused login or a request not allowed
	task := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "limits": {"time": "10s", "memory": "64M"}, "args": ["true"]}`)
	for _, c := range []struct {
		token string
		args  []string
		want  string
	}{
		{token, []string{"task", "put", task}, "may only fire"},
		{token, []string{"trigger", "ls"}, "may only fire"},
		{token, []string{"trigger", "fire", "-p", "rev=x", "other"}, "may only fire"},
		{"kt_" + strings.Repeat("0", 64), []string{"trigger", "fire", "-p", "rev=x", "hook"}, "invalid bearer token"},
	} {
		out, errOut, code := as(c.token, c.args...)
		if code != exitLogin || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d %q %q, want %d naming %q", c.args, code, out, errOut, exitLogin, c.want)
		}
	}

	// The same Idempotency-Key twice: one task, the same key.
	first, errOut, code := as(token, "trigger", "fire", "-p", "rev=once", "--idempotency-key", "K1", "hook")
	if code != 0 || strings.TrimSpace(first) == "" {
		t.Fatalf("trigger fire --idempotency-key: exit %d: %s", code, errOut)
	}
	second, errOut, code := as(token, "trigger", "fire", "-p", "rev=once", "--idempotency-key", "K1", "hook")
	if code != 0 || second != first {
		t.Errorf("a repeat with the same Idempotency-Key: exit %d %q (%s), want %q", code, second, errOut, first)
	}
	if after, err := g.Alice.Stats(ctx); err != nil || after.TaskCount != stats.TaskCount+2 {
		t.Errorf("tasks: %d before, %+v after (%v); want two more (abc and once)", stats.TaskCount, after, err)
	}
	s := g.showTrigger(ctx, "trigger", "hook")
	if len(s.Fires) != 2 || s.Fires[0].Fire != "request:K1" || s.Fires[0].Key != strings.TrimSpace(first) {
		t.Errorf("firings %+v: want two, the newest request:K1 with key %s", s.Fires, first)
	}
	if dir, err := g.result(strings.TrimSpace(first), time.Minute); err != nil {
		t.Errorf("the idempotent firing's task: %v", err)
	} else if b, _ := os.ReadFile(filepath.Join(dir, "out.txt")); string(b) != "rev=once\n" {
		t.Errorf("the idempotent firing's task printed %q", b)
	}
}
