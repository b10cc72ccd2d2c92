package server_test

// Test helpers: a real server on a loopback listener over a real SQLite
// file in t.TempDir(), and two Go clients. pyClient issues requests exactly
// as Kolejka's kolejka/client/client.py does (paths, methods, headers,
// cookie and CSRF dance, bodies); tokenClient is our own tools' way
// (Authorization: Bearer).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/kolejka-go/kolejka/internal/clock"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

type env struct {
	t      testing.TB
	dir    string
	cfg    server.Config
	srv    *server.Server
	ts     *httptest.Server
	base   string // server URL with prefix, ending in "/"
	tokens map[string]string
	paused chan struct{} // a long poll started waiting (server.SetPauseHook)
}

// newEnv starts a server; options adjust its configuration.
func newEnv(t testing.TB, opts ...func(*server.Config)) *env {
	t.Helper()
	cfg := server.Config{
		DataDir: t.TempDir(),
		Prefix:  "/kolejka/",
		Logger:  testLogger(t),
	}
	if os.Getenv("KOLEJKA_TEST_DATABASE") == "postgres" {
		cfg.Database = pgtest.Database(t) // the whole suite on PostgreSQL
	}
	for _, o := range opts {
		o(&cfg)
	}
	e := &env{t: t, dir: cfg.DataDir, tokens: map[string]string{}, paused: make(chan struct{}, 64)}
	server.SetPauseHook(&cfg, func() {
		select {
		case e.paused <- struct{}{}:
		default: // nobody counts pauses now
		}
	})
	e.cfg = cfg
	e.start()
	t.Cleanup(e.stop)
	return e
}

// withClock makes c the server's clock: the test ages leases, tokens and
// uploads by moving it.
func withClock(c *clock.Fake) func(*server.Config) {
	return func(cfg *server.Config) { cfg.Clock = c }
}

// newClock is a fake clock showing the present, so that what the server
// dates by it (task rows, tokens) reads sensibly next to what it does not.
func newClock() *clock.Fake { return clock.NewFake(time.Now()) }

// polling runs poll (a request that long-polls) in the background and
// returns once a long poll waits on the server, so that what the test does
// next happens while the poll waits rather than before it looked.
func (e *env) polling(poll func()) {
	e.t.Helper()
	for len(e.paused) > 0 {
		<-e.paused // from polls that have ended
	}
	go poll()
	select {
	case <-e.paused:
	case <-time.After(30 * time.Second):
		e.t.Fatal("no long poll waits on the server after 30 s")
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("KOLEJKA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (e *env) start() {
	e.t.Helper()
	srv, err := server.Open(e.cfg)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.srv = srv
	e.ts = httptest.NewServer(srv.Handler())
	e.base = e.ts.URL + srv.Config().Prefix
}

func (e *env) stop() {
	if e.ts != nil {
		e.ts.Close()
		e.ts = nil
	}
	if e.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			e.t.Errorf("Shutdown: %v", err)
		}
		e.srv = nil
	}
}

// restart stops the server and opens it again on the same folder.
func (e *env) restart() {
	e.t.Helper()
	e.stop()
	e.start()
}

func password(name string) string { return name + "-secret" }

// user adds a user with roles (password: name-secret) and a bearer token.
func (e *env) user(name string, roles server.Role) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.srv.AddUser(ctx, name, password(name), roles); err != nil {
		e.t.Fatalf("AddUser %s: %v", name, err)
	}
	tok, err := e.srv.NewToken(ctx, name)
	if err != nil {
		e.t.Fatalf("NewToken %s: %v", name, err)
	}
	e.tokens[name] = tok
}

// standardUsers adds the usual cast: clients alice and bob, processor
// node, inspector ivy, manager max.
func (e *env) standardUsers() {
	e.user("alice", server.Clients)
	e.user("bob", server.Clients)
	e.user("node", server.Processors)
	e.user("node2", server.Processors)
	e.user("ivy", server.Inspectors)
	e.user("max", server.Managers)
}

