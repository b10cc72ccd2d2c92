package client_test

// What a request the server does not store leaves behind (nothing), how a
// result over the server's cap is told, and how not-found looks.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
)

// capped is a server with a small result cap; kolejka hides the cap from
// /settings/, as Kolejka's server (which has none to announce) would.
type capped struct {
	url, data string
	srv       *server.Server
}

func startCapped(t *testing.T, hideCap bool) *capped {
	t.Helper()
	data := t.TempDir()
	s, err := server.Open(server.Config{DataDir: data, MaxResultBody: 4 << 10, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct {
		name  string
		roles server.Role
	}{{"alice", server.Clients}, {"node", server.Processors}} {
		if err := s.AddUser(context.Background(), u.name, u.name+"-password", u.roles); err != nil {
			t.Fatal(err)
		}
	}
	h := s.Handler()
	if hideCap {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/settings/" {
				inner.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			inner.ServeHTTP(rec, r)
			body := strings.Replace(rec.Body.String(), `"max_result_body"`, `"unannounced"`, 1)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			io.WriteString(w, body)
		})
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		hs.Close()
		s.Shutdown(context.Background())
	})
	return &capped{url: hs.URL, data: data, srv: s}
}

func (c *capped) as(t *testing.T, user string) *client.Client {
	t.Helper()
	cl, err := client.New(context.Background(), client.Config{Server: c.url, Username: user, Password: user + "-password"})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// refs counts the references of user in the server's database.
func (c *capped) refs(t *testing.T, user string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(c.data, server.DatabaseFile)+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM refs r JOIN users u ON u.id = r.user_id WHERE u.name = ?`, user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// manyOutputs writes a result folder with n output files.
func manyOutputs(t *testing.T, key string, n int) (string, *spec.Result) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]spec.File{}
	for i := range n {
		name := fmt.Sprintf("out/%04d.txt", i)
		os.MkdirAll(filepath.Join(dir, "out"), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("output %d\n", i)), 0o644)
		files[name] = spec.File{Path: name}
	}
	zero := 0
	return dir, &spec.Result{ID: key, Result: &zero, Status: spec.StatusOK, Files: files}
}

// A result over the cap the server announces is refused before any
// upload; over a cap it does not announce, the server's 413 is the same
// error, and the references uploaded for it are deleted again. Either
// way the node leaves no reference behind.
func TestResultOverTheCapLeavesNothing(t *testing.T) {
	for _, hide := range []bool{false, true} {
		t.Run(fmt.Sprintf("cap hidden %v", hide), func(t *testing.T) {
			g := startCapped(t, hide)
			alice, node := g.as(t, "alice"), g.as(t, "node")
			ctx := context.Background()
			task, err := alice.TaskPut(ctx, writeTask(t, `{"image": "x", "args": ["true"]}`, nil), spec.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if ts, err := node.Dequeue(ctx, client.DequeueRequest{Concurrency: 1}); err != nil || len(ts) != 1 {
				t.Fatalf("dequeue: %v %v", ts, err)
			}
			dir, res := manyOutputs(t, task.ID, 200)
			_, err = node.ResultPost(ctx, dir, res)
			if !client.TooLarge(err) {
				t.Fatalf("a result over the cap: %v, want TooLarge", err)
			}
			var se *client.ServerError
			if !errors.As(err, &se) || se.Status != http.StatusRequestEntityTooLarge {
				t.Errorf("error %#v", err)
			}
			if !hide && !strings.Contains(err.Error(), "max_result_body") {
				t.Errorf("the refusal does not name the cap: %v", err)
			}
			if n := g.refs(t, "node"); n != 0 {
				t.Errorf("the refused result left %d of the node's references", n)
			}
			// A result that fits still goes through.
			dir, res = manyOutputs(t, task.ID, 3)
			if _, err := node.ResultPost(ctx, dir, res); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A task the server refuses takes its uploads with it.
func TestRefusedTaskLeavesNothing(t *testing.T) {
	g := startCapped(t, false)
	alice := g.as(t, "alice")
	dir := writeTask(t, `{"image": "x", "args": ["true"], "files": {"a": null, "b": null}, "limits": {"memory": "0"}}`,
		map[string]string{"a": "input a", "b": "input b"})
	_, err := alice.TaskPut(context.Background(), dir, spec.Limits{})
	var se *client.ServerError
	if !errors.As(err, &se) || !strings.Contains(se.Message, "limits.memory") {
		t.Fatalf("a task with memory 0: %v, want a refusal naming limits.memory", err)
	}
	if n := g.refs(t, "alice"); n != 0 {
		t.Errorf("the refused task left %d references", n)
	}
}

// Kolejka's FAIL "Task X is unknown" is a not-found, and execute stops on
// it (the task was deleted) instead of waiting for ever.
func TestUnknownTaskIsNotFound(t *testing.T) {
	g := startServer(t, nil)
	alice := g.as(t, "alice")
	ctx := context.Background()
	_, err := alice.Result(ctx, strings.Repeat("e", 32), 0)
	var se *client.ServerError
	if !errors.Is(err, client.ErrNotFound) || !errors.As(err, &se) {
		t.Fatalf("result of an unknown task: %v, want a refusal that is ErrNotFound", err)
	}
	if err := alice.ResultDelete(ctx, strings.Repeat("e", 32)); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("delete the result of an unknown task: %v", err)
	}
	// Other refusals are not not-found.
	_, err = alice.TaskPut(ctx, writeTask(t, `{"image": "x", "args": ["true"], "limits": {"cpus": 0}}`, nil), spec.Limits{})
	if err == nil || errors.Is(err, client.ErrNotFound) {
		t.Errorf("a refused task: %v", err)
	}
}
