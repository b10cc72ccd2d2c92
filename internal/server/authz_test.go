package server_test

import (
	"encoding/json"
	"fmt"
	"testing"
)

// fixtures makes fresh objects for authorization cases through the API,
// with bearer tokens. Each task requires a tag of its own, so a node
// dequeues exactly the task a case made.
type fixtures struct {
	e *env
	n int
}

func (f *fixtures) ref(owner string) string {
	f.n++
	return f.e.tok(owner).upload([]byte(fmt.Sprintf("content %d of %s", f.n, owner)))
}

// blob makes a blob no task uses and returns its hash.
func (f *fixtures) blob(owner string) string {
	f.n++
	data := []byte(fmt.Sprintf("blob %d", f.n))
	f.e.tok(owner).upload(data)
	return sha(data)
}

func (f *fixtures) task(owner string) (key, tag string) {
	f.n++
	tag = fmt.Sprintf("case-%d", f.n)
	t := simpleTask()
	t["requires"] = []string{tag}
	key = f.e.tok(owner).submit(t, map[string][]byte{"in": []byte(fmt.Sprintf("input %d", f.n))})
	return key, tag
}

func (f *fixtures) assigned(owner, node string) string {
	key, tag := f.task(owner)
	got := taskKeys(f.e.t, f.e.tok(node).postJSON("/queue/dequeue/", map[string]any{"concurency": 1, "tags": []string{tag}}))
	if len(got) != 1 || got[0] != key {
		f.e.t.Fatalf("fixture dequeue got %v, want %s", got, key)
	}
	return key
}

func (f *fixtures) resolved(owner, node string) string {
	key := f.assigned(owner, node)
	mustOK(f.e.t, f.e.tok(node).postJSON("/task/result/", map[string]any{"id": key, "result": 0}))
	return key
}

// taskFileRef is the reference of a task's input file.
func (f *fixtures) taskFileRef(key string) string {
	var stored struct {
		Task struct {
			Files map[string]struct{ Reference string }
		}
	}
	a := mustOK(f.e.t, f.e.tok("max").do("GET", "/task/task/"+key+"/", nil))
	json.Unmarshal(a.body, &stored)
	return stored.Task.Files["in"].Reference
}

