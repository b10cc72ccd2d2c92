package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
)

// triggerShow reads a trigger (or schedule, path "schedule") and its
// firings.
func triggerShow(t testing.TB, c *tokenClient, path, name string) (map[string]any, []map[string]any) {
	t.Helper()
	a := mustOK(t, c.do("GET", "/"+path+"/"+name+"/?fires=100", nil))
	tr := a.json["trigger"].(map[string]any)
	var fires []map[string]any
	if fs, ok := tr["fires"].([]any); ok {
		for _, f := range fs {
			fires = append(fires, f.(map[string]any))
		}
	}
	return tr, fires
}

// A result trigger: alice's task in queue default ends OK; the trigger
// starts its type target with the result's files under trigger/ by
// reference, the key in KOLEJKA_TRIGGER_KEY and in the type's "trigger"
// parameter; a result the filter does not match (RE) starts nothing; a
// replayed result starts nothing more.
func TestResultTriggerStartsTypeWithFiles(t *testing.T) {
	e, alice, node := newWorkflowEnv(t)
	mustOK(t, alice.postJSON("/type/", map[string]any{"name": "report", "type": map[string]any{
		"image": "busybox:latest", "args": []string{"cat", "trigger/out.txt", "{trigger}"},
		"params": map[string]any{"trigger": map[string]any{}},
	}}))
	mustOK(t, alice.postJSON("/type/", map[string]any{"name": "compile", "type": simpleTask()}))
	mustOK(t, alice.postJSON("/trigger/", map[string]any{"name": "after", "kind": "result",
		"on":     map[string]any{"status": []string{"ok"}, "type": "compile"},
		"target": map[string]any{"type": "report"}}))
	compile := func() string {
		return mustOK(t, alice.postJSON("/type/compile/task/", map[string]any{})).json["task"].(map[string]any)["id"].(string)
	}
	src, bad := compile(), compile()
	plain := alice.submit(simpleTask(), nil)
	got := take(t, node)
	if len(got) != 3 {
		t.Fatalf("took %d tasks", len(got))
	}
	mustOK(t, finish(t, node, bad, "RE", nil))
	mustOK(t, finish(t, node, plain, "OK", nil))
	fa := finish(t, node, src, "OK", map[string][]byte{"out.txt": []byte("hello")})
	mustOK(t, fa)
	var fired []map[string]any
	waitFor(t, "the trigger fires", func() bool {
		_, fired = triggerShow(t, alice, "trigger", "after")
		return len(fired) == 1
	})
	f := fired[0]
	if f["state"] != "started" || f["started"] != "task" || f["fire"] != "result:"+src {
		t.Fatalf("firing %v", f)
	}
	tasks := take(t, node)
	if len(tasks) != 1 || tasks[0].key != f["key"] {
		t.Fatalf("queued after the firing: %+v", tasks)
	}
	d := tasks[0].desc
	resRef := fileRef(mustOK(t, alice.do("GET", "/task/result/"+src+"/", nil)).json["result"].(map[string]any), "out.txt")
	if ref := fileRef(d, "trigger/out.txt"); ref == "" || ref != resRef {
		t.Errorf("trigger/out.txt is %q, the result's file %q", ref, resRef)
	}
	if env, _ := d["environment"].(map[string]any); env["KOLEJKA_TRIGGER_KEY"] != src {
		t.Errorf("environment %v", d["environment"])
	}
	if args, _ := json.Marshal(d["args"]); !strings.Contains(string(args), src) {
		t.Errorf("args %s lack the trigger parameter %s", args, src)
	}
	// The same result again (a retrying node): no second firing.
	mustOK(t, finish(t, node, src, "OK", map[string][]byte{"out.txt": []byte("hello")}))
	// The fired task (type report) ends OK: not of type compile.
	mustOK(t, finish(t, node, tasks[0].key, "OK", nil))
	server.DispatchTriggers(e.srv)
	_, fired = triggerShow(t, alice, "trigger", "after")
	if len(fired) != 1 {
		t.Fatalf("firings after a replay and ends the filter does not match: %v", fired)
	}
}

