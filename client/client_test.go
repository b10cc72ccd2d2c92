package client_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
)

// grid is a real server on loopback with three users.
type grid struct {
	srv  *server.Server
	http *httptest.Server
	url  string
}

func startServer(t *testing.T, wrap func(http.Handler) http.Handler) *grid {
	t.Helper()
	s, err := server.Open(server.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, u := range []struct {
		name  string
		roles server.Role
	}{{"alice", server.Clients}, {"bob", server.Clients}, {"node", server.Processors}} {
		if err := s.AddUser(ctx, u.name, u.name+"-password", u.roles); err != nil {
			t.Fatal(err)
		}
	}
	h := s.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		hs.Close()
		s.Shutdown(context.Background())
	})
	return &grid{srv: s, http: hs, url: hs.URL}
}

func (g *grid) as(t *testing.T, user string) *client.Client {
	t.Helper()
	c, err := client.New(context.Background(), client.Config{Server: g.url, Username: user, Password: user + "-password"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeTask(t *testing.T, taskJSON string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(taskJSON), 0o644)
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(content), 0o644)
	}
	return dir
}

func TestBlobRoundTripAndDedup(t *testing.T) {
	g := startServer(t, nil)
	alice := g.as(t, "alice")
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "data")
	os.WriteFile(src, []byte("some bytes\n"), 0o644)
	ref1, err := alice.BlobPut(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("some bytes\n"))
	if ref1.Blob != hex.EncodeToString(sum[:]) || ref1.Size != 11 {
		t.Fatalf("reference %+v", ref1)
	}
	// A second upload of the same bytes is a new reference to the same blob.
	ref2, err := alice.BlobPut(ctx, src)
	if err != nil || ref2.Key == ref1.Key || ref2.Blob != ref1.Blob {
		t.Fatalf("second put: %+v %v", ref2, err)
	}
	out := filepath.Join(dir, "sub", "copy")
	if err := alice.BlobGet(ctx, ref1.Key, out); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(out); string(data) != "some bytes\n" {
		t.Fatalf("downloaded %q", data)
	}
	// Another client cannot read it.
	bob := g.as(t, "bob")
	if err := bob.BlobGet(ctx, ref1.Key, filepath.Join(dir, "stolen")); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("bob read alice's blob: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stolen")); err == nil {
		t.Fatal("a refused download left a file")
	}
	if err := alice.BlobDelete(ctx, ref1.Key); err != nil {
		t.Fatal(err)
	}
	if err := alice.BlobGet(ctx, ref1.Key, filepath.Join(dir, "gone")); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("deleted reference: %v", err)
	}
}

