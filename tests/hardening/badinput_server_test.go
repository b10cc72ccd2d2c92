package hardening_test

// Bad input to the server's HTTP API, over real HTTP (httptest) to a real
// server on a real SQLite file: the answer names the problem (a FAIL
// message, or a 403/404/413 with its reason), and nothing changed — every
// row of every table, the blob files and the upload temp files are the same
// before and after. Request bodies go through both ways in: a bearer token,
// and Kolejka's session cookie with its CSRF token.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/tests/hardening"
)

// apiServer is a server on a loopback listener over a data folder of the
// test's, with clients alice and bob, processors node and node2.
type apiServer struct {
	srv    *server.Server
	ts     *httptest.Server
	data   string
	tokens map[string]string
}

func newAPIServer(t *testing.T, adjust func(*server.Config)) *apiServer {
	t.Helper()
	cfg := server.Config{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if adjust != nil {
		adjust(&cfg)
	}
	srv, err := server.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &apiServer{srv: srv, ts: httptest.NewServer(srv.Handler()), data: cfg.DataDir, tokens: map[string]string{}}
	t.Cleanup(func() {
		s.ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	for _, u := range []struct {
		name string
		role server.Role
	}{{"alice", server.Clients}, {"bob", server.Clients}, {"node", server.Processors}, {"node2", server.Processors}} {
		if err := srv.AddUser(context.Background(), u.name, u.name+"-password", u.role); err != nil {
			t.Fatal(err)
		}
		tok, err := srv.NewToken(context.Background(), u.name)
		if err != nil {
			t.Fatal(err)
		}
		s.tokens[u.name] = tok
	}
	return s
}

func (s *apiServer) state(t testing.TB) serverState { return stateOf(t, s.data) }

// apiClient is a way in: a bearer token, or a session (cookie + CSRF).
type apiClient struct {
	s       *apiServer
	token   string
	session bool
	jar     *cookiejar.Jar
	hc      *http.Client
}

func (s *apiServer) bearer(user string) *apiClient {
	return &apiClient{s: s, token: s.tokens[user], hc: &http.Client{}}
}

// sessionOf signs user in as Kolejka's client does: GET /logout/ for the
// csrftoken cookie, POST /login/ with it.
func (s *apiServer) sessionOf(t testing.TB, user string) *apiClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &apiClient{s: s, session: true, jar: jar, hc: &http.Client{Jar: jar}}
	c.do(t, "GET", "/logout/", nil)
	a := c.do(t, "POST", "/login/", []byte(url.Values{"username": {user}, "password": {user + "-password"}}.Encode()),
		header("Content-Type", "application/x-www-form-urlencoded"))
	if a.status() != "OK" {
		t.Fatalf("login as %s: %v", user, a)
	}
	return c
}

func (c *apiClient) cookie(name string) string {
	u, _ := url.Parse(c.s.ts.URL)
	for _, ck := range c.jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// header sets a request header (an empty value removes it).
func header(k, v string) func(*http.Request) {
	return func(r *http.Request) {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
}

// answer is a response as a test sees it.
type answer struct {
	code int
	body []byte
	json map[string]any
}

func (a answer) status() string { s, _ := a.json["status"].(string); return s }

// text is what the caller is told: the FAIL message, or the body.
func (a answer) text() string {
	if m, ok := a.json["message"].(string); ok {
		return m
	}
	return strings.TrimSpace(string(a.body))
}

func (a answer) String() string {
	if a.json != nil && a.status() != "" {
		return fmt.Sprintf("%d %s %s", a.code, a.status(), short(a.text(), 240))
	}
	return fmt.Sprintf("%d %s", a.code, short(a.text(), 240))
}

// do sends a request the way this client does (session requests carry the
// CSRF token and a Referer of the server), then applies mods.
func (c *apiClient) do(t testing.TB, method, path string, body []byte, mods ...func(*http.Request)) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, c.s.ts.URL+path, rd)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.session {
		req.Header.Set("X-CSRFToken", c.cookie("csrftoken"))
		req.Header.Set("Referer", c.s.ts.URL+"/")
	}
	for _, m := range mods {
		m(req)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, body: data}
	if resp.Header.Get("Content-Type") == "application/json" {
		json.Unmarshal(data, &a.json)
	}
	return a
}

// upload stores bytes and returns the reference key and the blob's hash.
func (c *apiClient) upload(t testing.TB, data []byte) (string, string) {
	t.Helper()
	a := c.do(t, "POST", "/blob/reference/", data)
	if a.status() != "OK" {
		t.Fatalf("upload: %v", a)
	}
	ref := a.json["reference"].(map[string]any)
	return ref["key"].(string), ref["blob"].(string)
}

// mustPost posts a JSON body and requires OK.
func (c *apiClient) mustPost(t testing.TB, path, body string) answer {
	t.Helper()
	a := c.do(t, "POST", path, []byte(body))
	if a.code != 200 || a.status() != "OK" {
		t.Fatalf("POST %s %s: %v", path, body, a)
	}
	return a
}

// metric reads one sample of /metrics.
func (s *apiServer) metric(t testing.TB, sample string) string {
	t.Helper()
	resp, err := http.Get(s.ts.URL + "/metrics")
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

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// serverCase is one bad request; run sends it through client c.
type serverCase struct {
	id, name string
	ways     []string // "bearer", "session": the ways in to try; none: run decides
	run      func(t *testing.T, c *apiClient) answer
	code     int    // HTTP status
	status   string // "FAIL" or "OK" when code is 200
	want     []string
}

func TestBadInputServer(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, func(c *server.Config) {
		c.MaxJSONBody = 64 << 10
		c.MaxBlobSize = 64 << 10
	})
	alice, bob, node, node2 := s.bearer("alice"), s.bearer("bob"), s.bearer("node"), s.bearer("node2")
	aliceSession := s.sessionOf(t, "alice")
	aliceRef, _ := alice.upload(t, []byte("alice's input"))
	bobRef, _ := bob.upload(t, []byte("bob's input"))
	submit := func(requires string) string {
		a := alice.mustPost(t, "/task/task/", `{"image": "kolejka-test:latest", "args": ["true"], "requires": ["`+requires+`"]}`)
		return a.json["task"].(map[string]any)["id"].(string)
	}
	held := submit("held")
	node.mustPost(t, "/queue/dequeue/", `{"concurency": 1, "limits": {}, "tags": ["held"]}`)
	resolved := submit("done")
	node.mustPost(t, "/queue/dequeue/", `{"concurency": 1, "limits": {}, "tags": ["done"]}`)
	outRef, _ := node.upload(t, []byte("output\n"))
	resolvedResult := fmt.Sprintf(`{"id": %q, "result": 0, "status": "OK", "files": {"out": {"reference": %q}}}`, resolved, outRef)
	stored := node.mustPost(t, "/task/result/", resolvedResult)
	submit("queued") // a task no node took: a bad dequeue must not hand it out

	task := func(body string) func(*testing.T, *apiClient) answer {
		return func(t *testing.T, c *apiClient) answer { return c.do(t, "POST", "/task/task/", []byte(body)) }
	}
	as := func(c *apiClient, method, path, body string, mods ...func(*http.Request)) func(*testing.T, *apiClient) answer {
		return func(t *testing.T, _ *apiClient) answer { return c.do(t, method, path, []byte(body), mods...) }
	}
	img := `"image": "kolejka-test:latest", "args": ["true"]`
	both := []string{"bearer", "session"}
	taskExpect := "FAIL naming kolejka_task.json and the field; nothing stored"
	cases := []serverCase{
		{id: "BS01", name: "task: malformed JSON", ways: both, run: task(`{"image": "x", "args": [`), code: 200, status: "FAIL", want: []string{"kolejka_task.json"}},
		{id: "BS02", name: "task: a JSON array, not an object", ways: both, run: task(`["image"]`), code: 200, status: "FAIL", want: []string{"kolejka_task.json", "JSON object"}},
		{id: "BS03", name: "task: wrong type (args a string)", ways: both, run: task(`{"image": "x", "args": "true"}`), code: 200, status: "FAIL", want: []string{"kolejka_task.json", "args"}},
		{id: "BS04", name: "task: wrong type (limits.memory a boolean)", ways: both, run: task(`{` + img + `, "limits": {"memory": true}}`), code: 200, status: "FAIL", want: []string{"limits.memory"}},
		{id: "BS05", name: "task: unknown key", ways: both, run: task(`{` + img + `, "imagee": "y"}`), code: 200, status: "FAIL", want: []string{"kolejka_task.json", "imagee"}},
		{id: "BS06", name: "task: unknown limit", ways: both, run: task(`{` + img + `, "limits": {"memmory": "1G"}}`), code: 200, status: "FAIL", want: []string{"limits.memmory"}},
		{id: "BS07", name: "task: bad size unit (64MiB)", ways: both, run: task(`{` + img + `, "limits": {"memory": "64MiB"}}`), code: 200, status: "FAIL", want: []string{"limits.memory", `"64MiB" is not a size`}},
		{id: "BS08", name: "task: bad time unit (1h)", ways: both, run: task(`{` + img + `, "limits": {"time": "1h"}}`), code: 200, status: "FAIL", want: []string{"limits.time", `"1h" is not a time`}},
		{id: "BS09", name: `task: bad boolean ("maybe")`, ways: both, run: task(`{` + img + `, "limits": {"network": "maybe"}}`), code: 200, status: "FAIL", want: []string{"limits.network"}},
		{id: "BS10", name: "task: path traversal in a file name", ways: both, run: task(fmt.Sprintf(`{`+img+`, "files": {"../etc/passwd": {"reference": %q}}}`, aliceRef)), code: 200, status: "FAIL", want: []string{`files["../etc/passwd"]`}},
		{id: "BS11", name: "task: absolute file name", ways: both, run: task(fmt.Sprintf(`{`+img+`, "files": {"/etc/passwd": {"reference": %q}}}`, aliceRef)), code: 200, status: "FAIL", want: []string{`files["/etc/passwd"]`}},
		{id: "BS12", name: "task: path traversal in a file path", ways: both, run: task(fmt.Sprintf(`{`+img+`, "files": {"in": {"path": "../../secret", "reference": %q}}}`, aliceRef)), code: 200, status: "FAIL", want: []string{`files["in"].path`}},
		{id: "BS13", name: "task: another user's reference", ways: both, run: task(fmt.Sprintf(`{`+img+`, "files": {"in": {"reference": %q}}}`, bobRef)), code: 200, status: "FAIL", want: []string{"kolejka_task.json", "belongs to another user"}},
		{id: "BS14", name: "task: unknown reference", ways: both, run: task(`{` + img + `, "files": {"in": {"reference": "0123456789abcdef0123456789abcdef"}}}`), code: 200, status: "FAIL", want: []string{"kolejka_task.json", "unknown"}},
		{id: "BS15", name: "task: callback to a host not allowed", ways: both, run: task(`{` + img + `, "callback_url": "http://169.254.169.254/latest"}`), code: 200, status: "FAIL", want: []string{"callback_url"}},
		{id: "BS16", name: "task: oversized body (70 KiB over a 64 KiB cap)", ways: both, run: task(`{` + img + `, "environment": {"A": "` + strings.Repeat("a", 70<<10) + `"}}`), code: 413, want: []string{"larger than 65536 bytes"}},
		{id: "BS17", name: "blob: oversized upload (Content-Length)", ways: both, run: func(t *testing.T, c *apiClient) answer {
			return c.do(t, "POST", "/blob/reference/", make([]byte, 65<<10))
		}, code: 413, want: []string{"larger than 65536 bytes"}},
		{id: "BS18", name: "blob: oversized upload (chunked, no length)", ways: both, run: func(t *testing.T, c *apiClient) answer {
			return c.do(t, "POST", "/blob/reference/", nil, func(r *http.Request) {
				r.Body = io.NopCloser(io.MultiReader(strings.NewReader(strings.Repeat("x", 65<<10))))
				r.ContentLength = -1
			})
		}, code: 413, want: []string{"larger than 65536 bytes"}},
		{id: "BS19", name: "blob: bytes that do not match the hash they are sent under (dedup path)", ways: both, run: func(t *testing.T, c *apiClient) answer {
			return c.do(t, "POST", "/blob/blob/"+sha([]byte("what the hash names"))+"/", []byte("other bytes entirely"))
		}, code: 404, want: []string{}},
		{id: "BS20", name: "blob: malformed hash (dedup path)", ways: both, run: func(t *testing.T, c *apiClient) answer {
			return c.do(t, "POST", "/blob/blob/"+strings.ToUpper(sha([]byte("alice's input")))+"/", nil)
		}, code: 404, want: []string{}},
		{id: "BS21", name: "login: wrong password", run: func(t *testing.T, _ *apiClient) answer {
			return loginAttempt(t, s, "username=alice&password=guess")
		}, code: 200, status: "FAIL", want: []string{"invalid username or password"}},
		{id: "BS22", name: "login: unknown user (told apart from a wrong password? no)", run: func(t *testing.T, _ *apiClient) answer {
			return loginAttempt(t, s, "username=mallory&password=guess")
		}, code: 200, status: "FAIL", want: []string{"invalid username or password"}},
		{id: "BS23", name: "login: body not a form", run: func(t *testing.T, _ *apiClient) answer {
			return loginAttempt(t, s, "username=alice&password=%zz")
		}, code: 200, status: "FAIL", want: []string{"login", "not a form"}},
		{id: "BS24", name: "login: oversized body", run: func(t *testing.T, _ *apiClient) answer {
			return loginAttempt(t, s, "username=alice&password="+strings.Repeat("p", 70<<10))
		}, code: 413, want: []string{"larger than 65536 bytes"}},
		{id: "BS25", name: "bad bearer token", run: as(&apiClient{s: s, token: "kt_" + strings.Repeat("0", 64), hc: &http.Client{}}, "POST", "/task/task/", `{`+img+`}`),
			code: 403, want: []string{"invalid bearer token"}},
		{id: "BS26", name: "malformed Authorization header (Basic)", run: as(&apiClient{s: s, hc: &http.Client{}}, "POST", "/task/task/", `{`+img+`}`, header("Authorization", "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ=")),
			code: 403, want: []string{"invalid bearer token"}},
		{id: "BS27", name: "session: CSRF token missing", run: as(aliceSession, "POST", "/task/task/", `{`+img+`}`, header("X-CSRFToken", "")),
			code: 403, want: []string{"CSRF"}},
		{id: "BS28", name: "session: wrong CSRF token", run: as(aliceSession, "POST", "/task/task/", `{`+img+`}`, header("X-CSRFToken", strings.Repeat("w", 32))),
			code: 403, want: []string{"CSRF token missing or incorrect"}},
		{id: "BS29", name: "session: right token, foreign Referer", run: as(aliceSession, "POST", "/task/task/", `{`+img+`}`, header("Referer", "http://evil.example/")),
			code: 403, want: []string{"CSRF", "Referer"}},
		{id: "BS30", name: "a processor submitting a task", run: as(node, "POST", "/task/task/", `{`+img+`}`), code: 403, want: []string{"only clients submit tasks"}},
		{id: "BS31", name: "a client posting a result", run: as(alice, "POST", "/task/result/", fmt.Sprintf(`{"id": %q, "result": 0}`, held)), code: 403, want: []string{"only processors post results"}},
		{id: "BS32", name: "result for a task not assigned to the poster", run: as(node2, "POST", "/task/result/", fmt.Sprintf(`{"id": %q, "result": 0}`, held)),
			code: 403, want: []string{"not assigned to you"}},
		{id: "BS33", name: "result for an unknown task", run: as(node, "POST", "/task/result/", `{"id": "0123456789abcdef0123456789abcdef", "result": 0}`),
			code: 403, want: []string{"no such task"}},
		{id: "BS34", name: "replayed result (a retry whose answer was lost)", run: as(node, "POST", "/task/result/", resolvedResult),
			code: 200, status: "OK", want: []string{}},
		{id: "BS35", name: "a second, different result", run: as(node, "POST", "/task/result/", fmt.Sprintf(`{"id": %q, "result": 1, "status": "RE"}`, resolved)),
			code: 200, status: "FAIL", want: []string{"already has a result"}},
		{id: "BS36", name: "result: unknown key", run: as(node, "POST", "/task/result/", fmt.Sprintf(`{"id": %q, "exit": 0}`, held)),
			code: 200, status: "FAIL", want: []string{"kolejka_result.json", "exit"}},
		{id: "BS37", name: "result: bad status", run: as(node, "POST", "/task/result/", fmt.Sprintf(`{"id": %q, "status": "WIN"}`, held)),
			code: 200, status: "FAIL", want: []string{"kolejka_result.json", "status"}},
		{id: "BS38", name: "result: file without a reference", run: as(node, "POST", "/task/result/", fmt.Sprintf(`{"id": %q, "files": {"out": {"path": "out"}}}`, held)),
			code: 200, status: "FAIL", want: []string{`files["out"].reference: missing`}},
		{id: "BS39", name: "result: another user's reference", run: as(node, "POST", "/task/result/", fmt.Sprintf(`{"id": %q, "files": {"out": {"reference": %q}}}`, held, bobRef)),
			code: 200, status: "FAIL", want: []string{"belongs to another user"}},
		{id: "BS40", name: "result: no id", run: as(node, "POST", "/task/result/", `{"result": 0}`), code: 200, status: "FAIL", want: []string{"id: missing"}},
		{id: "BS41", name: "dequeue: unknown key (concurrency, spelled right)", run: as(node, "POST", "/queue/dequeue/", `{"concurrency": 2, "limits": {}, "tags": ["queued"]}`),
			code: 200, status: "FAIL", want: []string{"dequeue", "concurrency"}},
		{id: "BS42", name: "dequeue: bad limits", run: as(node, "POST", "/queue/dequeue/", `{"limits": {"memory": "lots"}, "tags": ["queued"]}`),
			code: 200, status: "FAIL", want: []string{"dequeue limits", "memory", `"lots" is not a size`}},
		{id: "BS43", name: "dequeue: concurency 0", run: as(node, "POST", "/queue/dequeue/", `{"concurency": 0, "tags": ["queued"]}`),
			code: 200, status: "FAIL", want: []string{"concurency", "at least 1"}},
		{id: "BS44", name: "dequeue: trailing data after the object", run: as(node, "POST", "/queue/dequeue/", `{"tags": ["queued"]} {}`),
			code: 200, status: "FAIL", want: []string{"unexpected data"}},
		{id: "BS45", name: "dequeue: wrong type (wait a list)", run: as(node, "POST", "/queue/dequeue/", `{"tags": ["queued"], "wait": [1]}`),
			code: 200, status: "FAIL", want: []string{"wait"}},
		{id: "BS46", name: "heartbeat: wrong type (tasks a string)", run: as(node, "POST", "/queue/heartbeat/", fmt.Sprintf(`{"tasks": %q}`, held)),
			code: 200, status: "FAIL", want: []string{"heartbeat"}},
		{id: "BS47", name: "release: unknown key", run: as(node, "POST", "/queue/release/", fmt.Sprintf(`{"task": [%q]}`, held)),
			code: 200, status: "FAIL", want: []string{"release", "task"}},
		{id: "BS48", name: "result wait: bad unit (?wait=1h)", ways: both, run: func(t *testing.T, c *apiClient) answer {
			return c.do(t, "GET", "/task/result/"+held+"/?wait=1h", nil)
		}, code: 200, status: "FAIL", want: []string{"wait", `"1h" is not a time`}},
	}
	// The cases share the server: they run one at a time, each comparing
	// the whole state before and after.
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			expect := taskExpect
			switch {
			case c.code == 413:
				expect = "413 naming the cap; nothing stored, no temp file"
			case c.code == 403:
				expect = "403 with the reason; nothing stored"
			case c.code == 404:
				expect = "404 (the server dedups only bytes it has hashed itself); nothing stored"
			case c.status == "OK":
				expect = "OK with the result already stored; nothing new stored (one result per task)"
			case c.status == "FAIL" && !strings.HasPrefix(c.name, "task:"):
				expect = "FAIL naming the problem; nothing stored or changed"
			}
			r := caseOf(t, hardening.BadInput, c.id, "server: "+c.name, expect)
			clients := map[string]*apiClient{"bearer": alice, "session": aliceSession}
			ways := c.ways
			if len(ways) == 0 {
				ways = []string{""}
			}
			for _, way := range ways {
				before := s.state(t)
				a := c.run(t, clients[way])
				label := way
				if label != "" {
					label += ": "
				}
				r.Observe("%s%v", label, a)
				if a.code != c.code || (c.status != "" && a.status() != c.status) {
					t.Errorf("%sgot %v, want %d %s", label, a, c.code, c.status)
				}
				checkFragments(t, a.text(), c.want)
				if c.status == "OK" {
					if !bytes.Equal(a.body, stored.body) {
						t.Errorf("the replay was answered %s, not the stored result %s", a.body, stored.body)
					}
				}
				after := s.state(t)
				if !after.equal(before) {
					t.Errorf("%sthe server changed (tables %v): %v → %v", label, before.changed(after), before, after)
				}
			}
			r.Observe("server %s unchanged", s.state(t))
		})
	}

	// Uploads cut short by the client store nothing.
	for _, c := range []struct{ id, name, head string }{
		{"BS49", "blob: truncated upload (Content-Length 64000, 1000 bytes sent, connection closed)",
			"POST /blob/reference/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + s.tokens["alice"] + "\r\nContent-Length: 64000\r\n\r\n"},
		{"BS50", "blob: truncated upload (chunked, cut inside a chunk)",
			"POST /blob/reference/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + s.tokens["alice"] + "\r\nTransfer-Encoding: chunked\r\n\r\nfa00\r\n"},
	} {
		t.Run(c.id, func(t *testing.T) {
			r := caseOf(t, hardening.BadInput, c.id, "server: "+c.name, "the server sees the cut (400 counted), stores nothing, leaves no temp file")
			before := s.state(t)
			sample := `kolejka_http_requests_total{code="400",route="/blob/reference/"}`
			seen := s.metric(t, sample)
			conn, err := net.Dial("tcp", strings.TrimPrefix(s.ts.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(conn, c.head)
			conn.Write(bytes.Repeat([]byte("y"), 1000))
			conn.Close()
			gridtest.WaitFor(t, "the server to count the cut upload", 10*time.Second, func() bool { return s.metric(t, sample) != seen })
			r.Observe("400s on /blob/reference/: %q → %q", seen, s.metric(t, sample))
			if after := s.state(t); !after.equal(before) {
				t.Errorf("the server changed (tables %v): %v → %v", before.changed(after), before, after)
			}
			r.Observe("server %s unchanged", s.state(t))
		})
	}
}

// loginAttempt posts a login form in a fresh session (with its CSRF
// token, as Kolejka's client does).
func loginAttempt(t *testing.T, s *apiServer, form string) answer {
	jar, _ := cookiejar.New(nil)
	c := &apiClient{s: s, session: true, jar: jar, hc: &http.Client{Jar: jar}}
	c.do(t, "GET", "/logout/", nil)
	return c.do(t, "POST", "/login/", []byte(form), header("Content-Type", "application/x-www-form-urlencoded"))
}

// unchanged runs send and checks its answer (code, status, the fragments
// it must name) and that the server's state is what it was before.
func unchanged(t *testing.T, s *apiServer, r *hardening.Row, send func() answer, code int, status string, want []string) answer {
	t.Helper()
	before := s.state(t)
	a := send()
	r.Observe("%v", a)
	if a.code != code || (status != "" && a.status() != status) {
		t.Errorf("got %v, want %d %s", a, code, status)
	}
	checkFragments(t, a.text(), want)
	if after := s.state(t); !after.equal(before) {
		t.Errorf("the server changed (tables %v): %v → %v", before.changed(after), before, after)
	}
	r.Observe("server %s unchanged", s.state(t))
	return a
}
