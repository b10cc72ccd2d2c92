package hardening_test

// Schedules, triggers and webhooks through the server's HTTP API
// (/schedule/, /trigger/, extension "triggers"), over real HTTP to a real
// server on a real SQLite file. A bad put or a bad webhook request is
// refused naming the field, and nothing changes — every row of every table
// (no trigger, no firing, no task), the blob files and the temp files are
// the same before and after. The hostile rows drive tasks to their results
// as a node does: a loop of triggers the put could not see stops at its
// depth, a replayed result or request starts nothing more, and a flood of
// one request starts one task.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/tests/hardening"
)

// triggerServer is an apiServer with queues qa, qb and qc and alice's types
// "build" (a required parameter rev), "toqa", "toqb" and "toqc" (tasks
// into that queue).
func triggerServer(t *testing.T) *apiServer {
	t.Helper()
	s := newAPIServer(t, nil)
	for _, q := range []string{"qa", "qb", "qc"} {
		if err := s.srv.AddQueue(context.Background(), server.Queue{Name: q}); err != nil {
			t.Fatal(err)
		}
	}
	alice := s.bearer("alice")
	putType(t, alice, "build", `{`+typeBody+`, "args": ["echo", "{rev}"], "params": {"rev": {}}}`)
	for _, q := range []string{"qa", "qb", "qc"} {
		putType(t, alice, "to"+q, `{`+typeBody+`, "args": ["true"], "queue": "`+q+`"}`)
	}
	return s
}

// putType puts (the next version of) c's private type name.
func putType(t testing.TB, c *apiClient, name, typ string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"name": name, "public": false, "type": json.RawMessage(typ)})
	c.mustPost(t, "/type/", string(body))
}

// putTrigger posts a put (a JSON object) under /schedule/ or /trigger/.
func putTrigger(t testing.TB, c *apiClient, path, put string) answer {
	t.Helper()
	return c.do(t, "POST", "/"+path+"/", []byte(put))
}

// fires reads the firings of c's trigger name, newest first.
func fires(t testing.TB, c *apiClient, name string) []map[string]any {
	t.Helper()
	a := c.do(t, "GET", "/trigger/"+name+"/?fires=1000", nil)
	if a.status() != "OK" {
		t.Fatalf("GET /trigger/%s/: %v", name, a)
	}
	var out []map[string]any
	tr := a.json["trigger"].(map[string]any)
	if fs, ok := tr["fires"].([]any); ok {
		for _, f := range fs {
			out = append(out, f.(map[string]any))
		}
	}
	return out
}