// A put that would start itself is refused naming the loop: a result
// trigger on any end of alice's whose target is a task.
func TestTriggerLoopRefused(t *testing.T) {
	_, alice, _ := newWorkflowEnv(t)
	a := alice.postJSON("/trigger/", map[string]any{"name": "self", "kind": "result",
		"target": map[string]any{"task": simpleTask()}})
	if a.status() != "FAIL" || !strings.Contains(a.message(), "loop") || !strings.Contains(a.message(), "self → self") {
		t.Fatalf("a self-starting trigger: %v", a)
	}
	if n := len(mustOK(t, alice.do("GET", "/trigger/", nil)).json["triggers"].([]any)); n != 0 {
		t.Fatalf("%d triggers after a refusal", n)
	}
}

// A webhook: the trigger's scoped token fires it (and answers the key),
// a replay with the same Idempotency-Key answers the same key, the
// scoped token can do nothing else but read the settings, a wrong token
// is refused.
func TestWebhookScopedToken(t *testing.T) {
	e, alice, node := newWorkflowEnv(t)
	mustOK(t, alice.postJSON("/type/", map[string]any{"name": "build", "type": map[string]any{
		"image": "busybox:latest", "args": []string{"echo", "{rev}"},
		"params": map[string]any{"rev": map[string]any{}},
	}}))
	mustOK(t, alice.postJSON("/trigger/", map[string]any{"name": "hook", "kind": "request", "target": map[string]any{"type": "build"}}))
	tok, _, err := e.srv.NewScopedToken(t.Context(), "alice", "hook", 0)
	if err != nil {
		t.Fatal(err)
	}
	hook := &tokenClient{t: t, base: e.base, token: tok, hc: &http.Client{}}
	a := mustOK(t, hook.postJSON("/trigger/hook/", map[string]any{"rev": "abc123"}))
	key := a.json["key"].(string)
	got := take(t, node)
	if len(got) != 1 || got[0].key != key || !strings.Contains(strings.Join(toStrings(got[0].desc["args"]), " "), "abc123") {
		t.Fatalf("the webhook's task: %+v", got)
	}
	// The server's settings, which every client reads when it connects.
	if a := hook.do("GET", "/settings/", nil); a.code != 200 || a.status() != "OK" {
		t.Errorf("the scoped token cannot read the settings: %v", a)
	}
	if a := hook.do("GET", "/trigger/", nil); a.code != 403 {
		t.Errorf("the scoped token lists triggers: %v", a)
	}
	if a := hook.postJSON("/task/task/", simpleTask()); a.code != 403 {
		t.Errorf("the scoped token submits a task: %v", a)
	}
	// An unknown parameter: refused naming it, nothing recorded.
	if a := hook.postJSON("/trigger/hook/", map[string]any{"rev": "1", "nope": "x"}); a.status() != "FAIL" || !strings.Contains(a.message(), "nope") {
		t.Errorf("an unknown parameter: %v", a)
	}
	wrong := &tokenClient{t: t, base: e.base, token: "kt_" + strings.Repeat("0", 64), hc: &http.Client{}}
	if a := wrong.postJSON("/trigger/hook/", map[string]any{"rev": "x"}); a.code != 403 {
		t.Errorf("a wrong token: %v", a)
	}
	_, fired := triggerShow(t, alice, "trigger", "hook")
	if len(fired) != 1 {
		t.Fatalf("firings: %v", fired)
	}
	resp, err := http.Get(e.base + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `kolejka_trigger_firings_total{kind="request",state="started"} 1`) {
		t.Errorf("metrics lack the firing:\n%s", grepLines(string(body), "trigger"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// A schedule on the test's clock: every 10 s with overlap forbid. No tick
// before its time; a tick while the last task is queued is skipped; six
// missed ticks fire once (the latest) and the next is after now; overlap
// replace cancels the task still queued; a paused schedule does not fire
// and, resumed, does not fire the ticks it missed; a restart after an
// hour fires once.
func TestScheduleOnTheTestsClock(t *testing.T) {
	clk := newClock()
	e := newEnv(t, withClock(clk))
	e.standardUsers()
	alice, node := e.tok("alice"), e.tok("node")
	put := func(overlap string) {
		t.Helper()
		mustOK(t, alice.postJSON("/schedule/", map[string]any{"name": "tick", "every": "10s", "overlap": overlap,
			"target": map[string]any{"task": simpleTask()}}))
	}
	put("forbid")
	pass := func() []map[string]any {
		t.Helper()
		server.DispatchTriggers(e.srv)
		_, fires := triggerShow(t, alice, "schedule", "tick")
		return fires
	}
	if f := pass(); len(f) != 0 {
		t.Fatalf("fired before its first tick: %v", f)
	}
	clk.Advance(10 * time.Second)
	f := pass()
	if len(f) != 1 || f[0]["state"] != "started" || f[0]["status"] != "queued" {
		t.Fatalf("the first tick: %v", f)
	}
	first := f[0]["key"].(string)
	clk.Advance(10 * time.Second)
	if f = pass(); len(f) != 2 || f[0]["state"] != "skipped" || !strings.Contains(f[0]["reason"].(string), first) {
		t.Fatalf("a tick while the task is queued, overlap forbid: %v", f)
	}
	got := take(t, node)
	mustOK(t, finish(t, node, got[0].key, "OK", nil))
	// Six ticks missed: one firing, at the latest.
	clk.Advance(65 * time.Second)
	if f = pass(); len(f) != 3 || f[0]["state"] != "started" {
		t.Fatalf("after six missed ticks: %v", f)
	}
	info, _ := triggerShow(t, alice, "schedule", "tick")
	next, _ := time.Parse(time.RFC3339Nano, info["next_fire"].(string))
	if !next.After(clk.Now()) || next.After(clk.Now().Add(10*time.Second)) {
		t.Fatalf("next tick %v; now %v", next, clk.Now())
	}
	tick, _ := time.Parse(time.RFC3339Nano, f[0]["fire"].(string))
	if tick.After(clk.Now()) || clk.Now().Sub(tick) >= 10*time.Second {
		t.Fatalf("the missed ticks fired at %v, not the latest before %v", tick, clk.Now())
	}
	queued := f[0]["key"].(string)
	// Overlap replace: the queued task is cancelled, the new one queued.
	put("replace")
	clk.Advance(10 * time.Second)
	if f = pass(); len(f) != 4 || f[0]["state"] != "started" || f[1]["status"] != "cancelled" {
		t.Fatalf("overlap replace: %v", f)
	}
	if a := mustOK(t, alice.do("GET", "/task/task/"+queued+"/", nil)); a.json["state"] != "cancelled" {
		t.Fatalf("the replaced task: %v", a)
	}
	// Paused: no firing; resumed: not the ticks it missed.
	mustOK(t, alice.postJSON("/schedule/tick/pause/", nil))
	clk.Advance(time.Minute)
	if f = pass(); len(f) != 4 {
		t.Fatalf("a paused schedule fired: %v", f)
	}
	mustOK(t, alice.postJSON("/schedule/tick/resume/", nil))
	if f = pass(); len(f) != 4 {
		t.Fatalf("a resumed schedule fired the ticks it missed: %v", f)
	}
	clk.Advance(10 * time.Second)
	if f = pass(); len(f) != 5 {
		t.Fatalf("a resumed schedule's next tick: %v", f)
	}
	// Down for an hour: one firing at startup.
	e.stop()
	clk.Advance(time.Hour)
	e.start()
	alice = e.tok("alice")
	waitFor(t, "the firing of the hour's ticks at startup", func() bool {
		_, f = triggerShow(t, alice, "schedule", "tick")
		return len(f) >= 6
	})
	server.DispatchTriggers(e.srv)
	if _, f = triggerShow(t, alice, "schedule", "tick"); len(f) != 6 {
		t.Fatalf("after an hour down: %v", f)
	}
}

// A run trigger fires when a workflow run ends (ok), with the run's key
// in KOLEJKA_TRIGGER_KEY of its task; a run that fails does not match
// status ok. A workflow target from a result trigger binds the result's
// files into every step. The references a trigger's target uses cannot
// be deleted while it exists.
func TestRunTriggerAndWorkflowTarget(t *testing.T) {
	e, alice, node := newWorkflowEnv(t)
	ref := alice.upload([]byte("script\n"))
	mustOK(t, alice.postJSON("/trigger/", map[string]any{"name": "done", "kind": "run",
		"on":     map[string]any{"status": []string{"ok"}},
		"target": map[string]any{"task": map[string]any{"image": "busybox:latest", "args": []string{"sh", "s"}, "files": map[string]any{"s": map[string]any{"reference": ref}}}}}))
	if a := alice.do("DELETE", "/blob/reference/"+ref+"/", nil); a.status() == "OK" || !strings.Contains(a.String(), "done") {
		t.Fatalf("deleting a reference the trigger uses: %v", a)
	}
	okRun := putRun(t, alice, `{"tasks": {"a": {"task": "x"}}}`, map[string]any{"x": wfTask(alice, []string{"true"}, nil, nil)})
	badRun := putRun(t, alice, `{"tasks": {"a": {"task": "x"}}}`, map[string]any{"x": wfTask(alice, []string{"true"}, nil, nil)})
	_, okInst := runShow(t, alice, okRun)
	_, badInst := runShow(t, alice, badRun)
	if got := take(t, node); len(got) != 2 {
		t.Fatalf("queued: %v", got)
	}
	mustOK(t, finish(t, node, badInst["a"]["task_key"].(string), "RE", nil))
	mustOK(t, finish(t, node, okInst["a"]["task_key"].(string), "OK", nil))
	var fired []map[string]any
	waitFor(t, "the run trigger fires", func() bool {
		_, fired = triggerShow(t, alice, "trigger", "done")
		return len(fired) >= 1
	})
	server.DispatchTriggers(e.srv)
	if _, fired = triggerShow(t, alice, "trigger", "done"); len(fired) != 1 || fired[0]["fire"] != "run:"+okRun || fired[0]["state"] != "started" {
		t.Fatalf("firings: %v", fired)
	}
	got := take(t, node)
	if len(got) != 1 || got[0].key != fired[0]["key"] {
		t.Fatalf("queued after the run ended: %v", got)
	}
	if env, _ := got[0].desc["environment"].(map[string]any); env["KOLEJKA_TRIGGER_KEY"] != okRun {
		t.Errorf("environment %v", got[0].desc["environment"])
	}
	// A result trigger whose target is a workflow: every step gets the
	// result's files under trigger/.
	mustOK(t, alice.postJSON("/type/", map[string]any{"name": "gen", "type": simpleTask()}))
	wf := map[string]any{"workflow": json.RawMessage(`{"tasks": {"a": {"task": "x"}, "b": {"task": "x", "after": ["a"]}}}`),
		"tasks": map[string]any{"x": wfTask(alice, []string{"cat", "trigger/data"}, nil, nil)}}
	mustOK(t, alice.postJSON("/trigger/", map[string]any{"name": "flow", "kind": "result",
		"on": map[string]any{"type": "gen"}, "target": map[string]any{"workflow": wf}}))
	src := mustOK(t, alice.postJSON("/type/gen/task/", map[string]any{})).json["task"].(map[string]any)["id"].(string)
	take(t, node)
	mustOK(t, finish(t, node, src, "OK", map[string][]byte{"data": []byte("payload")}))
	waitFor(t, "the workflow target starts", func() bool {
		_, fired = triggerShow(t, alice, "trigger", "flow")
		return len(fired) == 1
	})
	run := fired[0]["key"].(string)
	if fired[0]["started"] != "workflow" {
		t.Fatalf("firing %v", fired[0])
	}
	resRef := fileRef(mustOK(t, alice.do("GET", "/task/result/"+src+"/", nil)).json["result"].(map[string]any), "data")
	for _, step := range []string{"a", "b"} {
		tasks := take(t, node)
		if len(tasks) != 1 || fileRef(tasks[0].desc, "trigger/data") != resRef {
			t.Fatalf("step %s of run %s: %v", step, run, tasks)
		}
		mustOK(t, finish(t, node, tasks[0].key, "OK", nil))
	}
	waitFor(t, "the fired run ends ok", func() bool {
		state, _ := runShow(t, alice, run)
		return state == "ok"
	})
}
