package foreman

// Test helpers: a real kolejka-server (package server) on a loopback port
// over a real data folder, which can be stopped and started again on the
// same port, and nodes made of a real worker.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker/host"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

func testLog(t testing.TB) *slog.Logger {
	if os.Getenv("KOLEJKA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return quietLog()
}

type grid struct {
	t      testing.TB
	cfg    server.Config
	addr   string
	srv    *server.Server
	http   *http.Server
	tokens map[string]string
	// blobGets counts the node's downloads of blob bytes (GET
	// /blob/reference/<ref>/ as node).
	blobGets atomic.Int32
	// plain hides our extensions from /settings/, so that the server looks
	// like Kolejka's; dequeues, extended requests and extension keys in
	// dequeue bodies are counted.
	plain                       bool
	dequeues, extended, extKeys atomic.Int32
}

// newGrid starts a server with the users alice (client), node and node2
// (processors), each with a bearer token.
func newGrid(t testing.TB, opts ...func(*server.Config)) *grid {
	t.Helper()
	g := &grid{t: t, tokens: map[string]string{}}
	g.cfg = server.Config{DataDir: t.TempDir(), Logger: testLog(t), GCInterval: time.Hour}
	for _, o := range opts {
		o(&g.cfg)
	}
	g.start()
	t.Cleanup(g.stop)
	ctx := context.Background()
	for name, roles := range map[string]server.Role{"alice": server.Clients, "node": server.Processors, "node2": server.Processors} {
		if err := g.srv.AddUser(ctx, name, name+"-password", roles); err != nil {
			t.Fatal(err)
		}
		tok, err := g.srv.NewToken(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		g.tokens[name] = tok
	}
	return g
}

func leases(lease time.Duration) func(*server.Config) {
	return func(c *server.Config) {
		c.LeaseTime = lease
		c.ExpiryInterval = 20 * time.Millisecond
	}
}

func (g *grid) url() string { return "http://" + g.addr + "/" }

// start serves the data folder on the grid's port (a new one the first time).
func (g *grid) start() {
	g.t.Helper()
	srv, err := server.Open(g.cfg)
	if err != nil {
		g.t.Fatal(err)
	}
	addr := g.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	for range 50 { // the old socket may linger a moment after a stop
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // polls for the port to be free: nothing announces it
	}
	if err != nil {
		srv.Close()
		g.t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	g.srv = srv
	h := srv.Handler()
	g.http = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/blob/reference/") &&
			r.Header.Get("Authorization") == "Bearer "+g.tokens["node"] {
			g.blobGets.Add(1)
		}
		if !g.plain {
			h.ServeHTTP(w, r)
			return
		}
		switch r.URL.Path {
		case "/queue/dequeue/":
			g.dequeues.Add(1)
			body, _ := io.ReadAll(r.Body)
			var m map[string]any
			json.Unmarshal(body, &m)
			for _, k := range []string{"wait", "heartbeat", "defaults", "capacity", "queues"} {
				if _, ok := m[k]; ok {
					g.extKeys.Add(1)
				}
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		case "/queue/heartbeat/", "/queue/release/":
			g.extended.Add(1)
		case "/settings/":
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			var m map[string]any
			json.Unmarshal(rec.Body.Bytes(), &m)
			delete(m, "extensions")
			delete(m, "max_wait")
			delete(m, "lease_time")
			for k, v := range rec.Header() {
				if k != "Content-Length" {
					w.Header()[k] = v
				}
			}
			w.WriteHeader(rec.Code)
			json.NewEncoder(w).Encode(m)
			return
		}
		h.ServeHTTP(w, r)
	})}
	go g.http.Serve(ln)
}

// stop shuts the server down (a restart, as far as nodes can tell).
func (g *grid) stop() {
	if g.srv == nil {
		return
	}
	g.http.Close() // cut every connection, long polls included
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.srv.Shutdown(ctx); err != nil && !errors.Is(err, server.ErrClosed) {
		g.t.Errorf("server shutdown: %v", err)
	}
	g.srv = nil
}

func (g *grid) client(user string) *client.Client {
	g.t.Helper()
	cl, err := client.New(context.Background(), client.Config{Server: g.url(), Token: g.tokens[user]})
	if err != nil {
		g.t.Fatal(err)
	}
	return cl
}

// resultClient is a client of user that counts its requests carrying a
// result (the result's file uploads and their dedup checks, the result
// itself) that got no answer: a test waits on the count for a post retrying while the server
// is down.
func (g *grid) resultClient(user string) (*client.Client, *atomic.Int32) {
	g.t.Helper()
	rt := &failedResults{inner: http.DefaultTransport.(*http.Transport).Clone()}
	cl, err := client.New(context.Background(), client.Config{Server: g.url(), Token: g.tokens[user], HTTPClient: &http.Client{Transport: rt}})
	if err != nil {
		g.t.Fatal(err)
	}
	return cl, &rt.n
}

type failedResults struct {
	inner http.RoundTripper
	n     atomic.Int32
}

func (f *failedResults) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := f.inner.RoundTrip(r)
	if err != nil && r.Method == http.MethodPost && (strings.Contains(r.URL.Path, "/blob/") || strings.HasSuffix(r.URL.Path, "/task/result/")) {
		f.n.Add(1)
	}
	return resp, err
}

