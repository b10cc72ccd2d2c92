package server_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)
var djangoTimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$`)

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// The whole API as Kolejka's client.py and foreman.py drive it: sign in
// with the cookie/CSRF dance, upload with dedup, submit, dequeue as a node,
// fetch the task and its files, post a result with files, read the result
// and its files as the owner.
func TestKolejkaClientEndToEnd(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()

	alice := e.py("alice")
	if alice.cookie("sessionid") == "" || alice.cookie("csrftoken") == "" {
		t.Fatalf("login left no sessionid/csrftoken cookies")
	}

	// KolejkaClient.__init__ reads /settings/ into its config.
	st := mustOK(t, alice.get("/settings/"))
	if st.header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type = %q, Kolejka's client needs exactly application/json", st.header.Get("Content-Type"))
	}
	if st.json["blob_hash_algorithm"] != "sha256" {
		t.Errorf("blob_hash_algorithm = %v", st.json["blob_hash_algorithm"])
	}
	if _, ok := st.json["limits"].(map[string]any); !ok {
		t.Errorf("limits missing: %v", st)
	}
	ext, _ := st.json["extensions"].([]any)
	for _, want := range []string{"bearer", "heartbeat", "long_poll"} {
		if !slices.Contains(ext, any(want)) {
			t.Errorf("extensions %v lack %q", ext, want)
		}
	}

	// blob_put: the reference object has exactly Kolejka's fields.
	ref := alice.blobPut([]byte("hello\n"))
	if got := keysOf(ref); !slices.Equal(got, []string{"blob", "key", "size", "time_access", "time_create"}) {
		t.Errorf("reference fields = %v", got)
	}
	if ref["blob"] != sha([]byte("hello\n")) || ref["size"] != float64(6) || !hex32.MatchString(ref["key"].(string)) {
		t.Errorf("reference = %v", ref)
	}
	for _, f := range []string{"time_create", "time_access"} {
		if !djangoTimeRE.MatchString(ref[f].(string)) {
			t.Errorf("%s = %q, not Django's format", f, ref[f])
		}
	}
	// The same bytes again: the dedup path answers with a new reference to
	// the same blob, and nothing is uploaded.
	before := len(e.blobFiles())
	ref2 := alice.blobPut([]byte("hello\n"))
	if ref2["key"] == ref["key"] || ref2["blob"] != ref["blob"] || len(e.blobFiles()) != before {
		t.Errorf("dedup: %v vs %v, files %d → %d", ref2, ref, before, len(e.blobFiles()))
	}

	// task put
	task := map[string]any{
		"id":       "chosen-by-client",
		"image":    "busybox:latest",
		"args":     []string{"sh", "-c", "cat input.txt"},
		"stdout":   "stdout",
		"limits":   map[string]any{"memory": "64M", "time": "10s"},
		"requires": []string{"cpu:test"},
	}
	a := mustOK(t, alice.taskPut(task, map[string][]byte{"input.txt": []byte("hello\n")}))
	stored := a.json["task"].(map[string]any)
	key := stored["id"].(string)
	if !hex32.MatchString(key) {
		t.Fatalf("task id %q is not 32 hex (the server assigns it)", key)
	}
	files := stored["files"].(map[string]any)
	inRef := files["input.txt"].(map[string]any)
	if _, has := inRef["path"]; has || inRef["reference"] == "" {
		t.Errorf("stored file = %v, want a reference and no path", inRef)
	}
	if stored["limits"].(map[string]any)["memory"] != "67108864b" {
		t.Errorf("limits not canonical: %v", stored["limits"])
	}

	// The node (foreman.py): dequeue, fetch the task and its files.
	node := e.py("node")
	got := taskKeys(t, node.dequeue(2, map[string]any{"cpus": 4, "memory": "8G", "gpus": 0}, []string{"cpu:test", "x"}))
	if !slices.Equal(got, []string{key}) {
		t.Fatalf("dequeued %v, want [%s]", got, key)
	}
	tg := mustOK(t, node.get("/task/task/"+key+"/"))
	fref := tg.json["task"].(map[string]any)["files"].(map[string]any)["input.txt"].(map[string]any)["reference"].(string)
	blob := node.get("/blob/reference/" + fref + "/")
	if blob.code != 200 || string(blob.body) != "hello\n" || blob.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("node reads task file: %v", blob)
	}
	if h := node.head("/blob/reference/" + fref + "/"); h.code != 200 {
		t.Errorf("blob_check (HEAD) = %v", h)
	}

	// result put, as foreman_single does after stage0.
	res := map[string]any{
		"id": key, "result": 0, "status": "OK", "stdout": "stdout",
		"tags": []string{"cpu:test"}, "limits": map[string]any{"memory": "64M"},
		"stats": map[string]any{"time": "0.5s", "memory": map[string]any{"max_usage": "1M"}},
	}
	ra := mustOK(t, node.resultPut(res, map[string][]byte{"stdout": []byte("hello\n")}))
	if ra.json["result"].(map[string]any)["id"] != key {
		t.Errorf("posted result = %v", ra)
	}

	// The owner reads the result and its files (their references are now hers).
	rg := mustOK(t, alice.get("/task/result/"+key+"/"))
	result := rg.json["result"].(map[string]any)
	if result["result"] != float64(0) || result["status"] != "OK" {
		t.Errorf("result = %v", result)
	}
	outRef := result["files"].(map[string]any)["stdout"].(map[string]any)["reference"].(string)
	out := alice.get("/blob/reference/" + outRef + "/")
	if out.code != 200 || string(out.body) != "hello\n" {
		t.Errorf("owner reads result file: %v", out)
	}
	meta := mustOK(t, alice.put("/blob/reference/"+outRef+"/"))
	if meta.json["reference"].(map[string]any)["key"] != outRef {
		t.Errorf("PUT reference = %v", meta)
	}
	// The node no longer owns the result's files.
	if a := node.get("/blob/reference/" + outRef + "/"); a.code != 403 {
		t.Errorf("node reads the owner's result file: %v", a)
	}

	// Stats, as Kolejka counts.
	stats := mustOK(t, alice.get("/queue/stats/"))
	for k, want := range map[string]float64{"task_count": 1, "task_resolved_count": 1, "task_unresolved_count": 0,
		"task_unassigned_count": 0, "task_assigned_count": 0} {
		if stats.json[k] != want {
			t.Errorf("stats %s = %v, want %v", k, stats.json[k], want)
		}
	}

	// Logout clears the session.
	alice.get("/logout/")
	if a := alice.get("/task/result/" + key + "/"); a.code != 403 {
		t.Errorf("after logout: %v", a)
	}
}

// The same cycle with bearer tokens and no cookies at all.
func TestBearerCycle(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	alice, node := e.tok("alice"), e.tok("node")
	key := alice.submit(simpleTask(), map[string][]byte{"a": []byte("A")})
	got := taskKeys(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1}))
	if !slices.Equal(got, []string{key}) {
		t.Fatalf("dequeued %v", got)
	}
	out := node.upload([]byte("out"))
	mustOK(t, node.postJSON("/task/result/", map[string]any{"id": key, "result": 0,
		"files": map[string]any{"out": map[string]any{"reference": out}}}))
	r := mustOK(t, alice.do("GET", "/task/result/"+key+"/", nil))
	if !strings.Contains(string(r.body), out) {
		t.Errorf("result %s lacks %s", r.body, out)
	}
}