func TestDownloadIsVerified(t *testing.T) {
	// A server (or proxy) that serves other bytes than the blob's hash.
	var tamper atomic.Bool
	g := startServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tamper.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blob/reference/") {
				w.Header().Set("ETag", `"`+strings.Repeat("0", 64)+`"`)
				w.Write([]byte("evil"))
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	alice := g.as(t, "alice")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("good"), 0o644)
	ref, err := alice.BlobPut(context.Background(), filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	tamper.Store(true)
	dst := filepath.Join(dir, "out")
	if err := alice.BlobGet(context.Background(), ref.Key, dst); !errors.Is(err, client.ErrIntegrity) {
		t.Fatalf("tampered download: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("a failed download left files: %v", entries)
	}
}

// node plays a grid node with the client library: it takes one task and
// posts a result whose stdout echoes the task's input.
func node(t *testing.T, g *grid, started chan<- string) {
	t.Helper()
	n := g.as(t, "node")
	ctx := context.Background()
	var tasks []*spec.Task
	for len(tasks) == 0 {
		var err error
		tasks, err = n.Dequeue(ctx, client.DequeueRequest{Concurrency: 1, Wait: 5 * time.Second, Heartbeat: true})
		if err != nil {
			t.Error(err)
			return
		}
	}
	task := tasks[0]
	if started != nil {
		started <- task.ID
	}
	// Fetch the input as a node would, then make a result folder.
	work := t.TempDir()
	if err := n.BlobGet(ctx, task.Files["in.txt"].Reference, filepath.Join(work, "in.txt")); err != nil {
		t.Error(err)
		return
	}
	in, _ := os.ReadFile(filepath.Join(work, "in.txt"))
	resDir := t.TempDir()
	os.WriteFile(filepath.Join(resDir, "stdout"), append([]byte("echo: "), in...), 0o644)
	code := 0
	res := &spec.Result{ID: task.ID, Tags: []string{"test-node"}, Limits: task.Limits, Result: &code, Status: spec.StatusOK,
		Stdout: "stdout", Files: map[string]spec.File{"stdout": {Path: "stdout"}}}
	if err := spec.WriteResult(resDir, res); err != nil {
		t.Error(err)
		return
	}
	if _, err := n.ResultPut(ctx, resDir); err != nil {
		t.Error(err)
	}
}

func TestTaskPutGetAndExecute(t *testing.T) {
	g := startServer(t, nil)
	alice := g.as(t, "alice")
	ctx := context.Background()
	taskDir := writeTask(t, `{"image": "busybox", "args": ["cat", "in.txt"], "files": {"in.txt": null}, "stdout": "stdout", "limits": {"memory": "1G"}}`,
		map[string]string{"in.txt": "hello grid\n"})
	mem := int64(256 << 20)
	stored, err := alice.TaskPut(ctx, taskDir, spec.Limits{Memory: &mem})
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.ID) != 32 || stored.Files["in.txt"].Reference == "" || stored.Files["in.txt"].Path != "" {
		t.Fatalf("stored task %+v", stored)
	}
	if stored.Limits.Memory == nil || *stored.Limits.Memory != mem {
		t.Fatalf("the cap was not applied: %s", stored.Limits)
	}
	// Task get gives a local folder with the file.
	got := filepath.Join(t.TempDir(), "task")
	if _, err := alice.TaskGet(ctx, stored.ID, got); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(got, "in.txt")); string(data) != "hello grid\n" {
		t.Fatalf("task get: %q", data)
	}
	if back, err := spec.LoadTask(got); err != nil || back.Files["in.txt"].Path != "in.txt" {
		t.Fatalf("task get wrote %+v %v", back, err)
	}
	// No result yet.
	if _, err := alice.Result(ctx, stored.ID, 0); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("result before any: %v", err)
	}
	// Execute: submit again and wait while a node works.
	go node(t, g, nil)
	go node(t, g, nil) // takes the first task
	resultDir := filepath.Join(t.TempDir(), "result")
	var states []string
	r, err := alice.Execute(ctx, taskDir, resultDir, client.ExecuteOptions{Interval: 50 * time.Millisecond,
		OnState: func(s client.State) { states = append(states, s.Phase) }})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != spec.StatusOK {
		t.Fatalf("status %s", r.Status)
	}
	if data, _ := os.ReadFile(filepath.Join(resultDir, "stdout")); string(data) != "echo: hello grid\n" {
		t.Fatalf("result stdout %q", data)
	}
	if back, err := spec.LoadResult(resultDir); err != nil || back.Files["stdout"].Path != "stdout" {
		t.Fatalf("result folder: %+v %v", back, err)
	}
	if states[0] != "queued" || states[len(states)-1] != "done" {
		t.Fatalf("states %v", states)
	}
	// Bob sees neither the task nor the result.
	bob := g.as(t, "bob")
	if _, err := bob.Task(ctx, stored.ID); err == nil {
		t.Fatal("bob read alice's task")
	}
	if _, err := bob.Result(ctx, r.ID, 0); err == nil {
		t.Fatal("bob read alice's result")
	}
	if err := alice.ResultDelete(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if err := alice.TaskDelete(ctx, stored.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Task(ctx, stored.ID); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("deleted task: %v", err)
	}
}

func TestExecuteInterruptedLeavesTheTask(t *testing.T) {
	g := startServer(t, nil)
	alice := g.as(t, "alice")
	taskDir := writeTask(t, `{"image": "busybox", "args": ["true"]}`, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := alice.Execute(ctx, taskDir, filepath.Join(t.TempDir(), "r"), client.ExecuteOptions{Interval: 20 * time.Millisecond})
	var ie *client.InterruptedError
	if !errors.As(err, &ie) || len(ie.Key) != 32 {
		t.Fatalf("err = %v", err)
	}
	if _, err := alice.Task(context.Background(), ie.Key); err != nil {
		t.Fatalf("the interrupted task is gone: %v", err)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	g := startServer(t, nil)
	ctx := context.Background()
	if _, err := client.New(ctx, client.Config{Server: g.url, Username: "alice", Password: "wrong"}); !errors.Is(err, client.ErrLogin) {
		t.Fatalf("bad password: %v", err)
	}
	if _, err := client.New(ctx, client.Config{Server: "http://127.0.0.1:1"}); !errors.Is(err, client.ErrConnect) {
		t.Fatalf("no server: %v", err)
	}
	alice := g.as(t, "alice")
	bad := writeTask(t, `{"image": "busybox", "args": ["true"], "limits": {"memmory": "1G"}}`, nil)
	if _, err := alice.TaskPut(ctx, bad, spec.Limits{}); err == nil || !strings.Contains(err.Error(), "memmory") {
		t.Fatalf("bad task: %v", err)
	}
	// A processor-only path refuses a client with the server's own answer.
	if _, err := alice.Dequeue(ctx, client.DequeueRequest{Concurrency: 1}); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("client dequeue: %v", err)
	}
}

// Logins reuse one connection: each answer, the logout's too, is read and
// closed. A response left open holds its connection for good, and every
// login then dials a new one.
func TestLoginReusesItsConnection(t *testing.T) {
	s, err := server.Open(server.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(context.Background(), "alice", "alice-password", server.Clients); err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int32
	hs := httptest.NewUnstartedServer(s.Handler())
	hs.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			dials.Add(1)
		}
	}
	hs.Start()
	t.Cleanup(func() {
		hs.Close()
		s.Shutdown(context.Background())
	})
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Server: hs.URL, Username: "alice", Password: "alice-password"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := c.Login(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("4 logins and a settings read took %d connections, want 1", n)
	}
}