func TestBadInputTriggerServer(t *testing.T) {
	t.Parallel()
	s := triggerServer(t)
	alice, bob := s.bearer("alice"), s.bearer("bob")
	task := `{"task": {` + typeBody + `, "args": ["true"]}}`
	bobRef, _ := bob.upload(t, []byte("bob's file\n"))
	aliceRef, _ := alice.upload(t, []byte("alice's file\n"))
	// Alice's schedule "nightly" and request trigger "hook" (type build):
	// names the rows below collide with, and the webhook's target.
	if a := putTrigger(t, alice, "schedule", `{"name": "nightly", "cron": "0 3 * * *", "target": `+task+`}`); a.status() != "OK" {
		t.Fatalf("schedule put: %v", a)
	}
	if a := putTrigger(t, alice, "trigger", `{"name": "hook", "kind": "request", "target": {"type": "build"}}`); a.status() != "OK" {
		t.Fatalf("trigger put: %v", a)
	}
	schedule := func(put string) func() answer {
		return func() answer { return putTrigger(t, alice, "schedule", put) }
	}
	trig := func(put string) func() answer {
		return func() answer { return putTrigger(t, alice, "trigger", put) }
	}

	t.Run("BG01", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG01", "trigger (server): a schedule whose cron expression is not one (61 * * * *, 0 0 30 2 *, @often)",
			"FAIL naming cron and the expression; nothing stored")
		unchanged(t, s, r, schedule(`{"name": "s", "cron": "61 * * * *", "target": `+task+`}`), 200, "FAIL", []string{"cron:", `"61 * * * *"`})
		unchanged(t, s, r, schedule(`{"name": "s", "cron": "0 0 30 2 *", "target": `+task+`}`), 200, "FAIL", []string{"cron:", "never fires"})
		unchanged(t, s, r, schedule(`{"name": "s", "cron": "@often", "target": `+task+`}`), 200, "FAIL", []string{"cron:", "not a descriptor"})
	})
	t.Run("BG02", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG02", "trigger (server): a six-field cron (seconds), @every 5m, a zone prefix (CRON_TZ=…) in cron",
			"FAIL naming cron and what to give instead; nothing stored")
		unchanged(t, s, r, schedule(`{"name": "s", "cron": "0 */5 * * * *", "target": `+task+`}`), 200, "FAIL", []string{"cron:", "six fields"})
		unchanged(t, s, r, schedule(`{"name": "s", "cron": "@every 5m", "target": `+task+`}`), 200, "FAIL", []string{"cron:", "@every", "every"})
		unchanged(t, s, r, schedule(`{"name": "s", "cron": "CRON_TZ=Europe/Warsaw 0 3 * * *", "target": `+task+`}`), 200, "FAIL", []string{"cron:", "tz"})
	})
	t.Run("BG03", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG03", "trigger (server): a schedule in an unknown time zone (Mars/Olympus), a zone on an every",
			`FAIL naming tz: unknown time zone "Mars/Olympus"; nothing stored`)
		unchanged(t, s, r, schedule(`{"name": "s", "cron": "0 3 * * *", "tz": "Mars/Olympus", "target": `+task+`}`), 200, "FAIL",
			[]string{`tz: unknown time zone "Mars/Olympus"`})
		unchanged(t, s, r, schedule(`{"name": "s", "every": "1H", "tz": "UTC", "target": `+task+`}`), 200, "FAIL", []string{"tz:", "cron"})
	})
	t.Run("BG04", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG04", "trigger (server): a schedule with both cron and every, with neither",
			"FAIL naming cron, every; nothing stored")
		unchanged(t, s, r, schedule(`{"name": "s", "cron": "0 3 * * *", "every": "1H", "target": `+task+`}`), 200, "FAIL", []string{"cron, every", "not both"})
		unchanged(t, s, r, schedule(`{"name": "s", "target": `+task+`}`), 200, "FAIL", []string{"cron, every", "needs one"})
	})
	t.Run("BG05", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG05", "trigger (server): a schedule with overlap \"queue\"",
			"FAIL naming overlap and the policies; nothing stored")
		unchanged(t, s, r, schedule(`{"name": "s", "every": "1H", "overlap": "queue", "target": `+task+`}`), 200, "FAIL",
			[]string{"overlap:", `"queue"`, "allow", "forbid", "replace"})
	})
	t.Run("BG06", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG06", "trigger (server): a schedule every 0.5s, every 0, every \"soon\"",
			"FAIL naming every and the shortest interval (1s) or why it is not a time; nothing stored")
		unchanged(t, s, r, schedule(`{"name": "s", "every": "0.5s", "target": `+task+`}`), 200, "FAIL", []string{"every:", "shorter than"})
		unchanged(t, s, r, schedule(`{"name": "s", "every": "0", "target": `+task+`}`), 200, "FAIL", []string{"every:"})
		unchanged(t, s, r, schedule(`{"name": "s", "every": "soon", "target": `+task+`}`), 200, "FAIL", []string{"every:", "soon"})
	})
	t.Run("BG07", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG07", "trigger (server): a schedule or trigger whose name is not one (../x, 65 characters, empty)",
			"FAIL naming name and why; nothing stored")
		unchanged(t, s, r, schedule(`{"name": "../x", "every": "1H", "target": `+task+`}`), 200, "FAIL", []string{"name:", `"../x"`})
		unchanged(t, s, r, trig(`{"name": "`+strings.Repeat("n", 65)+`", "kind": "request", "target": `+task+`}`), 200, "FAIL", []string{"name:"})
		unchanged(t, s, r, trig(`{"name": "", "kind": "request", "target": `+task+`}`), 200, "FAIL", []string{"name:"})
	})
	t.Run("BG08", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG08", "trigger (server): a result trigger on status XX, a run trigger on status OKAY",
			"FAIL naming on.status[i], the value and the statuses of its kind; nothing stored")
		unchanged(t, s, r, trig(`{"name": "t", "kind": "result", "on": {"queue": "qa", "status": ["XX"]}, "target": `+task+`}`), 200, "FAIL",
			[]string{"on.status[0]", `"XX"`, "TLE"})
		unchanged(t, s, r, trig(`{"name": "t", "kind": "run", "on": {"status": ["ok", "OKAY"]}, "target": `+task+`}`), 200, "FAIL",
			[]string{"on.status[1]", `"OKAY"`, "cancelled"})
	})
	t.Run("BG09", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG09", "trigger (server): a run trigger on a queue, on a type; a request trigger with on",
			"FAIL naming on.queue, on.type, on; nothing stored")
		unchanged(t, s, r, trig(`{"name": "t", "kind": "run", "on": {"queue": "qa"}, "target": `+task+`}`), 200, "FAIL", []string{"on.queue:", "no queue"})
		unchanged(t, s, r, trig(`{"name": "t", "kind": "run", "on": {"type": "build"}, "target": `+task+`}`), 200, "FAIL", []string{"on.type:"})
		unchanged(t, s, r, trig(`{"name": "t", "kind": "request", "on": {"status": ["OK"]}, "target": `+task+`}`), 200, "FAIL", []string{"on:", "no task"})
	})
	t.Run("BG10", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG10", "trigger (server): a trigger with a schedule's field (cron, every, tz, overlap); a schedule put under /trigger/",
			"FAIL naming the field (a trigger has no schedule) or kind; nothing stored")
		for field, v := range map[string]string{"cron": "0 3 * * *", "every": "1H", "tz": "UTC", "overlap": "forbid"} {
			unchanged(t, s, r, trig(`{"name": "t", "kind": "request", "`+field+`": "`+v+`", "target": `+task+`}`), 200, "FAIL",
				[]string{field + ": a request trigger has no schedule"})
		}
		unchanged(t, s, r, trig(`{"name": "t", "kind": "schedule", "every": "1H", "target": `+task+`}`), 200, "FAIL", []string{"kind:", "/schedule/"})
	})
	t.Run("BG11", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG11", "trigger (server): a target that does not validate: a type that does not exist, a task with memory 0, two targets, none",
			"FAIL naming target.type, limits.memory, target (exactly one); nothing stored")
		unchanged(t, s, r, trig(`{"name": "t", "kind": "request", "target": {"type": "nosuch"}}`), 200, "FAIL", []string{"target.type", `"nosuch"`})
		unchanged(t, s, r, trig(`{"name": "t", "kind": "request", "target": {"task": {"image": "kolejka-test:latest", "args": ["true"], "limits": {"time": "10s", "memory": "0"}}}}`),
			200, "FAIL", []string{"limits.memory"})
		unchanged(t, s, r, trig(`{"name": "t", "kind": "request", "target": {"type": "toqa", "task": {`+typeBody+`, "args": ["true"]}}}`), 200, "FAIL",
			[]string{"target:", "exactly one", "gives 2"})
		unchanged(t, s, r, trig(`{"name": "t", "kind": "request", "target": {}}`), 200, "FAIL", []string{"target:", "gives 0"})
	})
	t.Run("BG12", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG12", "trigger (server): another user's reference among a target's files (a task's, a type's file parameter)",
			"FAIL naming the file, the reference and whose it is; nothing stored")
		unchanged(t, s, r, trig(`{"name": "t", "kind": "request", "target": {"task": {`+typeBody+`, "args": ["true"], "files": {"f": {"reference": "`+bobRef+`"}}}}}`),
			200, "FAIL", []string{`target.files["f"].reference`, bobRef, "belongs to another user"})
		putType(t, alice, "cat", `{`+typeBody+`, "args": ["cat", "{src}"], "params": {"src": {"file": true}}}`)
		unchanged(t, s, r, trig(`{"name": "t", "kind": "request", "target": {"type": "cat", "files": {"src": {"reference": "`+bobRef+`"}}}}`),
			200, "FAIL", []string{"target.files[", "src", bobRef, "belongs to another user"})
	})
	t.Run("BG13", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG13", "trigger (server): a result trigger whose target task has its own file under trigger/ (where the result's files go)",
			`FAIL naming files["trigger/…"]; nothing stored`)
		unchanged(t, s, r, trig(`{"name": "t", "kind": "result", "on": {"queue": "qa"}, "target": {"task": {`+typeBody+`, "args": ["true"], "files": {"trigger/out.txt": {"reference": "`+aliceRef+`"}}}}}`),
			200, "FAIL", []string{`files["trigger/out.txt"]`, "trigger/"})
	})
	t.Run("BG14", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG14", "trigger (server): a trigger named as the caller's schedule, a schedule named as the caller's trigger",
			"FAIL naming name: and what the name is already; the schedule and trigger unchanged")
		unchanged(t, s, r, trig(`{"name": "nightly", "kind": "request", "target": `+task+`}`), 200, "FAIL", []string{"name:", `"nightly"`, "schedule"})
		unchanged(t, s, r, schedule(`{"name": "hook", "every": "1H", "target": `+task+`}`), 200, "FAIL", []string{"name:", `"hook"`, "request trigger"})
	})
	t.Run("BG15", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG15", "trigger (server): a result trigger on any end of the caller's whose target is a task (it would fire itself)",
			"FAIL naming the loop self → self; nothing stored")
		unchanged(t, s, r, trig(`{"name": "self", "kind": "result", "target": `+task+`}`), 200, "FAIL", []string{"on:", "loop", "self → self"})
	})
	t.Run("BG16", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG16", "trigger (server): two result triggers in a loop: la on qa starts a task in qb, then lb on qb starts one in qa",
			"la is stored; lb is refused naming the loop la → lb → la; nothing more stored, la unchanged")
		if a := putTrigger(t, alice, "trigger", `{"name": "la", "kind": "result", "on": {"queue": "qa"}, "target": {"type": "toqb"}}`); a.status() != "OK" {
			t.Fatalf("la: %v", a)
		}
		unchanged(t, s, r, trig(`{"name": "lb", "kind": "result", "on": {"queue": "qb"}, "target": {"type": "toqa"}}`), 200, "FAIL",
			[]string{"on:", "trigger lb would start itself in a loop: la → lb → la"})
		// A status filter does not break it.
		unchanged(t, s, r, trig(`{"name": "lb", "kind": "result", "on": {"queue": "qb", "status": ["RE"]}, "target": {"type": "toqa"}}`), 200, "FAIL",
			[]string{"la → lb → la"})
		if info := alice.do(t, "GET", "/trigger/la/", nil); info.status() != "OK" || info.json["trigger"].(map[string]any)["version"] != 1.0 {
			t.Errorf("la after the refusal: %v", info)
		}
	})

	// The webhook: alice's request trigger hook (type build, rev required)
	// fired with its scoped token.
	hookToken, _, err := s.srv.NewScopedToken(context.Background(), "alice", "hook", 0)
	if err != nil {
		t.Fatal(err)
	}
	hook := &apiClient{s: s, token: hookToken, hc: &http.Client{}}
	if a := putTrigger(t, alice, "trigger", `{"name": "held", "kind": "request", "target": {"type": "build"}}`); a.status() != "OK" {
		t.Fatalf("held: %v", a)
	}
	alice.mustPost(t, "/trigger/held/pause/", "")
	if a := putTrigger(t, alice, "trigger", `{"name": "onres", "kind": "result", "on": {"queue": "qc"}, "target": {"type": "toqa"}}`); a.status() != "OK" {
		t.Fatalf("onres: %v", a)
	}
	fire := func(c *apiClient, name, body string) func() answer {
		return func() answer { return c.do(t, "POST", "/trigger/"+name+"/", []byte(body)) }
	}

	t.Run("BG17", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG17", "webhook (server): a request with an unknown parameter, without a required one",
			"FAIL naming the parameter; no firing recorded, no task")
		unchanged(t, s, r, fire(hook, "hook", `{"rev": "1", "nope": "x"}`), 200, "FAIL", []string{"nope"})
		unchanged(t, s, r, fire(hook, "hook", `{}`), 200, "FAIL", []string{"rev"})
	})
	t.Run("BG18", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG18", "webhook (server): a body that is not a JSON object of parameters ([1], \"x\", {\"rev\": {}}, {\"rev\": \"1\"} x)",
			"FAIL naming the body or params[\"rev\"]; no firing recorded")
		for _, body := range []string{`[1]`, `"x"`, `{"rev": "1"} x`} {
			unchanged(t, s, r, fire(hook, "hook", body), 200, "FAIL", []string{"webhook:", "not a JSON object"})
		}
		unchanged(t, s, r, fire(hook, "hook", `{"rev": {"a": 1}}`), 200, "FAIL", []string{`params["rev"]`})
	})
	t.Run("BG19", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG19", "webhook (server): a result trigger's webhook; a schedule's name at /trigger/NAME/",
			"FAIL: the trigger fires on the end of a task, not on requests; 404 for the schedule; no firing recorded")
		unchanged(t, s, r, fire(alice, "onres", `{}`), 200, "FAIL", []string{"onres", "not on requests"})
		unchanged(t, s, r, fire(alice, "nightly", `{}`), 404, "", nil)
	})
	t.Run("BG20", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG20", "webhook (server): a paused trigger's webhook",
			"FAIL naming the trigger as paused; no firing recorded")
		unchanged(t, s, r, fire(alice, "held", `{"rev": "1"}`), 200, "FAIL", []string{"held", "paused"})
	})
	t.Run("BG21", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG21", "webhook (server): the scoped token of hook used to list and read triggers, submit a task, fire another trigger, fire hook as ?owner=alice",
			"403 each; nothing changed")
		for _, send := range []func() answer{
			func() answer { return hook.do(t, "GET", "/trigger/", nil) },
			func() answer { return hook.do(t, "GET", "/trigger/hook/", nil) },
			func() answer { return hook.do(t, "POST", "/task/task/", []byte(`{`+typeBody+`, "args": ["true"]}`)) },
			fire(hook, "held", `{"rev": "1"}`),
			fire(hook, "onres", `{}`),
			func() answer { return hook.do(t, "POST", "/trigger/hook/pause/", nil) },
			func() answer { return hook.do(t, "POST", "/trigger/hook/?owner=alice", []byte(`{"rev": "1"}`)) },
			func() answer { return hook.do(t, "POST", "/blob/reference/", []byte("x")) },
		} {
			unchanged(t, s, r, send, 403, "", nil)
		}
	})
	t.Run("BG22", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BG22", "webhook (server): a wrong token; bob's token at alice's hook",
			"403 for the wrong token; 404 for bob (alice's triggers are not his); no firing recorded")
		wrong := &apiClient{s: s, token: "kt_" + strings.Repeat("0", 64), hc: &http.Client{}}
		unchanged(t, s, r, fire(wrong, "hook", `{"rev": "1"}`), 403, "", nil)
		unchanged(t, s, r, fire(bob, "hook", `{"rev": "1"}`), 404, "", nil)
	})
}

