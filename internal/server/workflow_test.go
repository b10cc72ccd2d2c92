package server_test

// Workflow runs against a real server over loopback: the server advances
// a run as a node's results arrive (docs/workflows.md). The node is played
// by the test through the HTTP API (dequeue, post a result), so each test
// decides every task's status and result files.

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
)

// wfTask is a task step's kolejka_task.json, its files uploaded by c.
func wfTask(c *tokenClient, args []string, extra map[string]any, files map[string][]byte) map[string]any {
	t := map[string]any{"image": "busybox:latest", "args": args}
	for k, v := range extra {
		t[k] = v
	}
	if len(files) > 0 {
		fs := map[string]any{}
		for name, data := range files {
			fs[name] = map[string]any{"reference": c.upload(data)}
		}
		t["files"] = fs
	}
	return t
}

// putRun posts a run and returns its key.
func putRun(t testing.TB, c *tokenClient, wf string, tasks map[string]any) string {
	t.Helper()
	a := mustOK(t, c.postJSON("/workflow/", map[string]any{"workflow": json.RawMessage(wf), "tasks": tasks}))
	return a.json["key"].(string)
}

// taken is a task a node holds: its key and description.
type taken struct {
	key  string
	desc map[string]any
}

// take dequeues every task queued now (as node), by the step each is of.
func take(t testing.TB, node *tokenClient) []taken {
	t.Helper()
	a := mustOK(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1000, "limits": map[string]any{}, "tags": []string{}}))
	var out []taken
	for _, x := range a.json["tasks"].([]any) {
		d := x.(map[string]any)
		out = append(out, taken{key: d["id"].(string), desc: d})
	}
	return out
}

// finish posts a result of task key with status and files.
func finish(t testing.TB, node *tokenClient, key, status string, files map[string][]byte) answer {
	t.Helper()
	fs := map[string]any{}
	for name, data := range files {
		fs[name] = map[string]any{"reference": node.upload(data)}
	}
	code := 0
	if status != "OK" {
		code = 1
	}
	return node.postJSON("/task/result/", map[string]any{"id": key, "result": code, "status": status, "files": fs})
}

// runShow reads a run: its state and, by "step" or "step[i]", each
// instance.
func runShow(t testing.TB, c *tokenClient, key string) (string, map[string]map[string]any) {
	t.Helper()
	a := mustOK(t, c.do("GET", "/workflow/"+key+"/", nil))
	wf := a.json["workflow"].(map[string]any)
	out := map[string]map[string]any{}
	for _, s := range wf["steps"].([]any) {
		st := s.(map[string]any)
		ins := st["instances"].([]any)
		for _, i := range ins {
			in := i.(map[string]any)
			name := st["name"].(string)
			if len(ins) > 1 || in["item"] != nil {
				name = fmt.Sprintf("%s[%v]", name, in["index"])
			}
			out[name] = in
		}
	}
	return wf["state"].(string), out
}

// stepOf is the step (as runShow names it) whose instance has task key.
func stepOf(inst map[string]map[string]any, key string) string {
	for name, in := range inst {
		if in["task_key"] == key {
			return name
		}
	}
	return ""
}

func fileRef(d map[string]any, name string) string {
	fs, _ := d["files"].(map[string]any)
	f, _ := fs[name].(map[string]any)
	s, _ := f["reference"].(string)
	return s
}

func newWorkflowEnv(t testing.TB) (*env, *tokenClient, *tokenClient) {
	e := newEnv(t)
	e.standardUsers()
	return e, e.tok("alice"), e.tok("node")
}

