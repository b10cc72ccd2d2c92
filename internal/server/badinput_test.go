package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/server"
)

// metric reads one sample of the server's /metrics.
func (e *env) metric(t *testing.T, sample string) string {
	t.Helper()
	resp, err := http.Get(e.base + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			return rest
		}
	}
	return ""
}

// rawRequest writes head and body on a fresh connection and closes it
// without waiting for an answer: a client that goes away mid-upload.
func rawRequest(t *testing.T, addr, head string, body []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, head)
	c.Write(body)
	c.Close()
}

// Bad input gets a clear answer and changes nothing: rows and blob files
// are counted before and after every case.
func TestBadInput(t *testing.T) {
	e := newEnv(t, func(c *server.Config) {
		c.MaxJSONBody = 64 << 10
		c.MaxBlobSize = 4 << 10
	})
	e.standardUsers()
	alice, bob, node, node2 := e.tok("alice"), e.tok("bob"), e.tok("node"), e.tok("node2")
	py := e.py("alice")
	aliceRef := alice.upload([]byte("alice's file"))
	bobRef := bob.upload([]byte("bob's file"))
	assigned := alice.submit(task(map[string]any{"requires": []string{"bad-input"}}), nil)
	dequeue(t, node, map[string]any{"tags": []string{"bad-input"}})
	resolved := alice.submit(task(map[string]any{"requires": []string{"bad-input-2"}}), nil)
	dequeue(t, node, map[string]any{"tags": []string{"bad-input-2"}})
	outRef := node.upload([]byte("output"))
	resolvedResult := map[string]any{"id": resolved, "result": 0, "files": map[string]any{"out": map[string]any{"reference": outRef}}}
	mustOK(t, node.postJSON("/task/result/", resolvedResult))
	addr := strings.TrimPrefix(e.ts.URL, "http://")

	postTask := func(body string) func() answer {
		return func() answer { return alice.do("POST", "/task/task/", []byte(body)) }
	}
	postResult := func(c *tokenClient, body string) func() answer {
		return func() answer { return c.do("POST", "/task/result/", []byte(body)) }
	}
	cases := []struct {
		name   string
		do     func() answer
		code   int
		status string // "FAIL" when code is 200
		msg    string // part of the message or body
	}{
		{"malformed JSON", postTask(`{"image": "x", "args": [`), 200, "FAIL", "kolejka_task.json"},
		{"not an object", postTask(`["image"]`), 200, "FAIL", "expected a JSON object"},
		{"unknown top-level key", postTask(`{"image": "x", "args": ["a"], "imagee": "y"}`), 200, "FAIL", "imagee"},
		{"unknown limit key", postTask(`{"image": "x", "args": ["a"], "limits": {"memmory": "1G"}}`), 200, "FAIL", "limits.memmory"},
		{"bad size unit", postTask(`{"image": "x", "args": ["a"], "limits": {"memory": "64MiB"}}`), 200, "FAIL", `"64MiB" is not a size`},
		{"bad time unit", postTask(`{"image": "x", "args": ["a"], "limits": {"time": "1h"}}`), 200, "FAIL", `"1h" is not a time`},
		{"bad boolean", postTask(`{"image": "x", "args": ["a"], "limits": {"network": "maybe"}}`), 200, "FAIL", "limits.network"},
		{"negative limit", postTask(`{"image": "x", "args": ["a"], "limits": {"pids": -1}}`), 200, "FAIL", "limits.pids"},
		{"missing image", postTask(`{"args": ["a"]}`), 200, "FAIL", "image: missing"},
		{"empty args", postTask(`{"image": "x", "args": []}`), 200, "FAIL", "args: missing or empty"},
		{"path traversal in a file name", postTask(fmt.Sprintf(`{"image": "x", "args": ["a"], "files": {"../etc/passwd": {"reference": %q}}}`, aliceRef)), 200, "FAIL", `files["../etc/passwd"]`},
		{"absolute file name", postTask(fmt.Sprintf(`{"image": "x", "args": ["a"], "files": {"/etc/passwd": {"reference": %q}}}`, aliceRef)), 200, "FAIL", `files["/etc/passwd"]`},
		{"path traversal in a file path", postTask(fmt.Sprintf(`{"image": "x", "args": ["a"], "files": {"in": {"path": "../../secret", "reference": %q}}}`, aliceRef)), 200, "FAIL", `files["in"].path`},
		{"name clashing with kolejka_task.json", postTask(fmt.Sprintf(`{"image": "x", "args": ["a"], "files": {"kolejka_task.json": {"reference": %q}}}`, aliceRef)), 200, "FAIL", "clashes with kolejka_task.json"},
		{"file without a reference", postTask(`{"image": "x", "args": ["a"], "files": {"in": {"path": "in"}}}`), 200, "FAIL", `files["in"].reference: missing`},
		{"unknown reference", postTask(`{"image": "x", "args": ["a"], "files": {"in": {"reference": "0123456789abcdef0123456789abcdef"}}}`), 200, "FAIL", "is unknown"},
		{"another user's reference", postTask(fmt.Sprintf(`{"image": "x", "args": ["a"], "files": {"in": {"reference": %q}}}`, bobRef)), 200, "FAIL", "belongs to another user"},
		{"stdin not a file", postTask(`{"image": "x", "args": ["a"], "stdin": "in"}`), 200, "FAIL", "stdin"},
		{"callback to a non-http URL", postTask(`{"image": "x", "args": ["a"], "callback_url": "ftp://example.com/x"}`), 200, "FAIL", "callback_url"},
		{"oversized JSON body", postTask(`{"image": "x", "args": ["` + strings.Repeat("a", 70<<10) + `"]}`), 413, "", "larger than 65536 bytes"},
		{"oversized blob (Content-Length)", func() answer { return alice.do("POST", "/blob/reference/", make([]byte, 5<<10)) }, 413, "", "larger than 4096 bytes"},
		{"oversized blob (chunked)", func() answer {
			req, _ := http.NewRequest("POST", e.base+"blob/reference/", io.MultiReader(strings.NewReader(strings.Repeat("x", 5<<10))))
			req.ContentLength = -1
			req.Header.Set("Authorization", "Bearer "+e.tokens["alice"])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return readAnswer(t, resp)
		}, 413, "", "larger than 4096 bytes"},
		{"malformed hash in dedup", func() answer { return alice.do("POST", "/blob/blob/xyz/", nil) }, 404, "", ""},
		{"upper-case hash in dedup", func() answer {
			return alice.do("POST", "/blob/blob/"+strings.ToUpper(sha([]byte("alice's file")))+"/", nil)
		}, 404, "", ""},
		{"unknown hash in dedup", func() answer { return alice.do("POST", "/blob/blob/"+sha([]byte("never stored"))+"/", nil) }, 404, "", ""},
		{"bad credentials", func() answer { return newPyClient(t, e.base).login("alice", "guess") }, 200, "FAIL", "invalid username or password"},
		{"bad bearer token", func() answer {
			return (&tokenClient{t: t, base: e.base, token: "kt_guess", hc: http.DefaultClient}).do("POST", "/task/task/", []byte(`{"image": "x", "args": ["a"]}`))
		}, 403, "", "invalid bearer token"},
		{"wrong CSRF token", func() answer {
			req, _ := http.NewRequest("POST", py.url("/task/task/"), strings.NewReader(`{"image": "x", "args": ["a"]}`))
			req.Header.Set("X-CSRFToken", "wrongwrongwrongwrong")
			req.Header.Set("Referer", e.base)
			resp, err := py.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return readAnswer(t, resp)
		}, 403, "", "CSRF token missing or incorrect"},
		{"result for a task not assigned to the poster", postResult(node2, fmt.Sprintf(`{"id": %q, "result": 0}`, assigned)), 403, "", "not assigned to you"},
		{"result for an unknown task", postResult(node, `{"id": "0123456789abcdef0123456789abcdef", "result": 0}`), 403, "", "no such task"},
		{"result without id", postResult(node, `{"result": 0}`), 200, "FAIL", "id: missing"},
		{"result with an unknown key", postResult(node, fmt.Sprintf(`{"id": %q, "exit": 0}`, assigned)), 200, "FAIL", "exit"},
		{"result with a bad status", postResult(node, fmt.Sprintf(`{"id": %q, "status": "WRONG"}`, assigned)), 200, "FAIL", "status"},
		{"result with a file without reference", postResult(node, fmt.Sprintf(`{"id": %q, "files": {"out": {"path": "out"}}}`, assigned)), 200, "FAIL", `files["out"].reference: missing`},
		{"result with another user's reference", postResult(node, fmt.Sprintf(`{"id": %q, "files": {"out": {"reference": %q}}}`, assigned, bobRef)), 200, "FAIL", "belongs to another user"},
		{"result with an unknown reference", postResult(node, fmt.Sprintf(`{"id": %q, "files": {"out": {"reference": "0123456789abcdef0123456789abcdef"}}}`, assigned)), 200, "FAIL", "is unknown"},
		{"replayed result (answered OK, nothing stored)", func() answer { return node.postJSON("/task/result/", resolvedResult) }, 200, "OK", ""},
		{"second, different result", postResult(node, fmt.Sprintf(`{"id": %q, "result": 1}`, resolved)), 200, "FAIL", "already has a result"},
		{"dequeue with an unknown key", func() answer { return node.do("POST", "/queue/dequeue/", []byte(`{"concurrency": 2}`)) }, 200, "FAIL", "concurrency"},
		{"dequeue with bad limits", func() answer { return node.do("POST", "/queue/dequeue/", []byte(`{"limits": {"memory": "lots"}}`)) }, 200, "FAIL", `dequeue limits: memory: "lots" is not a size`},
		{"dequeue with trailing data", func() answer { return node.do("POST", "/queue/dequeue/", []byte(`{} {}`)) }, 200, "FAIL", "unexpected data"},
		{"a node deleting the owner's reference", func() answer {
			return node.do("DELETE", "/blob/reference/"+outRefOwnedBy(t, e, resolved)+"/", nil)
		}, 403, "", "the reference belongs to another user"},
		{"owner deleting a reference a result uses", func() answer {
			return alice.do("DELETE", "/blob/reference/"+outRefOwnedBy(t, e, resolved)+"/", nil)
		}, 200, "FAIL", "is used by the result of task " + resolved},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshot()
			a := c.do()
			if a.code != c.code {
				t.Fatalf("got %v, want %d", a, c.code)
			}
			if c.status != "" && a.status() != c.status {
				t.Fatalf("got %v, want status %s", a, c.status)
			}
			text := a.message()
			if a.json == nil {
				text = string(a.body)
			}
			if !strings.Contains(text, c.msg) {
				t.Errorf("answer %q does not name %q", text, c.msg)
			}
			after := e.snapshot()
			if !reflect.DeepEqual(before, after) {
				t.Errorf("state changed: %+v → %+v", before, after)
			}
			if tmp := e.tempFiles(); len(tmp) != 0 {
				t.Errorf("temp files left: %v", tmp)
			}
		})
	}

	// Uploads cut short by the client store nothing.
	for _, c := range []struct{ name, head string }{
		{"truncated upload (Content-Length)", "POST /kolejka/blob/reference/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + e.tokens["alice"] + "\r\nContent-Length: 4000\r\n\r\n"},
		{"truncated upload (chunked)", "POST /kolejka/blob/reference/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + e.tokens["alice"] + "\r\nTransfer-Encoding: chunked\r\n\r\nfa0\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshot()
			sample := `kolejka_http_requests_total{code="400",route="/blob/reference/"}`
			seen := e.metric(t, sample)
			rawRequest(t, addr, c.head, []byte(strings.Repeat("y", 1000)))
			waitFor(t, "the server to see the cut", func() bool { return e.metric(t, sample) != seen })
			if after := e.snapshot(); !reflect.DeepEqual(before, after) {
				t.Errorf("state changed: %+v → %+v", before, after)
			}
			if tmp := e.tempFiles(); len(tmp) != 0 {
				t.Errorf("temp files left: %v", tmp)
			}
		})
	}
}

// outRefOwnedBy is the reference of the "out" file of a task's result.
func outRefOwnedBy(t *testing.T, e *env, key string) string {
	a := mustOK(t, e.tok("max").do("GET", "/task/result/"+key+"/", nil))
	return a.json["result"].(map[string]any)["files"].(map[string]any)["out"].(map[string]any)["reference"].(string)
}