// task returns the server's view of a task.
func (g *grid) task(key string) server.TaskInfo {
	g.t.Helper()
	all, err := g.srv.ListTasks(context.Background(), server.TaskFilter{})
	if err != nil {
		g.t.Fatal(err)
	}
	for _, ti := range all {
		if ti.Key == key {
			return ti
		}
	}
	g.t.Fatalf("task %s unknown", key)
	return server.TaskInfo{}
}

// submit puts a task folder made of taskJSON and files as alice.
func (g *grid) submit(taskJSON string, files map[string]string) string {
	g.t.Helper()
	dir := g.t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(taskJSON), 0o644); err != nil {
		g.t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			g.t.Fatal(err)
		}
	}
	st, err := g.client("alice").TaskPut(context.Background(), dir, spec.Limits{})
	if err != nil {
		g.t.Fatal(err)
	}
	return st.ID
}

// result waits for a task's result and downloads it.
func (g *grid) result(key string, within time.Duration) (*spec.Result, string) {
	g.t.Helper()
	cl := g.client("alice")
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		dir := filepath.Join(g.t.TempDir(), "result")
		r, err := cl.ResultGet(context.Background(), key, dir, time.Until(deadline))
		if err == nil {
			return r, dir
		}
		if !errors.Is(err, client.ErrNotFound) {
			g.t.Fatalf("result of %s: %v", key, err)
		}
	}
	g.t.Fatalf("no result for %s within %v", key, within)
	return nil, ""
}

// waitFor polls cond for up to within.
func waitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, within, what, cond)
}

// node is a foreman over a real worker with the host runtime (tasks are
// host processes in their own namespaces and cgroups: no image needed).
type node struct {
	*Foreman
	ran chan error
}

func newNode(t testing.TB, g *grid, user string, adjust func(*Config)) *node {
	t.Helper()
	cg, err := cgroup.Host()
	if err != nil {
		t.Fatal(err)
	}
	env := workertest.NewEnv(t, host.New(cg))
	m, err := DetectMachine(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Client:      g.client(user),
		Executor:    env.W,
		Dir:         t.TempDir(),
		Capacity:    lim(t, "memory", "2G", "time", "2M"),
		Cores:       m.Cores,
		Defaults:    lim(t, "cpus", "1", "memory", "64M"),
		Tags:        []string{"test"},
		Concurrency: 2,
		Retry:       Retry{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, GiveUp: 30 * time.Second},
		Logger:      testLog(t).With("node", user),
	}
	if adjust != nil {
		adjust(&cfg)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{Foreman: f, ran: make(chan error, 1)}
	go func() { n.ran <- f.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		f.Shutdown(ctx)
	})
	return n
}

// processes counts live processes whose command line contains s.
func processes(s string) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(strings.ReplaceAll(string(data), "\x00", " "), s) {
			n++
		}
	}
	return n
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