// A server without our extensions (Kolejka's): no long polling, no ETag,
// no assignee. The client must fall back to interval polling and to
// asking for a blob's hash.
func TestPlainKolejkaServer(t *testing.T) {
	var polls, waits atomic.Int32
	g := startServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Has("wait") {
				waits.Add(1)
			}
			if strings.Contains(r.URL.Path, "/task/result/") && r.Method == http.MethodGet {
				polls.Add(1)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if strings.HasSuffix(r.URL.Path, "/settings/") && rec.Code == 200 {
				var m map[string]any
				json.Unmarshal(body, &m)
				delete(m, "extensions")
				delete(m, "max_wait")
				delete(m, "lease_time")
				body, _ = json.Marshal(m)
			}
			for k, v := range rec.Header() {
				if k != "Etag" && k != "Content-Length" {
					w.Header()[k] = v
				}
			}
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	})
	alice := g.as(t, "alice")
	if alice.Settings().Has("long_poll") {
		t.Fatal("the proxy did not hide the extensions")
	}
	taskDir := writeTask(t, `{"image": "busybox", "args": ["cat", "in.txt"], "files": {"in.txt": null}, "stdout": "stdout"}`,
		map[string]string{"in.txt": "plain\n"})
	go node(t, g, nil)
	resultDir := filepath.Join(t.TempDir(), "result")
	if _, err := alice.Execute(context.Background(), taskDir, resultDir, client.ExecuteOptions{Interval: 30 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(resultDir, "stdout")); string(data) != "echo: plain\n" {
		t.Fatalf("stdout %q", data)
	}
	if waits.Load() != 0 {
		t.Fatalf("%d long-poll requests to a server that did not announce them", waits.Load())
	}
	if polls.Load() < 1 {
		t.Fatal("no polls")
	}
}

func TestTaskStateNamesTheNode(t *testing.T) {
	g := startServer(t, nil)
	alice := g.as(t, "alice")
	ctx := context.Background()
	stored, err := alice.TaskPut(ctx, writeTask(t, `{"image": "busybox", "args": ["true"]}`, nil), spec.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := alice.TaskState(ctx, stored.ID); err != nil || st.Phase != "queued" || st.Node != "" {
		t.Fatalf("before dequeue: %+v %v", st, err)
	}
	n := g.as(t, "node")
	if tasks, err := n.Dequeue(ctx, client.DequeueRequest{Concurrency: 1}); err != nil || len(tasks) != 1 {
		t.Fatalf("dequeue: %v %v", tasks, err)
	}
	if st, err := alice.TaskState(ctx, stored.ID); err != nil || st.Phase != "running" || st.Node != "node" {
		t.Fatalf("after dequeue: %+v %v", st, err)
	}
}

// Release hands a node's task back: another dequeue gets it at once. A
// server that does not announce the extension is not asked at all.
func TestRelease(t *testing.T) {
	g := startServer(t, nil)
	alice, n := g.as(t, "alice"), g.as(t, "node")
	ctx := context.Background()
	stored, err := alice.TaskPut(ctx, writeTask(t, `{"image": "busybox", "args": ["true"]}`, nil), spec.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if tasks, err := n.Dequeue(ctx, client.DequeueRequest{Concurrency: 1, Heartbeat: true}); err != nil || len(tasks) != 1 {
		t.Fatalf("dequeue: %v %v", tasks, err)
	}
	released, lost, err := n.Release(ctx, []string{stored.ID, "0123456789abcdef0123456789abcdef"})
	if err != nil || len(released) != 1 || released[0] != stored.ID || len(lost) != 1 {
		t.Fatalf("Release = %v, %v, %v", released, lost, err)
	}
	if st, err := alice.TaskState(ctx, stored.ID); err != nil || st.Phase != "queued" {
		t.Fatalf("after release: %+v %v", st, err)
	}
	if tasks, err := n.Dequeue(ctx, client.DequeueRequest{Concurrency: 1}); err != nil || len(tasks) != 1 || tasks[0].ID != stored.ID {
		t.Fatalf("dequeue after release: %v %v", tasks, err)
	}

	var calls atomic.Int32
	plain := startServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/queue/release/") {
				calls.Add(1)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if strings.HasSuffix(r.URL.Path, "/settings/") && rec.Code == 200 {
				var m map[string]any
				json.Unmarshal(body, &m)
				delete(m, "extensions")
				body, _ = json.Marshal(m)
			}
			for k, v := range rec.Header() {
				if k != "Content-Length" {
					w.Header()[k] = v
				}
			}
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	})
	if _, _, err := plain.as(t, "node").Release(ctx, []string{stored.ID}); !errors.Is(err, client.ErrUnsupported) {
		t.Errorf("Release without the extension: %v, want ErrUnsupported", err)
	}
	if calls.Load() != 0 {
		t.Errorf("%d release requests to a server that did not announce the extension", calls.Load())
	}
}

