package server_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// issueType is issue 16's example type with its file as reference ref.
func issueType(ref string, extra string) map[string]any {
	var typ map[string]any
	doc := `{"image": "kolejka-test:latest", "args": ["sh", "run.sh", "{n}", "{src}"],
		"params": {"n": {"default": "10"}, "src": {"file": true}},
		"limits": {"time": "10s", "memory": "64M"}, "stdout": "out.txt",
		"files": {"run.sh": {"path": "run.sh", "reference": "` + ref + `"}}` + extra + `}`
	if err := json.Unmarshal([]byte(doc), &typ); err != nil {
		panic(err)
	}
	return typ
}

func putType(c *tokenClient, name string, public bool, typ any) answer {
	c.t.Helper()
	return c.postJSON("/type/", map[string]any{"name": name, "public": public, "type": typ})
}

func wantFail(t *testing.T, a answer, fragments ...string) {
	t.Helper()
	if a.code != 200 || a.status() != "FAIL" {
		t.Fatalf("got %v, want a FAIL naming %q", a, fragments)
	}
	for _, f := range fragments {
		if !strings.Contains(a.message(), f) {
			t.Errorf("FAIL %q does not name %q", a.message(), f)
		}
	}
}

func TestTypePutListReadRemove(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	alice, bob, max := e.tok("alice"), e.tok("bob"), e.tok("max")
	st := mustOK(t, alice.do("GET", "/settings/", nil))
	if !slices.Contains(st.json["extensions"].([]any), any("types")) {
		t.Errorf("extensions %v lack types", st.json["extensions"])
	}
	ref := alice.upload([]byte("echo $1 $2\n"))
	for want := 1; want <= 2; want++ {
		a := mustOK(t, putType(alice, "compile", false, issueType(ref, "")))
		if v := a.json["version"].(float64); v != float64(want) {
			t.Fatalf("put %d: version %v", want, v)
		}
	}
	// Refusals name their field and store nothing.
	before := e.count("types")
	wantFail(t, putType(bob, "compile", true, issueType(bob.upload([]byte("x")), "")), "name", `"compile" belongs to user alice`)
	wantFail(t, putType(alice, "../x", false, issueType(ref, "")), "type: name:", `"../x" is not a name`)
	wantFail(t, putType(alice, "t2", false, map[string]any{"image": "i", "args": []string{"{nope}"}}), "args[0]", "{nope}")
	wantFail(t, putType(alice, "t3", false, map[string]any{"image": "i", "args": []string{"x"}, "files": map[string]any{"a": "a"}}),
		`files["a"].reference`, "missing")
	wantFail(t, putType(alice, "t4", false, issueType(bob.upload([]byte("y")), "")), `files["run.sh"].reference`, "belongs to another user")
	wantFail(t, alice.do("POST", "/type/", []byte(`{"name": "t5", "typo": 1}`)), "type:", "typo")
	if e.count("types") != before {
		t.Errorf("refused puts stored types: %d → %d", before, e.count("types"))
	}
	if a := e.tok("node").postJSON("/type/", map[string]any{"name": "n", "type": issueType(ref, "")}); a.code != 403 {
		t.Errorf("a processor's put: %v", a)
	}

	// Listing: own and public; the params with defaults and file flags.
	list := mustOK(t, alice.do("GET", "/type/", nil)).json["types"].([]any)
	if len(list) != 1 {
		t.Fatalf("alice lists %v", list)
	}
	info := list[0].(map[string]any)
	params := info["params"].(map[string]any)
	if info["name"] != "compile" || info["version"] != 2.0 || info["owner"] != "alice" || info["public"] != false ||
		params["n"].(map[string]any)["default"] != "10" || params["src"].(map[string]any)["file"] != true {
		t.Errorf("listing %v", info)
	}
	if l := mustOK(t, bob.do("GET", "/type/", nil)).json["types"].([]any); len(l) != 0 {
		t.Errorf("bob sees alice's private type: %v", l)
	}
	if l := mustOK(t, max.do("GET", "/type/", nil)).json["types"].([]any); len(l) != 1 {
		t.Errorf("a manager sees %v", l)
	}
	// Reading: a private type of another user is not there for bob.
	for _, m := range []string{"GET", "DELETE"} {
		if a := bob.do(m, "/type/compile/", nil); a.code != 404 {
			t.Errorf("bob %s alice's private type: %v", m, a)
		}
	}
	a := mustOK(t, alice.do("GET", "/type/compile/?version=1", nil))
	if a.json["info"].(map[string]any)["version"] != 1.0 || a.json["type"].(map[string]any)["files"].(map[string]any)["run.sh"].(map[string]any)["reference"] != ref {
		t.Errorf("version 1: %v", a)
	}
	wantFail(t, alice.do("GET", "/type/compile/?version=zero", nil), "version")
	if a := alice.do("GET", "/type/compile/?version=7", nil); a.code != 404 {
		t.Errorf("version 7: %v", a)
	}
	// Shared: bob reads it and its file, but cannot remove it.
	mustOK(t, putType(alice, "compile", true, issueType(ref, "")))
	mustOK(t, bob.do("GET", "/type/compile/", nil))
	if a := bob.do("GET", "/blob/reference/"+ref+"/", nil); a.code != 200 || string(a.body) != "echo $1 $2\n" {
		t.Errorf("bob reading a public type's file: %v", a)
	}
	if a := bob.do("DELETE", "/type/compile/", nil); a.code != 403 {
		t.Errorf("bob removing alice's public type: %v", a)
	}
	// The type's file stays while the type uses it.
	wantFail(t, alice.do("DELETE", "/blob/reference/"+ref+"/", nil), "task type compile", "remove the type first")
	mustOK(t, alice.do("DELETE", "/type/compile/", nil))
	if a := alice.do("GET", "/type/compile/", nil); a.code != 404 {
		t.Errorf("after removal: %v", a)
	}
	mustOK(t, alice.do("DELETE", "/blob/reference/"+ref+"/", nil))
}