// db opens the server's database read-only, for counting rows (on
// PostgreSQL read-write, placeholders as the store's).
func (e *env) db() *sql.DB {
	e.t.Helper()
	if e.cfg.Database != "" {
		db, err := store.OpenSQL(e.cfg.Database)
		if err != nil {
			e.t.Fatal(err)
		}
		// Tests count rows often and close late: a kept connection each
		// would use up the cluster's.
		db.SetMaxIdleConns(0)
		e.t.Cleanup(func() { db.Close() })
		return db
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(e.dir, server.DatabaseFile)+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	return db
}

func (e *env) count(table string) int {
	e.t.Helper()
	var n int
	if err := e.db().QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		e.t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// blobFiles lists the blob files in place (not temp files).
func (e *env) blobFiles() []string {
	e.t.Helper()
	var out []string
	root := filepath.Join(e.dir, server.BlobsDir)
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "tmp" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func (e *env) tempFiles() []string {
	e.t.Helper()
	entries, _ := os.ReadDir(filepath.Join(e.dir, server.BlobsDir, "tmp"))
	var out []string
	for _, x := range entries {
		out = append(out, x.Name())
	}
	return out
}

// snapshot is the state "nothing changed" compares.
type snapshot struct {
	rows  map[string]int
	files int
}

func (e *env) snapshot() snapshot {
	s := snapshot{rows: map[string]int{}, files: len(e.blobFiles())}
	for _, t := range []string{"blobs", "refs", "tasks", "task_files", "results", "result_files", "callbacks", "task_nodes"} {
		s.rows[t] = e.count(t)
	}
	return s
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// answer is a response as a test sees it.
type answer struct {
	code   int
	header http.Header
	body   []byte
	json   map[string]any
}

func (a answer) status() string {
	if s, ok := a.json["status"].(string); ok {
		return s
	}
	return ""
}

func (a answer) message() string {
	if s, ok := a.json["message"].(string); ok {
		return s
	}
	return ""
}

func (a answer) String() string {
	return fmt.Sprintf("%d %s", a.code, strings.TrimSpace(string(a.body)))
}

func readAnswer(t testing.TB, resp *http.Response) answer {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	a := answer{code: resp.StatusCode, header: resp.Header, body: body}
	if resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(body, &a.json); err != nil {
			t.Fatalf("answer is not JSON: %v: %s", err, body)
		}
	}
	return a
}

// pyClient is kolejka/client/client.py's KolejkaClient, in Go.
type pyClient struct {
	t        testing.TB
	instance string // config.server, sent as Referer
	hc       *http.Client
	jar      *cookiejar.Jar
}

func newPyClient(t testing.TB, instance string) *pyClient {
	jar, _ := cookiejar.New(nil)
	return &pyClient{t: t, instance: instance, jar: jar, hc: &http.Client{Jar: jar}}
}

// py signs in as name, as KolejkaClient.__init__ does.
func (e *env) py(name string) *pyClient {
	c := newPyClient(e.t, e.base)
	c.login(name, password(name))
	return c
}

func (c *pyClient) url(path string) string {
	return strings.TrimRight(c.instance, "/") + "/" + strings.TrimLeft(path, "/")
}

func (c *pyClient) cookie(name string) string {
	u, _ := url.Parse(c.instance)
	for _, ck := range c.jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// simple: GET and HEAD, with Referer.
func (c *pyClient) simple(method, path string) answer {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url(path), nil)
	req.Header.Set("Referer", c.instance)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return readAnswer(c.t, resp)
}

// complex: POST, PUT, DELETE, with X-CSRFToken and Referer.
func (c *pyClient) complex(method, path, contentType string, body []byte) answer {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, c.url(path), rd)
	req.Header.Set("X-CSRFToken", c.cookie("csrftoken"))
	req.Header.Set("Referer", c.instance)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return readAnswer(c.t, resp)
}

func (c *pyClient) get(path string) answer  { return c.simple("GET", path) }
func (c *pyClient) head(path string) answer { return c.simple("HEAD", path) }
func (c *pyClient) post(path string, body []byte) answer {
	return c.complex("POST", path, "", body)
}
func (c *pyClient) put(path string) answer { return c.complex("PUT", path, "", nil) }

// login: GET /logout/ ("clears user and ensures CSRF"), POST /login/.
func (c *pyClient) login(name, pw string) answer {
	c.t.Helper()
	c.get("/logout/")
	form := url.Values{"username": {name}, "password": {pw}}.Encode()
	return c.complex("POST", "/login/", "application/x-www-form-urlencoded", []byte(form))
}

// blobPut: dedup by hash first (POST /blob/blob/<hash>/ with an empty
// form), upload on 404.
func (c *pyClient) blobPut(data []byte) map[string]any {
	c.t.Helper()
	a := c.complex("POST", "/blob/blob/"+sha(data)+"/", "", nil)
	if a.code == 404 {
		a = c.post("/blob/reference/", data)
	}
	if a.code != 200 || a.status() != "OK" {
		c.t.Fatalf("blob put: %v", a)
	}
	return a.json["reference"].(map[string]any)
}

// taskPut uploads files (name → content) and posts the task.
func (c *pyClient) taskPut(task map[string]any, files map[string][]byte) answer {
	c.t.Helper()
	fs := map[string]any{}
	for name, data := range files {
		ref := c.blobPut(data)
		fs[name] = map[string]any{"path": name, "reference": ref["key"]}
	}
	if len(files) > 0 {
		task["files"] = fs
	}
	body, _ := json.Marshal(task)
	return c.post("/task/task/", body)
}

func (c *pyClient) dequeue(concurency int, limits map[string]any, tags []string) answer {
	c.t.Helper()
	if limits == nil {
		limits = map[string]any{}
	}
	if tags == nil {
		tags = []string{}
	}
	body, _ := json.Marshal(map[string]any{"concurency": concurency, "limits": limits, "tags": tags})
	return c.post("/queue/dequeue/", body)
}

// resultPut uploads the result's files and posts it.
func (c *pyClient) resultPut(result map[string]any, files map[string][]byte) answer {
	c.t.Helper()
	fs := map[string]any{}
	for name, data := range files {
		ref := c.blobPut(data)
		fs[name] = map[string]any{"path": name, "reference": ref["key"]}
	}
	result["files"] = fs
	body, _ := json.Marshal(result)
	return c.post("/task/result/", body)
}

// tokenClient authenticates with a bearer token, no cookies, no CSRF.
type tokenClient struct {
	t     testing.TB
	base  string
	token string
	hc    *http.Client
}

func (e *env) tok(name string) *tokenClient {
	return &tokenClient{t: e.t, base: e.base, token: e.tokens[name], hc: &http.Client{}}
}

func (c *tokenClient) do(method, path string, body []byte) answer {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, strings.TrimRight(c.base, "/")+"/"+strings.TrimLeft(path, "/"), rd)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return readAnswer(c.t, resp)
}

func (c *tokenClient) postJSON(path string, v any) answer {
	c.t.Helper()
	b, _ := json.Marshal(v)
	return c.do("POST", path, b)
}

// upload posts raw bytes as a new blob and returns the reference key.
func (c *tokenClient) upload(data []byte) string {
	c.t.Helper()
	a := c.do("POST", "/blob/reference/", data)
	if a.code != 200 || a.status() != "OK" {
		c.t.Fatalf("upload: %v", a)
	}
	return a.json["reference"].(map[string]any)["key"].(string)
}

// submit posts a task whose files are uploaded first; it returns the key.
func (c *tokenClient) submit(task map[string]any, files map[string][]byte) string {
	c.t.Helper()
	if len(files) > 0 {
		fs := map[string]any{}
		for name, data := range files {
			fs[name] = map[string]any{"reference": c.upload(data)}
		}
		task["files"] = fs
	}
	a := c.postJSON("/task/task/", task)
	if a.code != 200 || a.status() != "OK" {
		c.t.Fatalf("submit: %v", a)
	}
	return a.json["task"].(map[string]any)["id"].(string)
}

func simpleTask() map[string]any {
	return map[string]any{"image": "busybox:latest", "args": []string{"true"}}
}

func mustOK(t testing.TB, a answer) answer {
	t.Helper()
	if a.code != 200 || a.status() != "OK" {
		t.Fatalf("expected OK, got %v", a)
	}
	return a
}

func taskKeys(t testing.TB, a answer) []string {
	t.Helper()
	mustOK(t, a)
	var out []string
	for _, x := range a.json["tasks"].([]any) {
		out = append(out, x.(map[string]any)["id"].(string))
	}
	return out
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
