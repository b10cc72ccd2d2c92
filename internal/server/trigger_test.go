package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

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
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