// node is a processor driving tasks through the API: it takes what waits
// in queues qa, qb, qc (waiting up to wait for one) and posts results.
type node struct {
	t *testing.T
	c *apiClient
}

func (n node) take(wait string) []string {
	n.t.Helper()
	a := n.c.mustPost(n.t, "/queue/dequeue/", `{"concurency": 100, "limits": {}, "tags": [], "queues": ["qa", "qb", "qc", "default"], "wait": "`+wait+`"}`)
	var keys []string
	for _, x := range a.json["tasks"].([]any) {
		keys = append(keys, x.(map[string]any)["id"].(string))
	}
	return keys
}

func (n node) finish(key, status string) answer {
	n.t.Helper()
	code := 0
	if status != "OK" {
		code = 1
	}
	body, _ := json.Marshal(map[string]any{"id": key, "result": code, "status": status})
	return n.c.do(n.t, "POST", "/task/result/", body)
}

// waitFires waits (up to 30 s) until c's trigger name has n firings.
func waitFires(t *testing.T, c *apiClient, name string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f := fires(t, c, name)
		if len(f) >= n || time.Now().After(deadline) {
			return f
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// submit submits alice's task into queue q and returns its key.
func submit(t testing.TB, c *apiClient, q string) string {
	t.Helper()
	a := c.mustPost(t, "/task/task/", `{`+typeBody+`, "args": ["true"], "queue": "`+q+`"}`)
	return a.json["task"].(map[string]any)["id"].(string)
}

func TestHostileTriggerServer(t *testing.T) {
	t.Parallel()

	t.Run("BG23", func(t *testing.T) {
		r := caseOf(t, hardening.Hostile, "BG23", "trigger (server): a loop the put could not see: la (qa → type tob) and lb (qb → type toc), then toc's next version goes to qa; a node drives every task to OK",
			"the chain stops: a firing recorded as refused naming the chain of 16; at most 17 tasks; the node and the server work on")
		t.Parallel()
		s := triggerServer(t)
		alice, n := s.bearer("alice"), node{t, s.bearer("node")}
		putType(t, alice, "tob", `{`+typeBody+`, "args": ["true"], "queue": "qb"}`)
		putType(t, alice, "toc", `{`+typeBody+`, "args": ["true"], "queue": "qc"}`)
		for _, put := range []string{
			`{"name": "la", "kind": "result", "on": {"queue": "qa"}, "target": {"type": "tob"}}`,
			`{"name": "lb", "kind": "result", "on": {"queue": "qb"}, "target": {"type": "toc"}}`,
		} {
			if a := putTrigger(t, alice, "trigger", put); a.status() != "OK" {
				t.Fatalf("%s: %v", put, a)
			}
		}
		putType(t, alice, "toc", `{`+typeBody+`, "args": ["true"], "queue": "qa"}`)
		r.Observe("la and lb put (no loop then); type toc now goes to qa")
		first := submit(t, alice, "qa")
		tasks0 := s.state(t).rows["tasks"]
		ended := 0
		for range 40 {
			keys := n.take("3s")
			if len(keys) == 0 {
				break
			}
			for _, k := range keys {
				if a := n.finish(k, "OK"); a.status() != "OK" {
					t.Fatalf("result of %s: %v", k, a)
				}
				ended++
			}
		}
		// The last task's end is dispatched after its result: wait for its
		// firing, the refused one.
		var refused map[string]any
		deadline := time.Now().Add(30 * time.Second)
		for refused == nil && time.Now().Before(deadline) {
			for _, name := range []string{"la", "lb"} {
				for _, f := range fires(t, alice, name) {
					if f["state"] == "refused" {
						refused = f
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		made := s.state(t).rows["tasks"] - tasks0 + 1
		r.Observe("first task %s; %d tasks made in the chain, %d ended by the node", first, made, ended)
		if refused == nil {
			t.Fatalf("no refused firing after %d tasks", made)
		}
		r.Observe("refused firing: %v", refused)
		checkFragments(t, fmt.Sprint(refused["reason"]), []string{"chain of 16 firings", "at most 16", "loop"})
		if refused["key"] != nil && refused["key"] != "" {
			t.Errorf("the refused firing started %v", refused["key"])
		}
		if made < 17 || made > 20 {
			t.Errorf("%d tasks in the chain, want 17 (the first and 16 fired)", made)
		}
		// Nothing more is queued; the node and the server work on.
		if keys := n.take("0"); len(keys) != 0 {
			t.Errorf("tasks queued after the refusal: %v", keys)
		}
		plain := submit(t, alice, "default")
		if keys := n.take("5s"); len(keys) != 1 || keys[0] != plain {
			t.Fatalf("the next task: %v, want %s", keys, plain)
		}
		if a := n.finish(plain, "OK"); a.status() != "OK" {
			t.Fatalf("the next task's result: %v", a)
		}
		r.Observe("the next task %s ran to OK through the same node", plain)
	})

	t.Run("BG24", func(t *testing.T) {
		r := caseOf(t, hardening.Hostile, "BG24", "trigger (server): a node posts the same result twice (a retry) for a task a result trigger fires on",
			"one firing for the task, one task started; the replay starts nothing")
		t.Parallel()
		s := triggerServer(t)
		alice, n := s.bearer("alice"), node{t, s.bearer("node")}
		if a := putTrigger(t, alice, "trigger", `{"name": "after", "kind": "result", "on": {"queue": "qa"}, "target": {"type": "toqc"}}`); a.status() != "OK" {
			t.Fatalf("after: %v", a)
		}
		src := submit(t, alice, "qa")
		if keys := n.take("5s"); len(keys) != 1 || keys[0] != src {
			t.Fatalf("took %v, want %s", keys, src)
		}
		n.finish(src, "OK")
		waitFires(t, alice, "after", 1)
		again := n.finish(src, "OK")
		r.Observe("the replayed result: %v", again)
		// A second task's end is dispatched after the replay's (events in
		// order): once its firing is there, the replay's would be too.
		barrier := submit(t, alice, "qa")
		var fired []string
		for _, k := range n.take("5s") {
			if k != barrier {
				fired = append(fired, k)
			}
			n.finish(k, "OK")
		}
		f := waitFires(t, alice, "after", 2)
		count := map[string]int{}
		for _, x := range f {
			count[fmt.Sprint(x["fire"])]++
		}
		r.Observe("firings: %v; tasks the first firing started: %v", count, fired)
		if count["result:"+src] != 1 || count["result:"+barrier] != 1 || len(f) != 2 {
			t.Errorf("firings %v, want one for %s and one for %s", count, src, barrier)
		}
		if len(fired) != 1 {
			t.Errorf("tasks started for %s: %v, want one", src, fired)
		}
	})

	t.Run("BG25", func(t *testing.T) {
		r := caseOf(t, hardening.Hostile, "BG25", "webhook (server): a request replayed with the same Idempotency-Key and other parameters",
			"the replay answers the first request's task and starts nothing: the server unchanged")
		t.Parallel()
		s := triggerServer(t)
		alice := s.bearer("alice")
		if a := putTrigger(t, alice, "trigger", `{"name": "hook", "kind": "request", "target": {"type": "build"}}`); a.status() != "OK" {
			t.Fatalf("hook: %v", a)
		}
		key := header("Idempotency-Key", "deploy-42")
		first := alice.do(t, "POST", "/trigger/hook/", []byte(`{"rev": "1"}`), key)
		if first.status() != "OK" {
			t.Fatalf("the first request: %v", first)
		}
		r.Observe("first: %v, %s", first, first.json["key"])
		again := unchanged(t, s, r, func() answer { return alice.do(t, "POST", "/trigger/hook/", []byte(`{"rev": "2"}`), key) }, 200, "OK", nil)
		if again.json["key"] != first.json["key"] {
			t.Errorf("the replay answered %v, the first %v", again.json["key"], first.json["key"])
		}
		if f := fires(t, alice, "hook"); len(f) != 1 {
			t.Errorf("firings: %v", f)
		}
	})

	t.Run("BG26", func(t *testing.T) {
		r := caseOf(t, hardening.Hostile, "BG26", "webhook (server): 200 requests at once with the same Idempotency-Key (the trigger's scoped token)",
			"every one answers the same task; exactly one task and one firing")
		t.Parallel()
		s := triggerServer(t)
		alice := s.bearer("alice")
		if a := putTrigger(t, alice, "trigger", `{"name": "hook", "kind": "request", "target": {"type": "build"}}`); a.status() != "OK" {
			t.Fatalf("hook: %v", a)
		}
		tok, _, err := s.srv.NewScopedToken(context.Background(), "alice", "hook", 0)
		if err != nil {
			t.Fatal(err)
		}
		hook := &apiClient{s: s, token: tok, hc: &http.Client{}}
		tasks0 := s.state(t).rows["tasks"]
		var wg sync.WaitGroup
		answers := make([]answer, 200)
		for i := range answers {
			wg.Go(func() {
				answers[i] = hook.do(t, "POST", "/trigger/hook/", []byte(fmt.Sprintf(`{"rev": "%d"}`, i)), header("Idempotency-Key", "flood"))
			})
		}
		wg.Wait()
		keys := map[string]int{}
		for _, a := range answers {
			if a.status() != "OK" {
				keys[a.String()]++
				continue
			}
			keys[a.json["key"].(string)]++
		}
		made := s.state(t).rows["tasks"] - tasks0
		r.Observe("answers by key: %v; %d task made", keys, made)
		if len(keys) != 1 || made != 1 {
			t.Errorf("answers %v, %d tasks made: want one key, one task", keys, made)
		}
		if f := fires(t, alice, "hook"); len(f) != 1 {
			t.Errorf("firings: %v", f)
		}
	})
}