// The authorisation matrix: every role × every endpoint × own/other's
// objects. Expectations: "ok" (200, status OK), "fail" (200, status
// FAIL), or an HTTP code.
func TestAuthorizationMatrix(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	f := &fixtures{e: e}

	roles := []string{"anon", "badtoken", "alice", "bob", "node", "node2", "ivy", "max"}
	type req struct{ method, path, body string }
	type tc struct {
		name  string
		setup func(who string) req
		want  map[string]string // role → expectation; "*" for the rest
	}
	const unknownKey = "0123456789abcdef0123456789abcdef"
	unknownHash := sha([]byte("nobody uploaded this"))
	cases := []tc{
		{"index", func(string) req { return req{"GET", "/", ""} },
			map[string]string{"*": "ok"}},
		{"settings", func(string) req { return req{"GET", "/settings/", ""} },
			map[string]string{"anon": "403", "badtoken": "403", "*": "ok"}},
		{"stats", func(string) req { return req{"GET", "/queue/stats/", ""} },
			map[string]string{"anon": "403", "badtoken": "403", "*": "ok"}},
		{"upload blob", func(string) req { return req{"POST", "/blob/reference/", "bytes"} },
			map[string]string{"alice": "ok", "bob": "ok", "node": "ok", "node2": "ok", "*": "403"}},
		{"read own/other's reference", func(string) req { return req{"GET", "/blob/reference/" + f.ref("alice") + "/", ""} },
			map[string]string{"alice": "200", "ivy": "200", "max": "200", "*": "403"}},
		{"query reference", func(string) req { return req{"PUT", "/blob/reference/" + f.ref("alice") + "/", ""} },
			map[string]string{"alice": "ok", "ivy": "ok", "max": "ok", "*": "403"}},
		{"delete reference", func(string) req { return req{"DELETE", "/blob/reference/" + f.ref("alice") + "/", ""} },
			map[string]string{"alice": "ok", "max": "ok", "*": "403"}},
		{"unknown reference", func(string) req { return req{"GET", "/blob/reference/" + unknownKey + "/", ""} },
			map[string]string{"anon": "403", "badtoken": "403", "*": "404"}},
		{"node reads its task's file", func(string) req {
			return req{"GET", "/blob/reference/" + f.taskFileRef(f.assigned("alice", "node")) + "/", ""}
		}, map[string]string{"alice": "200", "node": "200", "ivy": "200", "max": "200", "*": "403"}},
		{"dedup known blob", func(string) req { return req{"POST", "/blob/blob/" + f.blob("alice") + "/", ""} },
			map[string]string{"alice": "ok", "bob": "ok", "node": "ok", "node2": "ok", "*": "403"}},
		{"dedup unknown blob", func(string) req { return req{"POST", "/blob/blob/" + unknownHash + "/", ""} },
			map[string]string{"alice": "404", "bob": "404", "node": "404", "node2": "404", "ivy": "403", "max": "403", "*": "403"}},
		{"read blob by hash", func(string) req { return req{"GET", "/blob/blob/" + f.blob("alice") + "/", ""} },
			map[string]string{"ivy": "200", "max": "200", "*": "403"}},
		{"query blob", func(string) req { return req{"PUT", "/blob/blob/" + f.blob("alice") + "/", ""} },
			map[string]string{"ivy": "ok", "max": "ok", "*": "403"}},
		{"delete blob", func(string) req { return req{"DELETE", "/blob/blob/" + f.blob("alice") + "/", ""} },
			map[string]string{"max": "ok", "*": "403"}},
		{"unknown blob", func(string) req { return req{"GET", "/blob/blob/" + unknownHash + "/", ""} },
			map[string]string{"anon": "403", "badtoken": "403", "*": "404"}},
		{"submit task", func(string) req {
			return req{"POST", "/task/task/", `{"image": "i", "args": ["true"], "requires": ["never"]}`}
		},
			map[string]string{"alice": "ok", "bob": "ok", "*": "403"}},
		{"read task", func(string) req { return req{"GET", "/task/task/" + f.assigned("alice", "node") + "/", ""} },
			map[string]string{"alice": "ok", "node": "ok", "ivy": "ok", "max": "ok", "*": "403"}},
		{"query task", func(string) req { return req{"PUT", "/task/task/" + f.assigned("alice", "node") + "/", ""} },
			map[string]string{"alice": "ok", "node": "ok", "ivy": "ok", "max": "ok", "*": "403"}},
		{"delete task", func(string) req { return req{"DELETE", "/task/task/" + f.assigned("alice", "node") + "/", ""} },
			map[string]string{"alice": "ok", "max": "ok", "*": "403"}},
		{"unknown task", func(string) req { return req{"GET", "/task/task/" + unknownKey + "/", ""} },
			map[string]string{"anon": "403", "badtoken": "403", "*": "404"}},
		{"post result", func(string) req {
			return req{"POST", "/task/result/", fmt.Sprintf(`{"id": %q, "result": 0}`, f.assigned("alice", "node"))}
		}, map[string]string{"node": "ok", "*": "403"}},
		{"post result for unknown task", func(string) req {
			return req{"POST", "/task/result/", fmt.Sprintf(`{"id": %q, "result": 0}`, unknownKey)}
		}, map[string]string{"*": "403"}},
		{"read result", func(string) req { return req{"GET", "/task/result/" + f.resolved("alice", "node") + "/", ""} },
			map[string]string{"alice": "ok", "ivy": "ok", "max": "ok", "*": "403"}},
		{"read missing result", func(string) req { return req{"GET", "/task/result/" + f.assigned("alice", "node") + "/", ""} },
			map[string]string{"alice": "404", "ivy": "404", "max": "404", "*": "403"}},
		{"result of unknown task", func(string) req { return req{"GET", "/task/result/" + unknownKey + "/", ""} },
			map[string]string{"anon": "403", "badtoken": "403", "*": "fail"}},
		{"delete result", func(string) req { return req{"DELETE", "/task/result/" + f.resolved("alice", "node") + "/", ""} },
			map[string]string{"alice": "ok", "max": "ok", "*": "403"}},
		{"dequeue", func(string) req {
			return req{"POST", "/queue/dequeue/", `{"concurency": 1, "tags": ["nothing-has-this"]}`}
		},
			map[string]string{"node": "ok", "node2": "ok", "*": "403"}},
		{"heartbeat", func(string) req { return req{"POST", "/queue/heartbeat/", `{}`} },
			map[string]string{"node": "ok", "node2": "ok", "*": "403"}},
		{"wrong method: settings", func(string) req { return req{"DELETE", "/settings/", ""} },
			map[string]string{"anon": "403", "badtoken": "403", "*": "405"}},
		{"wrong method: dequeue", func(string) req { return req{"GET", "/queue/dequeue/", ""} },
			map[string]string{"anon": "403", "badtoken": "403", "*": "405"}},
		{"wrong method: task list", func(string) req { return req{"GET", "/task/task/", ""} },
			map[string]string{"anon": "403", "badtoken": "403", "*": "405"}},
		{"wrong method: task", func(string) req { return req{"PATCH", "/task/task/" + f.assigned("alice", "node") + "/", ""} },
			map[string]string{"alice": "405", "node": "405", "ivy": "405", "max": "405", "*": "403"}},
		{"wrong method: upload", func(string) req { return req{"GET", "/blob/reference/", ""} },
			map[string]string{"anon": "403", "badtoken": "403", "*": "405"}},
		{"unknown path", func(string) req { return req{"GET", "/nothing/here/", ""} },
			map[string]string{"*": "404"}},
	}
	for _, c := range cases {
		for _, who := range roles {
			want := c.want[who]
			if want == "" {
				want = c.want["*"]
			}
			t.Run(c.name+"/"+who, func(t *testing.T) {
				rq := c.setup(who)
				cl := &tokenClient{t: t, base: e.base, hc: e.tok("alice").hc}
				switch who {
				case "anon":
				case "badtoken":
					cl.token = "kt_0000"
				default:
					cl.token = e.tokens[who]
				}
				var body []byte
				if rq.body != "" {
					body = []byte(rq.body)
				}
				a := cl.do(rq.method, rq.path, body)
				switch want {
				case "ok":
					if a.code != 200 || (a.json != nil && a.status() != "OK") {
						t.Errorf("%s %s as %s: want OK, got %v", rq.method, rq.path, who, a)
					}
				case "fail":
					if a.code != 200 || a.status() != "FAIL" || a.message() == "" {
						t.Errorf("%s %s as %s: want FAIL, got %v", rq.method, rq.path, who, a)
					}
				default:
					if fmt.Sprint(a.code) != want {
						t.Errorf("%s %s as %s: want %s, got %v", rq.method, rq.path, who, want, a)
					}
					if a.code == 403 && a.json != nil {
						t.Errorf("403 must be bare, got JSON %s", a.body)
					}
				}
			})
		}
	}
}