// A diamond: a's result file reaches b and c by reference (the very
// reference the result holds: no copy), d waits for both and gets both
// files; the run ends ok; each task is visible with its run and step.
func TestWorkflowDiamondWithArtifacts(t *testing.T) {
	e, alice, node := newWorkflowEnv(t)
	st := mustOK(t, alice.do("GET", "/settings/", nil))
	if !slices.Contains(st.json["extensions"].([]any), any("workflows")) {
		t.Errorf("extensions %v lack workflows", st.json["extensions"])
	}
	wf := `{"tasks": {
		"a": {"task": "a"},
		"b": {"task": "b", "after": ["a"], "inputs": {"prog": "a:a.out"}},
		"c": {"task": "c", "after": ["a"], "inputs": {"prog": "a:a.out"}},
		"d": {"task": "d", "after": ["b", "c"], "inputs": {"x/b": "b:out.txt", "x/c": "c:out.txt"}}}}`
	key := putRun(t, alice, wf, map[string]any{
		"a": wfTask(alice, []string{"sh", "build.sh"}, nil, map[string][]byte{"build.sh": []byte("cc\n")}),
		"b": wfTask(alice, []string{"./prog"}, nil, nil),
		"c": wfTask(alice, []string{"./prog"}, nil, nil),
		"d": wfTask(alice, []string{"cat", "x/b", "x/c"}, nil, nil),
	})
	got := take(t, node)
	if len(got) != 1 {
		t.Fatalf("first dequeue: %d tasks, want a alone", len(got))
	}
	state, inst := runShow(t, alice, key)
	if state != "running" || inst["a"]["state"] != "submitted" || inst["a"]["task_key"] != got[0].key || inst["a"]["node"] != "node" ||
		inst["b"]["state"] != "waiting" {
		t.Fatalf("after a's dequeue: %s %v", state, inst)
	}
	if a := mustOK(t, alice.do("GET", "/task/task/"+got[0].key+"/", nil)); a.json["run"] != key || a.json["step"] != "a" {
		t.Errorf("task a shows run %v step %v", a.json["run"], a.json["step"])
	}
	mustOK(t, finish(t, node, got[0].key, "OK", map[string][]byte{"a.out": []byte("binary")}))
	res := mustOK(t, alice.do("GET", "/task/result/"+got[0].key+"/", nil))
	aOut := fileRef(res.json["result"].(map[string]any), "a.out")
	got = take(t, node)
	if len(got) != 2 {
		t.Fatalf("after a: %d tasks, want b and c", len(got))
	}
	_, inst = runShow(t, alice, key)
	for _, g := range got {
		step := stepOf(inst, g.key)
		if step != "b" && step != "c" {
			t.Errorf("task %s is of step %q", g.key, step)
		}
		if r := fileRef(g.desc, "prog"); r == "" || r != aOut {
			t.Errorf("step %s's prog is %q, want a's a.out %q", step, r, aOut)
		}
		mustOK(t, finish(t, node, g.key, "OK", map[string][]byte{"out.txt": []byte(step)}))
	}
	got = take(t, node)
	if len(got) != 1 || fileRef(got[0].desc, "x/b") == "" || fileRef(got[0].desc, "x/c") == "" {
		t.Fatalf("d: %v", got)
	}
	mustOK(t, finish(t, node, got[0].key, "OK", nil))
	state, inst = runShow(t, alice, key)
	if state != "ok" || inst["d"]["state"] != "ok" || inst["d"]["status"] != "OK" || inst["d"]["time_finish"] == nil {
		t.Fatalf("end: %s %v", state, inst)
	}
	// The tasks are the owner's; nothing is left queued.
	if n := e.count("tasks"); n != 4 {
		t.Errorf("%d tasks, want 4", n)
	}
	var runID, withStep int
	db := e.db()
	if err := db.QueryRow(`SELECT id FROM runs WHERE key = ?`, key).Scan(&runID); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM tasks WHERE run_id = ? AND step IN ('a', 'b', 'c', 'd')`, runID).Scan(&withStep); err != nil || withStep != 4 {
		t.Errorf("tasks with run and step: %d %v", withStep, err)
	}
	list := mustOK(t, alice.do("GET", "/workflow/", nil)).json["workflows"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["key"] != key || list[0].(map[string]any)["state"] != "ok" {
		t.Errorf("alice's runs: %v", list)
	}
	if list := mustOK(t, e.tok("bob").do("GET", "/workflow/", nil)).json["workflows"].([]any); len(list) != 0 {
		t.Errorf("bob's runs: %v", list)
	}
	if list := mustOK(t, e.tok("max").do("GET", "/workflow/", nil)).json["workflows"].([]any); len(list) != 1 {
		t.Errorf("a manager's runs: %v", list)
	}
	wantFail(t, alice.do("POST", "/workflow/"+key+"/cancel/", nil), "has ended (ok)")
	if state, _ := runShow(t, alice, key); state != "ok" {
		t.Errorf("a refused cancel changed the run: %s", state)
	}
	if a := e.tok("bob").do("GET", "/workflow/"+key+"/", nil); a.code != 403 {
		t.Errorf("bob reads alice's run: %v", a)
	}
	if a := e.tok("bob").do("POST", "/workflow/"+key+"/cancel/", nil); a.code != 403 {
		t.Errorf("bob cancels alice's run: %v", a)
	}
	if a := alice.do("GET", "/workflow/0123456789abcdef0123456789abcdef/", nil); a.code != 404 {
		t.Errorf("no such run: %v", a)
	}
}

// Fan-out: a step with items runs once per item, {item} substituted in
// its task; a step reading it gets one file per item; items_from takes the
// list from a result at run time.
func TestWorkflowFanOutAndItemsFrom(t *testing.T) {
	_, alice, node := newWorkflowEnv(t)
	wf := `{"tasks": {
		"gen": {"task": "gen"},
		"t": {"task": "t", "after": ["gen"], "items": ["1", "2", "3"], "inputs": {"in": "gen:data"}},
		"u": {"task": "u", "after": ["gen"], "items_from": "gen:list.json"},
		"report": {"task": "report", "after": ["t", "u"], "inputs": {"res": "t:out.txt"}}}}`
	key := putRun(t, alice, wf, map[string]any{
		"gen":    wfTask(alice, []string{"gen"}, nil, nil),
		"t":      wfTask(alice, []string{"run", "{item}"}, map[string]any{"stdout": "out-{item}.txt"}, nil),
		"u":      wfTask(alice, []string{"u", "{item}"}, nil, nil),
		"report": wfTask(alice, []string{"report"}, nil, nil),
	})
	got := take(t, node)
	if len(got) != 1 {
		t.Fatalf("first: %d tasks", len(got))
	}
	mustOK(t, finish(t, node, got[0].key, "OK", map[string][]byte{"data": []byte("d"), "list.json": []byte(`["x", "y"]`)}))
	got = take(t, node)
	_, inst := runShow(t, alice, key)
	args := map[string]string{}
	for _, g := range got {
		a := g.desc["args"].([]any)
		args[stepOf(inst, g.key)] = fmt.Sprint(a...)
	}
	want := map[string]string{"t[0]": "run1", "t[1]": "run2", "t[2]": "run3", "u[0]": "ux", "u[1]": "uy"}
	if fmt.Sprint(args) != fmt.Sprint(want) {
		t.Fatalf("fanned tasks %v, want %v", args, want)
	}
	for _, g := range got {
		if stepOf(inst, g.key)[0] == 't' {
			if g.desc["stdout"] != "out-"+strings.TrimPrefix(fmt.Sprint(g.desc["args"].([]any)[1]), "")+".txt" || fileRef(g.desc, "in") == "" {
				t.Errorf("t's task %v", g.desc)
			}
		}
		mustOK(t, finish(t, node, g.key, "OK", map[string][]byte{"out.txt": []byte(g.key)}))
	}
	steps := map[string]bool{}
	for _, x := range mustOK(t, alice.do("GET", "/task/list/", nil)).json["tasks"].([]any) {
		ts := x.(map[string]any)
		if ts["run"] != key {
			t.Errorf("task %v is of run %v", ts["key"], ts["run"])
		}
		steps[ts["step"].(string)] = true
	}
	for _, want := range []string{"gen", "t[0]", "t[1]", "t[2]", "u[0]", "u[1]"} {
		if !steps[want] {
			t.Errorf("task list lacks step %s: %v", want, steps)
		}
	}
	got = take(t, node)
	if len(got) != 1 {
		t.Fatalf("report: %d tasks", len(got))
	}
	var names []string
	for n := range got[0].desc["files"].(map[string]any) {
		names = append(names, n)
	}
	sort.Strings(names)
	if fmt.Sprint(names) != "[res/1 res/2 res/3]" {
		t.Errorf("report's files %v", names)
	}
	mustOK(t, finish(t, node, got[0].key, "OK", nil))
	if state, _ := runShow(t, alice, key); state != "ok" {
		t.Errorf("run %s", state)
	}
}

// Retries, after_failed and final: a step failing with RE is tried again
// as its retry says, then fails; the after_failed step runs, the step
// needing it OK is skipped, the final step runs last, the run failed.
// Then a retry of the run runs again what failed and skipped, keeping
// the OK steps' results.
func TestWorkflowRetriesFailureFinalAndRetry(t *testing.T) {
	e, alice, node := newWorkflowEnv(t)
	wf := `{"tasks": {
		"ok": {"task": "x"},
		"f": {"task": "x", "retry": {"attempts": 2, "on": ["RE"]}},
		"next": {"task": "x", "after": ["f"]},
		"notify": {"task": "x", "after_failed": ["f"]},
		"cleanup": {"task": "x"}},
		"final": "cleanup"}`
	x := wfTask(alice, []string{"x"}, nil, nil)
	key := putRun(t, alice, wf, map[string]any{"x": x})
	tasksOf := func() map[string]string {
		got := take(t, node)
		_, inst := runShow(t, alice, key)
		out := map[string]string{}
		for _, g := range got {
			out[stepOf(inst, g.key)] = g.key
		}
		return out
	}
	first := tasksOf()
	if len(first) != 2 || first["ok"] == "" || first["f"] == "" {
		t.Fatalf("first: %v", first)
	}
	mustOK(t, finish(t, node, first["ok"], "OK", nil))
	mustOK(t, finish(t, node, first["f"], "RE", nil))
	second := tasksOf()
	if len(second) != 1 || second["f"] == "" || second["f"] == first["f"] {
		t.Fatalf("the retry of f: %v", second)
	}
	mustOK(t, finish(t, node, second["f"], "RE", nil))
	third := tasksOf()
	if len(third) != 1 || third["notify"] == "" {
		t.Fatalf("after f failed: %v", third)
	}
	mustOK(t, finish(t, node, third["notify"], "OK", nil))
	fourth := tasksOf()
	if len(fourth) != 1 || fourth["cleanup"] == "" {
		t.Fatalf("final: %v", fourth)
	}
	mustOK(t, finish(t, node, fourth["cleanup"], "OK", nil))
	state, inst := runShow(t, alice, key)
	if state != "failed" || inst["f"]["state"] != "failed" || inst["f"]["status"] != "RE" || inst["next"]["state"] != "skipped" {
		t.Fatalf("end: %s %v", state, inst)
	}
	tasks := e.count("tasks")
	// A retry of the run: f again (then next, not notify), cleanup again; ok keeps its task.
	a := mustOK(t, alice.do("POST", "/workflow/"+key+"/retry/", nil))
	if a.json["workflow"].(map[string]any)["state"] != "running" {
		t.Fatalf("retried: %v", a)
	}
	again := tasksOf()
	if len(again) != 1 || again["f"] == "" {
		t.Fatalf("after retry: %v", again)
	}
	mustOK(t, finish(t, node, again["f"], "OK", nil))
	nxt := tasksOf()
	mustOK(t, finish(t, node, nxt["next"], "OK", nil))
	last := tasksOf()
	mustOK(t, finish(t, node, last["cleanup"], "OK", nil))
	state, inst = runShow(t, alice, key)
	// notify ended OK before: kept, as every OK step is.
	if state != "ok" || inst["ok"]["task_key"] != first["ok"] || inst["notify"]["task_key"] != third["notify"] {
		t.Fatalf("after the retry: %s %v", state, inst)
	}
	if n := e.count("tasks"); n != tasks+3 {
		t.Errorf("the retry made %d tasks, want 3 (f, next, cleanup)", n-tasks)
	}
	wantFail(t, alice.do("POST", "/workflow/"+key+"/retry/", nil), "nothing failed")
}

// on_failure abort: the first failure cancels the queued steps (their
// tasks cancelled too), the final step still runs.
func TestWorkflowAbort(t *testing.T) {
	_, alice, node := newWorkflowEnv(t)
	wf := `{"tasks": {"a": {"task": "x"}, "b": {"task": "x"}, "c": {"task": "x", "after": ["b"]}, "z": {"task": "x"}},
		"on_failure": "abort", "final": "z"}`
	key := putRun(t, alice, wf, map[string]any{"x": wfTask(alice, []string{"x"}, nil, nil)})
	got := take(t, node)
	_, inst := runShow(t, alice, key)
	byStep := map[string]string{}
	for _, g := range got {
		byStep[stepOf(inst, g.key)] = g.key
	}
	mustOK(t, finish(t, node, byStep["a"], "TLE", nil))
	if a := mustOK(t, alice.do("GET", "/task/task/"+byStep["b"]+"/", nil)); a.json["state"] != "cancelled" {
		t.Errorf("b's task after the abort: %v", a.json["state"])
	}
	// b's node learns: its result is refused as for any cancelled task.
	if a := finish(t, node, byStep["b"], "OK", nil); a.status() == "OK" {
		t.Errorf("b's result after the abort accepted: %v", a)
	}
	got = take(t, node)
	if len(got) != 1 {
		t.Fatalf("after the abort: %d tasks, want z", len(got))
	}
	mustOK(t, finish(t, node, got[0].key, "OK", nil))
	state, inst := runShow(t, alice, key)
	if state != "failed" || inst["b"]["state"] != "cancelled" || inst["c"]["state"] != "cancelled" || inst["z"]["state"] != "ok" {
		t.Fatalf("end: %s %v", state, inst)
	}
}

// Cancel of a run cancels its tasks; a retry resumes it.
func TestWorkflowCancelAndRetry(t *testing.T) {
	_, alice, node := newWorkflowEnv(t)
	wf := `{"tasks": {"a": {"task": "x"}, "b": {"task": "x", "after": ["a"]}}}`
	key := putRun(t, alice, wf, map[string]any{"x": wfTask(alice, []string{"x"}, nil, nil)})
	_, inst := runShow(t, alice, key)
	aKey := inst["a"]["task_key"].(string)
	a := mustOK(t, alice.do("POST", "/workflow/"+key+"/cancel/", nil))
	if a.json["workflow"].(map[string]any)["state"] != "cancelled" {
		t.Fatalf("cancel: %v", a)
	}
	if a := mustOK(t, alice.do("GET", "/task/task/"+aKey+"/", nil)); a.json["state"] != "cancelled" {
		t.Errorf("a's task after the cancel: %v", a.json["state"])
	}
	if got := take(t, node); len(got) != 0 {
		t.Fatalf("a cancelled run's tasks dequeued: %v", got)
	}
	mustOK(t, alice.do("POST", "/workflow/"+key+"/retry/", nil))
	for range 2 {
		got := take(t, node)
		if len(got) != 1 {
			t.Fatalf("after retry: %d tasks", len(got))
		}
		mustOK(t, finish(t, node, got[0].key, "OK", nil))
	}
	if state, _ := runShow(t, alice, key); state != "ok" {
		t.Errorf("run %s", state)
	}
}

// A step's task cancelled or deleted on its own ends the step (SE), and
// the run goes on as for a failure.
func TestWorkflowStepTaskCancelled(t *testing.T) {
	_, alice, _ := newWorkflowEnv(t)
	wf := `{"tasks": {"a": {"task": "x"}, "b": {"task": "x", "after_failed": ["a"]}}}`
	key := putRun(t, alice, wf, map[string]any{"x": wfTask(alice, []string{"x"}, nil, nil)})
	_, inst := runShow(t, alice, key)
	mustOK(t, alice.do("POST", "/task/task/"+inst["a"]["task_key"].(string)+"/cancel/", nil))
	_, inst = runShow(t, alice, key)
	if inst["a"]["state"] != "failed" || inst["a"]["status"] != "SE" || inst["b"]["state"] != "submitted" {
		t.Fatalf("after a's task was cancelled: %v", inst)
	}
	// Deleted, b's task ends its step as well: the run does not wait for it.
	mustOK(t, alice.do("DELETE", "/task/task/"+inst["b"]["task_key"].(string)+"/", nil))
	state, inst := runShow(t, alice, key)
	if state != "failed" || inst["b"]["state"] != "failed" || inst["b"]["status"] != "SE" {
		t.Fatalf("after b's task was deleted: %s %v", state, inst)
	}
}

// A replayed result changes nothing: the dependent is queued once.
func TestWorkflowReplayedResult(t *testing.T) {
	e, alice, node := newWorkflowEnv(t)
	wf := `{"tasks": {"a": {"task": "x"}, "b": {"task": "x", "after": ["a"]}}}`
	putRun(t, alice, wf, map[string]any{"x": wfTask(alice, []string{"x"}, nil, nil)})
	got := take(t, node)
	files := map[string][]byte{"o": []byte("same")}
	mustOK(t, finish(t, node, got[0].key, "OK", files))
	mustOK(t, finish(t, node, got[0].key, "OK", files))
	if n := e.count("tasks"); n != 2 {
		t.Errorf("%d tasks after a replayed result, want 2", n)
	}
	if got := take(t, node); len(got) != 1 {
		t.Errorf("b queued %d times", len(got))
	}
}

// A crash between a result's commit and the run's advance: the state the
// database holds then is rebuilt (the run as it was, the dependents'
// tasks absent), and the restarted server advances the run at startup,
// queuing each dependent once; a plain restart mid-run loses nothing and
// doubles nothing.
func TestWorkflowRestartMidRun(t *testing.T) {
	e, alice, node := newWorkflowEnv(t)
	wf := `{"tasks": {"a": {"task": "x"}, "b": {"task": "x", "after": ["a"], "items": ["1", "2"]}, "c": {"task": "x", "after": ["b"]}}}`
	key := putRun(t, alice, wf, map[string]any{"x": wfTask(alice, []string{"x", "{item}"}, nil, nil)})
	got := take(t, node)
	var before []byte
	db := e.db()
	if err := db.QueryRow(`SELECT run FROM runs WHERE key = ?`, key).Scan(&before); err != nil {
		t.Fatal(err)
	}
	mustOK(t, finish(t, node, got[0].key, "OK", nil))
	e.stop()
	// Undo the advance, as if the server died right after the result.
	w := writableDB(t, e)
	if _, err := w.Exec(`DELETE FROM tasks WHERE step = 'b'`); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Exec(`UPDATE runs SET run = ? WHERE key = ?`, before, key); err != nil {
		t.Fatal(err)
	}
	w.Close()
	e.start()
	node = e.tok("node") // the server's new address
	got = take(t, node)
	if len(got) != 2 {
		t.Fatalf("after the restart: %d tasks, want b's two", len(got))
	}
	mustOK(t, finish(t, node, got[0].key, "OK", nil))
	e.restart()
	e.restart()
	alice, node = e.tok("alice"), e.tok("node")
	mustOK(t, finish(t, node, got[1].key, "OK", nil))
	got = take(t, node)
	if len(got) != 1 {
		t.Fatalf("c: %d tasks", len(got))
	}
	mustOK(t, finish(t, node, got[0].key, "OK", nil))
	state, _ := runShow(t, alice, key)
	if state != "ok" || e.count("tasks") != 4 {
		t.Errorf("end: %s with %d tasks, want ok with 4", state, e.count("tasks"))
	}
}

// Bad puts are refused naming the step and the field, nothing stored.
func TestWorkflowPutRefused(t *testing.T) {
	e, alice, _ := newWorkflowEnv(t)
	bob := e.tok("bob")
	x := wfTask(alice, []string{"x"}, nil, nil)
	for _, c := range []struct {
		wf    string
		tasks map[string]any
		want  []string
	}{
		{`{"tasks": {"a": {"task": "x", "after": ["b"]}, "b": {"task": "x", "after": ["a"]}}}`, map[string]any{"x": x}, []string{"a cycle"}},
		{`{"tasks": {"a": {"task": "x"}}}`, map[string]any{}, []string{`tasks["a"].task`, "no kolejka_task.json"}},
		{`{"tasks": {"a": {"task": "x"}}}`, map[string]any{"x": x, "y": x}, []string{`tasks["y"]`, "no step's task"}},
		{`{"tasks": {"a": {"task": "x", "items": ["1"]}}}`, map[string]any{"x": wfTask(alice, []string{"{nope}"}, nil, nil)}, []string{`tasks["a"]`, "{nope}"}},
		{`{"tasks": {"a": {"task": "x"}}}`, map[string]any{"x": wfTask(bob, []string{"x"}, nil, map[string][]byte{"f": []byte("bob's")})},
			[]string{`tasks["a"].files["f"].reference`, "belongs to another user"}},
		{`{"tasks": {"a": {"task": "x"}}}`, map[string]any{"x": map[string]any{"image": "i", "args": []string{"x"}, "limits": map[string]any{"time": "soon"}}},
			[]string{`tasks["a"]`, "limits"}},
		{`{"tasks": {"a": {"type": "nosuch"}}}`, nil, []string{`tasks["a"].type`, "nosuch"}},
	} {
		a := alice.postJSON("/workflow/", map[string]any{"workflow": json.RawMessage(c.wf), "tasks": c.tasks})
		wantFail(t, a, c.want...)
	}
	wantFail(t, alice.do("POST", "/workflow/", []byte(`{"workflow": {"tasks": {}}, "typo": 1}`)), "typo")
	if n := e.count("runs"); n != 0 {
		t.Errorf("refused puts stored %d runs", n)
	}
	if n := e.count("tasks"); n != 0 {
		t.Errorf("refused puts stored %d tasks", n)
	}
	if a := e.tok("node").postJSON("/workflow/", map[string]any{"workflow": json.RawMessage(`{"tasks": {"a": {"task": "x"}}}`)}); a.code != 403 {
		t.Errorf("a processor's put: %v", a)
	}
}

// writableDB opens the stopped server's database for writing.
func writableDB(t *testing.T, e *env) *sql.DB {
	t.Helper()
	if e.cfg.Database != "" {
		return e.db()
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(e.dir, server.DatabaseFile)+"?_busy_timeout=5000&_foreign_keys=1")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// A type step: each instance rendered from the type as POST
// /type/<name>/task/ renders it, {item} in its params, its file parameter
// given by reference; its task records the type it came from.
func TestWorkflowTypeStep(t *testing.T) {
	_, alice, node := newWorkflowEnv(t)
	mustOK(t, putType(alice, "echo", false, issueType(alice.upload([]byte("echo $1 $2\n")), "")))
	src := alice.upload([]byte("source"))
	wf := `{"tasks": {"s": {"type": "echo", "params": {"n": "{item}"}, "items": ["1", "2"], "files": {"src": "src.txt"}}}}`
	a := mustOK(t, alice.postJSON("/workflow/", map[string]any{"workflow": json.RawMessage(wf),
		"files": map[string]any{"s": map[string]any{"src": map[string]any{"name": "in.txt", "reference": src}}}}))
	key := a.json["key"].(string)
	got := take(t, node)
	var args []string
	for _, g := range got {
		args = append(args, fmt.Sprint(g.desc["args"]))
		if fileRef(g.desc, "in.txt") != src {
			t.Errorf("task %s lacks in.txt by reference: %v", g.key, g.desc["files"])
		}
		if a := mustOK(t, alice.do("GET", "/task/task/"+g.key+"/", nil)); a.json["type"] != "echo" {
			t.Errorf("task %s's type: %v", g.key, a.json["type"])
		}
		mustOK(t, finish(t, node, g.key, "OK", nil))
	}
	sort.Strings(args)
	if fmt.Sprint(args) != "[[sh run.sh 1 in.txt] [sh run.sh 2 in.txt]]" {
		t.Errorf("rendered args %v", args)
	}
	if state, _ := runShow(t, alice, key); state != "ok" {
		t.Errorf("run %s", state)
	}
	// A file parameter the step does not declare, and one missing: refused naming them.
	wantFail(t, alice.postJSON("/workflow/", map[string]any{"workflow": json.RawMessage(wf),
		"files": map[string]any{"s": map[string]any{"other": map[string]any{"reference": src}}}}),
		`tasks["s"].files["src"]`, "no reference")
}

// Dynamic shape: a result holding kolejka_workflow.json appends its steps
// to the run with the step's end, their folders and files read from that
// result by reference; an append the rules refuse (a step name taken)
// fails the step that made it, naming why.
func TestWorkflowAppend(t *testing.T) {
	_, alice, node := newWorkflowEnv(t)
	wf := `{"tasks": {"plan": {"task": "x"}, "bad": {"task": "x"}}}`
	key := putRun(t, alice, wf, map[string]any{"x": wfTask(alice, []string{"x"}, nil, nil)})
	got := take(t, node)
	_, inst := runShow(t, alice, key)
	byStep := map[string]string{}
	for _, g := range got {
		byStep[stepOf(inst, g.key)] = g.key
	}
	mustOK(t, finish(t, node, byStep["plan"], "OK", map[string][]byte{
		"kolejka_workflow.json": []byte(`{"tasks": {"extra": {"task": "ex", "after": ["plan"], "items": ["1", "2"]}}}`),
		"ex/kolejka_task.json":  []byte(`{"image": "busybox:latest", "args": ["run", "{item}"], "files": {"data.txt": {"path": "data.txt"}}}`),
		"ex/data.txt":           []byte("data"),
	}))
	res := mustOK(t, alice.do("GET", "/task/result/"+byStep["plan"]+"/", nil))
	dataRef := fileRef(res.json["result"].(map[string]any), "ex/data.txt")
	mustOK(t, finish(t, node, byStep["bad"], "OK", map[string][]byte{
		"kolejka_workflow.json": []byte(`{"tasks": {"plan": {"task": "x"}}}`),
	}))
	got = take(t, node)
	if len(got) != 2 {
		_, inst := runShow(t, alice, key)
		t.Fatalf("appended: %d tasks, want extra's two: %v", len(got), inst)
	}
	var args []string
	for _, g := range got {
		args = append(args, fmt.Sprint(g.desc["args"]))
		if r := fileRef(g.desc, "data.txt"); r != dataRef {
			t.Errorf("extra's data.txt is %q, want the result's %q", r, dataRef)
		}
		mustOK(t, finish(t, node, g.key, "OK", nil))
	}
	sort.Strings(args)
	if fmt.Sprint(args) != "[[run 1] [run 2]]" {
		t.Errorf("extra's args %v", args)
	}
	state, inst := runShow(t, alice, key)
	if state != "failed" || inst["bad"]["state"] != "failed" || !strings.Contains(fmt.Sprint(inst["bad"]["reason"]), `the run already has a step "plan"`) ||
		inst["extra[1]"]["state"] != "ok" {
		t.Errorf("end: %s %v", state, inst)
	}
}

// The expiry pass's safety net: a run whose advance failed (here: the
// advance undone in the database, and the run marked as owed, as a failed
// advance marks it) is advanced by the next pass, each dependent queued
// once.
func TestWorkflowOwedRunAdvancedByExpiry(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.ExpiryInterval = 20 * time.Millisecond })
	e.standardUsers()
	alice, node := e.tok("alice"), e.tok("node")
	wf := `{"tasks": {"a": {"task": "x"}, "b": {"task": "x", "after": ["a"], "items": ["1", "2"]}}}`
	key := putRun(t, alice, wf, map[string]any{"x": wfTask(alice, []string{"x", "{item}"}, nil, nil)})
	got := take(t, node)
	var before []byte
	if err := e.db().QueryRow(`SELECT run FROM runs WHERE key = ?`, key).Scan(&before); err != nil {
		t.Fatal(err)
	}
	mustOK(t, finish(t, node, got[0].key, "OK", nil))
	w := writableDB(t, e)
	defer w.Close()
	if _, err := w.Exec(`DELETE FROM tasks WHERE step = 'b'`); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Exec(`UPDATE runs SET run = ? WHERE key = ?`, before, key); err != nil {
		t.Fatal(err)
	}
	server.OweRun(e.srv, key)
	deadline := time.Now().Add(10 * time.Second)
	for e.count("tasks") != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the owed run was not advanced: %d tasks, want 3", e.count("tasks"))
		}
		time.Sleep(10 * time.Millisecond) // the pass has no announcement: poll the count
	}
	if got := take(t, node); len(got) != 2 {
		t.Errorf("after the pass: %d tasks handed out, want b's two", len(got))
	}
}

// A step's end stored by a server that died before advancing its run (a
// replica killed between the two): the end's mark on the run stays, and
// another server, running all along, advances the run once the mark has
// waited out its grace (left to the server that stored the end).
func TestWorkflowAdvanceLeftByADeadServer(t *testing.T) {
	clk := newClock()
	e := newEnv(t, withClock(clk), func(c *server.Config) { c.ExpiryInterval = 10 * time.Millisecond })
	e.standardUsers()
	alice, node := e.tok("alice"), e.tok("node")
	wf := `{"tasks": {"a": {"task": "x"}, "b": {"task": "x", "after": ["a"]}}}`
	key := putRun(t, alice, wf, map[string]any{"x": wfTask(alice, []string{"true"}, nil, nil)})
	got := take(t, node)
	db := writableDB(t, e)
	defer db.Close()
	var before []byte
	if err := db.QueryRow(`SELECT run FROM runs WHERE key = ?`, key).Scan(&before); err != nil {
		t.Fatal(err)
	}
	mustOK(t, finish(t, node, got[0].key, "OK", nil))
	// Undo the advance, as the dead server left it: a's end stored and
	// marked on the run, b not submitted.
	if _, err := db.Exec(`DELETE FROM tasks WHERE step = 'b'`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE runs SET run = ?, advance_due = ? WHERE key = ?`, before, clk.Now().UnixMicro(), key); err != nil {
		t.Fatal(err)
	}
	clk.Advance(6 * time.Second)
	waitFor(t, "b submitted by the expiry pass", func() bool { return e.count("tasks") == 2 })
	got = take(t, node)
	if len(got) != 1 {
		t.Fatalf("%d tasks after the expiry pass's advance, want b", len(got))
	}
	mustOK(t, finish(t, node, got[0].key, "OK", nil))
	if state, _ := runShow(t, alice, key); state != "ok" {
		t.Errorf("run %s, want ok", state)
	}
	var due sql.NullInt64
	if err := db.QueryRow(`SELECT advance_due FROM runs WHERE key = ?`, key).Scan(&due); err != nil || due.Valid {
		t.Errorf("the run still owed an advance after its end: %v %v", due, err)
	}
}