// A server that goes away while a client waits for a result (a restart)
// must not make execute give up: the task is safe on the server.
func TestExecuteWaitsThroughAServerOutage(t *testing.T) {
	var down atomic.Bool
	dropped := make(chan struct{}, 16)
	g := startServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() && strings.Contains(r.URL.Path, "/task/result/") {
				// As a restarting server looks: the connection drops.
				hj, _ := w.(http.Hijacker)
				conn, _, _ := hj.Hijack()
				conn.Close()
				select {
				case dropped <- struct{}{}:
				default:
				}
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	alice := g.as(t, "alice")
	taskDir := writeTask(t, `{"image": "busybox", "args": ["cat", "in.txt"], "files": {"in.txt": null}, "stdout": "stdout"}`,
		map[string]string{"in.txt": "after the outage\n"})
	down.Store(true)
	go func() {
		// The server comes back once the client's waits have met the
		// outage twice: it kept waiting through it.
		for range 2 {
			select {
			case <-dropped:
			case <-time.After(30 * time.Second):
				t.Error("the client did not ask for the result in 30 s")
			}
		}
		down.Store(false)
		node(t, g, nil)
	}()
	resultDir := filepath.Join(t.TempDir(), "result")
	if _, err := alice.Execute(context.Background(), taskDir, resultDir, client.ExecuteOptions{Interval: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(resultDir, "stdout")); string(data) != "echo: after the outage\n" {
		t.Fatalf("stdout %q", data)
	}
}

// A blob-store outage answers the existence check 503 (a HEAD: no
// reason in a body); it is ErrUnavailable, retried like every other
// call's 503, not a protocol error that ends the upload.
func TestBlobExistsUnavailable(t *testing.T) {
	var down atomic.Bool
	g := startServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() && r.Method == http.MethodHead {
				http.Error(w, "the server's blob store is unavailable", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	alice := g.as(t, "alice")
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "data")
	os.WriteFile(src, []byte("bytes\n"), 0o644)
	ref, err := alice.BlobPut(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := alice.BlobExists(ctx, ref.Key); !ok || err != nil {
		t.Fatalf("exists: %v %v", ok, err)
	}
	down.Store(true)
	ok, err := alice.BlobExists(ctx, ref.Key)
	if ok || !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("exists during an outage: %v %v, want ErrUnavailable with the reason", ok, err)
	}
}

// A blob-store outage while execute downloads the result's files (503)
// must not make it give up either: the result is safe on the server, and
// the result folder is written whole once the store is back.
func TestExecuteWaitsThroughABlobStoreOutage(t *testing.T) {
	var down atomic.Bool
	refused := make(chan struct{}, 16)
	g := startServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() && r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/blob/") {
				http.Error(w, "the server's blob store is unavailable; try again later", http.StatusServiceUnavailable)
				select {
				case refused <- struct{}{}:
				default:
				}
				return
			}
			h.ServeHTTP(w, r)
			if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/task/result/") {
				// The node's result is in: the store goes down before
				// the client downloads its files.
				down.Store(true)
			}
		})
	})
	alice := g.as(t, "alice")
	taskDir := writeTask(t, `{"image": "busybox", "args": ["cat", "in.txt"], "files": {"in.txt": null}, "stdout": "stdout"}`,
		map[string]string{"in.txt": "after the store's outage\n"})
	go func() {
		node(t, g, nil)
		// The store comes back once the client's downloads have met the
		// outage twice: it kept trying through it.
		for range 2 {
			select {
			case <-refused:
			case <-time.After(30 * time.Second):
				t.Error("the client did not download the result in 30 s")
			}
		}
		down.Store(false)
	}()
	resultDir := filepath.Join(t.TempDir(), "result")
	if _, err := alice.Execute(context.Background(), taskDir, resultDir, client.ExecuteOptions{Interval: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(resultDir, "stdout")); string(data) != "echo: after the store's outage\n" {
		t.Fatalf("stdout %q", data)
	}
}
