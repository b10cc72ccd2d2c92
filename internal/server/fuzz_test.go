package server_test

// Fuzz targets for the decoders of the HTTP API: the bodies of task,
// result, dequeue, heartbeat, release and login requests, the ?wait=
// parameter and the Authorization header. Each input goes through the
// real handler of a real server (SQLite in a temporary folder), and the
// properties are the API's promises: never a 5xx, a refusal names its
// problem and stores nothing, and what is accepted is well-formed.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
)

// fuzzServer is a server for one fuzz target: clients alice, processor
// node; tokens by user.
type fuzzServer struct {
	srv    *server.Server
	h      http.Handler
	tokens map[string]string
}

func newFuzzServer(f *testing.F) *fuzzServer {
	f.Helper()
	srv, err := server.Open(server.Config{
		DataDir:     f.TempDir(),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		MaxJSONBody: 64 << 10,
		MaxWait:     5 * time.Millisecond,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	s := &fuzzServer{srv: srv, h: srv.Handler(), tokens: map[string]string{}}
	for _, u := range []struct {
		name string
		role server.Role
	}{{"alice", server.Clients}, {"node", server.Processors}} {
		if err := srv.AddUser(context.Background(), u.name, password(u.name), u.role); err != nil {
			f.Fatal(err)
		}
		tok, err := srv.NewToken(context.Background(), u.name)
		if err != nil {
			f.Fatal(err)
		}
		s.tokens[u.name] = tok
	}
	return s
}

// call sends one request as user (bearer) and returns the answer.
func (s *fuzzServer) call(t testing.TB, user, method, target string, body []byte, hdr ...string) answer {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+s.tokens[user])
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	return readAnswer(t, rec.Result())
}

// tasks counts the tasks the server holds.
func (s *fuzzServer) tasks(t testing.TB) int {
	list, err := s.srv.ListTasks(context.Background(), server.TaskFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(list)
}

// mustAnswer checks the promises every answer keeps: no 5xx; a 200 is a
// JSON status OK or FAIL, a FAIL has a message; a 403 and a 413 say why.
func mustAnswer(t *testing.T, a answer, codes ...int) {
	t.Helper()
	if a.code >= 500 {
		t.Fatalf("server error: %v", a)
	}
	ok := false
	for _, c := range codes {
		ok = ok || a.code == c
	}
	if !ok {
		t.Fatalf("answered %v, want one of %v", a, codes)
	}
	switch a.code {
	case http.StatusOK:
		if a.status() != "OK" && a.status() != "FAIL" {
			t.Fatalf("a 200 that is not OK or FAIL: %v", a)
		}
		if a.status() == "FAIL" && a.message() == "" {
			t.Fatalf("a FAIL without a message: %v", a)
		}
	case http.StatusForbidden, http.StatusRequestEntityTooLarge:
		if len(bytes.TrimSpace(a.body)) == 0 {
			t.Fatalf("a %d without a reason", a.code)
		}
	}
}

func FuzzTaskBody(f *testing.F) {
	s := newFuzzServer(f)
	for _, seed := range []string{
		`{"image": "kolejka-test:latest", "args": ["true"]}`,
		`{"image": "x", "args": ["a"], "limits": {"memory": "64M", "time": "1.5s", "network": "no", "cpus": 2}, "requires": ["a"], "exclusive": true}`,
		`{"image": "x", "args": ["a"], "environment": {"A": 1, "B": "b"}, "stdout": "o", "stderr": "o", "collect": [{"glob": "**/*.txt", "strip": 1, "prefix": "p"}]}`,
		`{"image": "x", "args": ["a"], "files": {"in": {"reference": "0123456789abcdef0123456789abcdef"}}}`,
		`{"image": "x", "args": ["a"], "limits": {"memmory": "1G"}}`,
		`{"image": "x", "args": [`, `[]`, `null`, ``, `{"id": "chosen", "image": "x", "args": ["a"]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := s.tasks(t)
		a := s.call(t, "alice", "POST", "/task/task/", body)
		mustAnswer(t, a, http.StatusOK, http.StatusRequestEntityTooLarge)
		after := s.tasks(t)
		if a.status() != "OK" {
			if after != before {
				t.Fatalf("a refused task was stored (%d → %d tasks): %v", before, after, a)
			}
			if a.code == http.StatusOK && !strings.Contains(a.message(), spec.TaskFile) {
				t.Fatalf("the refusal does not name %s: %q", spec.TaskFile, a.message())
			}
			return
		}
		if after != before+1 {
			t.Fatalf("an accepted task: %d → %d tasks", before, after)
		}
		raw, _ := json.Marshal(a.json["task"])
		task, err := spec.ParseTask(raw, "stored task")
		if err != nil {
			t.Fatalf("the stored task does not parse: %v\n%s", err, raw)
		}
		if !hex32.MatchString(task.ID) {
			t.Fatalf("the stored task's key %q is not the server's", task.ID)
		}
		if err := task.Validate(spec.Server); err != nil {
			t.Fatalf("the stored task is not valid: %v", err)
		}
		got := s.call(t, "alice", "GET", "/task/task/"+task.ID+"/", nil)
		back, _ := json.Marshal(got.json["task"])
		if !bytes.Equal(back, raw) {
			t.Fatalf("read back %s, stored %s", back, raw)
		}
	})
}

func FuzzResultBody(f *testing.F) {
	s := newFuzzServer(f)
	var keys []string
	for range 3 {
		a := s.call(f, "alice", "POST", "/task/task/", []byte(`{"image": "x", "args": ["a"]}`))
		keys = append(keys, a.json["task"].(map[string]any)["id"].(string))
	}
	s.call(f, "node", "POST", "/queue/dequeue/", []byte(`{"concurency": 3}`))
	for _, seed := range []string{
		`{"id": "` + keys[0] + `", "result": 0, "status": "OK"}`,
		`{"id": "` + keys[1] + `", "result": 137, "status": "TLE", "stats": {"time": "1.0s", "cpu": {"usage": "0.5s"}, "memory": {"max_usage": "1M"}}}`,
		`{"id": "` + keys[2] + `", "files": {"out": {"reference": "0123456789abcdef0123456789abcdef"}}}`,
		`{"id": "0123456789abcdef0123456789abcdef", "result": 0}`,
		`{"result": 0}`, `{"id": "` + keys[0] + `", "exit": 0}`, `[`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a := s.call(t, "node", "POST", "/task/result/", body)
		mustAnswer(t, a, http.StatusOK, http.StatusForbidden, http.StatusRequestEntityTooLarge)
		if a.status() == "FAIL" && !strings.Contains(a.message(), spec.ResultFile) && !strings.Contains(a.message(), "already has a result") {
			t.Fatalf("the refusal names neither %s nor the rule: %q", spec.ResultFile, a.message())
		}
		if a.status() == "OK" {
			raw, _ := json.Marshal(a.json["result"])
			res, err := spec.ParseResult(raw, "stored result")
			if err != nil {
				t.Fatalf("the stored result does not parse: %v\n%s", err, raw)
			}
			got := s.call(t, "alice", "GET", "/task/result/"+res.ID+"/", nil)
			back, _ := json.Marshal(got.json["result"])
			if !bytes.Equal(back, raw) {
				t.Fatalf("the task's result is %s, the post was answered %s", back, raw)
			}
		}
	})
}

func FuzzDequeueBody(f *testing.F) {
	s := newFuzzServer(f)
	for range 5 {
		s.call(f, "alice", "POST", "/task/task/", []byte(`{"image": "x", "args": ["a"], "limits": {"cpus": 1, "memory": "1G"}}`))
	}
	for _, seed := range []string{
		`{"concurency": 2, "limits": {"cpus": 4, "memory": "8G"}, "tags": ["a"]}`,
		`{"concurency": 1, "limits": {}, "tags": [], "wait": 0.001, "heartbeat": true, "defaults": {"cpus": 1}}`,
		`{"concurency": 1, "wait": "1m"}`, `{"concurency": 1, "queues": ["default", "x"]}`, `{"queues": ["../x"]}`, `{"queues": "a"}`,
		`{"concurrency": 2}`, `{"concurency": 0}`, `{"limits": {"memory": "lots"}}`, `{} {}`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		began := time.Now()
		a := s.call(t, "node", "POST", "/queue/dequeue/", body)
		mustAnswer(t, a, http.StatusOK, http.StatusRequestEntityTooLarge)
		if d := time.Since(began); d > 5*time.Second {
			t.Fatalf("a dequeue took %v with max_wait 5ms", d)
		}
		if a.status() == "FAIL" && !strings.Contains(a.message(), "dequeue") {
			t.Fatalf("the refusal does not say it is the dequeue's: %q", a.message())
		}
		if a.status() != "OK" {
			return
		}
		var req struct {
			Concurency *int `json:"concurency"`
		}
		json.Unmarshal(body, &req)
		want := 1
		if req.Concurency != nil {
			want = *req.Concurency
		}
		tasks, _ := a.json["tasks"].([]any)
		if len(tasks) > want {
			t.Fatalf("%d tasks handed out for concurency %d", len(tasks), want)
		}
		for _, x := range tasks {
			raw, _ := json.Marshal(x)
			if _, err := spec.ParseTask(raw, "handed out"); err != nil {
				t.Fatalf("a task handed out does not parse: %v", err)
			}
		}
	})
}

// A task made from a type (POST /type/<name>/task/): whatever the body, no
// 5xx; a refusal stores nothing; an accepted task has the type's shape,
// its values inside their own arguments (never more arguments).
func FuzzTypeTaskBody(f *testing.F) {
	s := newFuzzServer(f)
	typ := `{"name": "echo", "type": {"image": "x", "args": ["echo", "{v}", "n={n}"], "stdout": "{out}",
		"params": {"v": {"default": "d"}, "n": {}, "out": {"default": "out.txt"}}}}`
	if a := s.call(f, "alice", "POST", "/type/", []byte(typ)); a.status() != "OK" {
		f.Fatalf("type put: %v", a)
	}
	for _, seed := range []string{
		`{"params": {"n": "5"}}`, `{"params": {"n": "5", "v": "a b", "out": "x/y.txt"}}`, `{"params": {"n": "1", "out": "../x"}}`,
		`{"params": {"n": "1", "zzz": "1"}}`, `{"params": {}}`, `{"params": {"n": "1"}, "queue": "nope"}`,
		`{"params": {"n": "\" ], \"image\": \"evil"}}`, `{"params": {"n": "1"}, "limits": {"memory": "1G"}}`,
		`{"params": {"n": "1"}, "files": {"v": {"reference": "x"}}}`, `{"version": 7, "params": {"n": "1"}}`, `[]`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := s.tasks(t)
		a := s.call(t, "alice", "POST", "/type/echo/task/", body)
		// 404: a version of the type that does not exist.
		mustAnswer(t, a, http.StatusOK, http.StatusNotFound, http.StatusRequestEntityTooLarge)
		after := s.tasks(t)
		if a.status() != "OK" {
			if after != before {
				t.Fatalf("a refused body stored a task (%d → %d): %v", before, after, a)
			}
			return
		}
		if after != before+1 {
			t.Fatalf("an accepted body stored %d tasks", after-before)
		}
		raw, _ := json.Marshal(a.json["task"])
		task, err := spec.ParseTask(raw, "rendered")
		if err != nil {
			t.Fatalf("the rendered task does not parse: %v", err)
		}
		if task.Image != "x" || len(task.Args) != 3 || task.Args[0] != "echo" || !strings.HasPrefix(task.Args[2], "n=") {
			t.Fatalf("the rendered task lost the type's shape: image %q, args %q", task.Image, task.Args)
		}
		if err := task.Validate(spec.Server); err != nil {
			t.Fatalf("an accepted task does not validate: %v", err)
		}
	})
}

func FuzzHeartbeatReleaseBody(f *testing.F) {
	s := newFuzzServer(f)
	var keys []string
	for range 2 {
		a := s.call(f, "alice", "POST", "/task/task/", []byte(`{"image": "x", "args": ["a"]}`))
		keys = append(keys, a.json["task"].(map[string]any)["id"].(string))
	}
	s.call(f, "node", "POST", "/queue/dequeue/", []byte(`{"concurency": 2}`))
	for _, seed := range []string{
		`{"tasks": ["` + keys[0] + `"]}`, `{"tasks": []}`, `{}`, ``, `{"tasks": "x"}`, `{"task": []}`,
		`{"tasks": ["` + keys[0] + `", "` + keys[0] + `", "0123456789abcdef0123456789abcdef"]}`,
	} {
		f.Add(false, []byte(seed))
		f.Add(true, []byte(seed))
	}
	f.Fuzz(func(t *testing.T, release bool, body []byte) {
		path, name, field := "/queue/heartbeat/", "heartbeat", "tasks"
		if release {
			path, name, field = "/queue/release/", "release", "released"
		}
		a := s.call(t, "node", "POST", path, body)
		mustAnswer(t, a, http.StatusOK, http.StatusRequestEntityTooLarge)
		if a.status() == "FAIL" && !strings.HasPrefix(a.message(), name+":") {
			t.Fatalf("the refusal does not say it is the %s's: %q", name, a.message())
		}
		if a.status() != "OK" {
			return
		}
		for _, k := range asStrings(a.json[field]) {
			if k != keys[0] && k != keys[1] {
				t.Fatalf("%s %q: not a task of the node", field, k)
			}
		}
		var asked struct {
			Tasks []string `json:"tasks"`
		}
		json.Unmarshal(body, &asked)
		for _, k := range asStrings(a.json["lost"]) {
			if !slices.Contains(asked.Tasks, k) {
				t.Fatalf("lost %q: not asked for (%q)", k, asked.Tasks)
			}
		}
		if release {
			// Hand the node its tasks again for the next input.
			s.call(t, "node", "POST", "/queue/dequeue/", []byte(`{"concurency": 2}`))
		}
	})
}

func asStrings(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func FuzzLoginBody(f *testing.F) {
	s := newFuzzServer(f)
	good := url.Values{"username": {"alice"}, "password": {password("alice")}}.Encode()
	for _, seed := range []string{good, "username=alice&password=guess", "username=&password=", "password=%zz", "username=alice;password=x", ""} {
		f.Add(seed)
	}
	const csrf = "abcdefghijklmnopqrstuvwxyz012345"
	f.Fuzz(func(t *testing.T, form string) {
		a := s.call(t, "", "POST", "/login/", []byte(form), "Content-Type", "application/x-www-form-urlencoded",
			"Cookie", "csrftoken="+csrf, "X-CSRFToken", csrf)
		mustAnswer(t, a, http.StatusOK, http.StatusRequestEntityTooLarge)
		values, perr := url.ParseQuery(form)
		right := perr == nil && values.Get("username") == "alice" && values.Get("password") == password("alice")
		switch {
		case a.status() == "OK" && !right:
			t.Fatalf("signed in with %q", form)
		case a.status() == "FAIL" && right:
			t.Fatalf("refused the right credentials: %q", a.message())
		case a.status() == "FAIL" && a.message() != "invalid username or password" && !strings.HasPrefix(a.message(), "login: the body is not a form"):
			t.Fatalf("unexpected refusal %q", a.message())
		}
	})
}

func FuzzResultWait(f *testing.F) {
	s := newFuzzServer(f)
	a := s.call(f, "alice", "POST", "/task/task/", []byte(`{"image": "x", "args": ["a"]}`))
	key := a.json["task"].(map[string]any)["id"].(string)
	for _, seed := range []string{"1", "0.5", "1s", "1h", "-1", "1e9", "NaN", "", "2M", "1µ"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, wait string) {
		began := time.Now()
		a := s.call(t, "alice", "GET", "/task/result/"+key+"/?wait="+url.QueryEscape(wait), nil)
		mustAnswer(t, a, http.StatusOK, http.StatusNotFound)
		if d := time.Since(began); d > 5*time.Second {
			t.Fatalf("?wait=%q held the request %v with max_wait 5ms", wait, d)
		}
		if a.status() == "FAIL" && !strings.HasPrefix(a.message(), "wait:") {
			t.Fatalf("the refusal does not name wait: %q", a.message())
		}
		if a.status() == "OK" {
			t.Fatalf("a result for a task that has none: %v", a)
		}
	})
}

func FuzzAuthorization(f *testing.F) {
	s := newFuzzServer(f)
	tok := s.tokens["alice"]
	for _, seed := range []string{"Bearer " + tok, "bearer  " + tok + " ", "Bearer", "Bearer kt_guess", "Basic YWxpY2U6eA==", "Bearer " + tok + "x", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if strings.ContainsAny(h, "\r\n\x00") {
			return // not a header value a client can send
		}
		a := s.call(t, "", "GET", "/settings/", nil, "Authorization", h)
		scheme, token, found := strings.Cut(h, " ")
		right := found && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(token) == tok
		switch {
		case a.code >= 500:
			t.Fatalf("server error for %q: %v", h, a)
		case a.code == http.StatusOK && !right:
			t.Fatalf("signed in with %q", h)
		case a.code == http.StatusOK:
		case right:
			t.Fatalf("refused the right token %q: %v", h, a)
		case h == "":
			if a.code != http.StatusForbidden || !strings.Contains(string(a.body), "not signed in") {
				t.Fatalf("no credentials: %v", a)
			}
		case a.code != http.StatusForbidden || !strings.Contains(string(a.body), "invalid bearer token"):
			t.Fatalf("a bad Authorization %q: %v", h, a)
		}
	})
}