func TestTypeTask(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	alice, bob, node := e.tok("alice"), e.tok("bob"), e.tok("node")
	runRef := alice.upload([]byte("cat $2\n"))
	mustOK(t, putType(alice, "compile", true, issueType(runRef, `, "pass_env": ["HTTP_PROXY", "LANG"]`)))
	mustOK(t, putType(alice, "secret", false, issueType(runRef, "")))
	srcRef := bob.upload([]byte("int main() {}\n"))
	alicePrivate := alice.upload([]byte("not in any type"))
	src := map[string]any{"src": map[string]any{"name": "main.c", "reference": srcRef}}

	// Refused parameters, each named; nothing stored.
	tasks := e.count("tasks")
	for _, c := range []struct {
		body map[string]any
		want []string
	}{
		{map[string]any{"params": map[string]any{"n": "5"}}, []string{`params["src"]`, "missing"}},
		{map[string]any{"params": map[string]any{"m": "5"}, "files": src}, []string{`params["m"]`, "unknown parameter"}},
		{map[string]any{"params": map[string]any{"src": "main.c"}}, []string{`params["src"]`, "is a file parameter"}},
		{map[string]any{"files": map[string]any{"src": map[string]any{"name": "../main.c", "reference": srcRef}}}, []string{`params["src"]`, "leaves the folder"}},
		{map[string]any{"files": map[string]any{"src": map[string]any{"reference": "0123456789abcdef0123456789abcdef"}}}, []string{`files["src"].reference`, "unknown"}},
		{map[string]any{"files": map[string]any{"src": map[string]any{"reference": alicePrivate}}}, []string{`files["src"].reference`, "belongs to another user"}},
		{map[string]any{"files": src, "queue": "no such/queue"}, []string{"queue"}},
		{map[string]any{"files": src, "limits": map[string]any{"memory": "lots"}}, []string{"limits", "memory"}},
		{map[string]any{"files": map[string]any{"src": map[string]any{"name": "main.c"}}}, []string{`files["src"].reference`, "missing"}},
	} {
		wantFail(t, bob.postJSON("/type/compile/task/", c.body), c.want...)
	}
	if a := bob.postJSON("/type/secret/task/", map[string]any{"files": src}); a.code != 404 {
		t.Errorf("bob using alice's private type: %v", a)
	}
	if a := bob.postJSON("/type/nope/task/", map[string]any{"files": src}); a.code != 404 {
		t.Errorf("an unknown type: %v", a)
	}
	if n := e.count("tasks"); n != tasks {
		t.Fatalf("refused submissions stored tasks: %d → %d", tasks, n)
	}

	// Accepted: rendered, the type's file by its reference, the user's file
	// under the name given, limits capped, the origin recorded.
	a := mustOK(t, bob.postJSON("/type/compile/task/", map[string]any{"params": map[string]any{"n": "5"}, "files": src,
		"limits": map[string]any{"memory": "32M"}}))
	task := a.json["task"].(map[string]any)
	key := task["id"].(string)
	if fmt.Sprint(task["args"]) != "[sh run.sh 5 main.c]" || task["stdout"] != "out.txt" {
		t.Errorf("rendered %v", task)
	}
	files := task["files"].(map[string]any)
	if files["run.sh"].(map[string]any)["reference"] != runRef || files["main.c"].(map[string]any)["reference"] != srcRef {
		t.Errorf("files %v", files)
	}
	if task["limits"].(map[string]any)["memory"] != "33554432b" {
		t.Errorf("limits %v: the cap was not applied", task["limits"])
	}
	if _, ok := task["params"]; ok {
		t.Errorf("the stored task has the type's keys: %v", task)
	}
	var typeName, origin string
	if err := e.db().QueryRow(`SELECT type_name, origin FROM tasks WHERE key = ?`, key).Scan(&typeName, &origin); err != nil {
		t.Fatal(err)
	}
	if typeName != "compile" || !strings.Contains(origin, `"params":{"n":"5"}`) || !strings.Contains(origin, `"files":{"src":"main.c"}`) ||
		!strings.Contains(origin, `"version":1`) {
		t.Errorf("origin %s %s", typeName, origin)
	}
	// A plain task beside it: the node learns pass_env for the typed one only.
	plain := bob.submit(simpleTask(), nil)
	d := mustOK(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 5, "limits": map[string]any{}, "tags": []string{}}))
	if got := taskKeys(t, d); len(got) != 2 {
		t.Fatalf("dequeued %v", got)
	}
	pe, _ := d.json["pass_env"].(map[string]any)
	if len(pe) != 1 || fmt.Sprint(pe[key]) != "[HTTP_PROXY LANG]" || pe[plain] != nil {
		t.Errorf("pass_env %v", d.json["pass_env"])
	}
	// Submitted by version: a new version does not change a pinned one.
	mustOK(t, putType(alice, "compile", true, issueType(runRef, `, "environment": {"V": "2"}`)))
	a = mustOK(t, bob.postJSON("/type/compile/task/", map[string]any{"files": src, "version": 1}))
	if env, _ := a.json["task"].(map[string]any)["environment"].(map[string]any); env["V"] != nil {
		t.Errorf("version 1 rendered as version 2: %v", a.json["task"])
	}
	if a := node.postJSON("/type/compile/task/", map[string]any{"files": src}); a.code != 403 {
		t.Errorf("a processor submitting: %v", a)
	}
}
