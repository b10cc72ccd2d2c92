package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
)

// Long polls wake on the event (a notifier, not a poll loop) and end at
// their deadline otherwise. Each wake-up is checked on a poll known to be
// waiting (the server's pause hook), and proven by an answer long before
// the poll's deadline; how fast it wakes is BenchmarkLongPollWake's.
func TestLongPoll(t *testing.T) {
	const wait = 30 * time.Second // a wake-up answers long before it
	e := newEnv(t, func(c *server.Config) { c.MaxWait = wait })
	e.standardUsers()
	a, n := e.tok("alice"), e.tok("node")

	t.Run("dequeue wakes on submission", func(t *testing.T) {
		done := make(chan []string, 1)
		start := time.Now()
		e.polling(func() { done <- ids(dequeue(t, n, map[string]any{"wait": wait.Seconds()})) })
		key := a.submit(task(nil), nil)
		if got := <-done; !slices.Equal(got, []string{key}) {
			t.Fatalf("got %v", got)
		}
		if d := time.Since(start); d >= wait {
			t.Errorf("answered after %v, at its deadline: the submission did not wake it", d)
		}
	})
	t.Run("dequeue times out empty", func(t *testing.T) {
		start := time.Now()
		got := dequeue(t, n, map[string]any{"wait": 0.3})
		if d := time.Since(start); len(got) != 0 || d < 300*time.Millisecond || d >= wait {
			t.Errorf("got %v after %v, want nothing after its wait of 0.3 s", got, d)
		}
	})
	t.Run("dequeue wait is capped at MaxWait", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) { c.MaxWait = 500 * time.Millisecond })
		e.standardUsers()
		start := time.Now()
		got := dequeue(t, e.tok("node"), map[string]any{"wait": "1H"})
		if d := time.Since(start); len(got) != 0 || d < 500*time.Millisecond || d >= wait {
			t.Errorf("a wait of an hour answered %v after %v, want nothing after MaxWait (0.5 s)", got, d)
		}
	})
	t.Run("result wakes on post", func(t *testing.T) {
		key := a.submit(task(nil), nil)
		dequeue(t, n, map[string]any{})
		done := make(chan answer, 1)
		start := time.Now()
		e.polling(func() { done <- a.do("GET", fmt.Sprintf("/task/result/%s/?wait=%g", key, wait.Seconds()), nil) })
		mustOK(t, n.postJSON("/task/result/", map[string]any{"id": key, "result": 3}))
		r := mustOK(t, <-done)
		if r.json["result"].(map[string]any)["result"] != float64(3) {
			t.Errorf("got %v", r)
		}
		if d := time.Since(start); d >= wait {
			t.Errorf("answered after %v, at its deadline: the post did not wake it", d)
		}
	})
	t.Run("dequeue ends when its node posts a result", func(t *testing.T) {
		// With "room_wake": the node has the posted task's room again and
		// must ask with it; another node's poll goes on, and so does the
		// node's own without the key (a foreman that would not ask again
		// at once).
		key := a.submit(task(nil), nil)
		if got := ids(dequeue(t, n, map[string]any{})); !slices.Equal(got, []string{key}) {
			t.Fatalf("got %v", got)
		}
		other := make(chan time.Duration, 1)
		start := time.Now()
		e.polling(func() {
			dequeue(t, e.tok("node2"), map[string]any{"wait": 1, "room_wake": true})
			other <- time.Since(start)
		})
		done := make(chan []string, 1)
		e.polling(func() { done <- ids(dequeue(t, n, map[string]any{"wait": wait.Seconds(), "room_wake": true})) })
		mustOK(t, n.postJSON("/task/result/", map[string]any{"id": key, "result": 0}))
		if got := <-done; len(got) != 0 {
			t.Errorf("got %v, want nothing", got)
		}
		if d := time.Since(start); d >= wait {
			t.Errorf("answered after %v, at its deadline: the post did not end it", d)
		}
		if d := <-other; d < time.Second {
			t.Errorf("node2's poll answered after %v, before its wait of 1 s: another node's post ended it", d)
		}
		key = a.submit(task(nil), nil)
		if got := ids(dequeue(t, n, map[string]any{})); !slices.Equal(got, []string{key}) {
			t.Fatalf("got %v", got)
		}
		plain := make(chan time.Duration, 1)
		start = time.Now()
		e.polling(func() {
			dequeue(t, n, map[string]any{"wait": 1})
			plain <- time.Since(start)
		})
		mustOK(t, n.postJSON("/task/result/", map[string]any{"id": key, "result": 0}))
		if d := <-plain; d < time.Second {
			t.Errorf("a poll without room_wake answered after %v, before its wait of 1 s: the node's post ended it", d)
		}
	})
	t.Run("result times out with 404", func(t *testing.T) {
		key := a.submit(task(map[string]any{"requires": []string{"none"}}), nil)
		start := time.Now()
		r := a.do("GET", "/task/result/"+key+"/?wait=0.3", nil)
		if d := time.Since(start); r.code != 404 || d < 300*time.Millisecond || d >= wait {
			t.Errorf("got %v after %v, want 404 after its wait of 0.3 s", r, d)
		}
		if r := a.do("GET", "/task/result/"+key+"/?wait=soon", nil); r.status() != "FAIL" {
			t.Errorf("bad wait: %v", r)
		}
	})
	t.Run("task deleted while waiting", func(t *testing.T) {
		key := a.submit(task(map[string]any{"requires": []string{"none"}}), nil)
		done := make(chan answer, 1)
		start := time.Now()
		e.polling(func() { done <- a.do("GET", fmt.Sprintf("/task/result/%s/?wait=%g", key, wait.Seconds()), nil) })
		mustOK(t, a.do("DELETE", "/task/task/"+key+"/", nil))
		if r := <-done; r.status() != "FAIL" {
			t.Errorf("got %v", r)
		}
		if d := time.Since(start); d >= wait {
			t.Errorf("answered after %v, at its deadline: the delete did not wake it", d)
		}
	})
}

// Shutdown ends long polls at once, lets in-flight requests finish, and
// refuses new connections.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir, Database: folderDatabase(t, dir), Logger: testLogger(t)}
	paused := make(chan struct{}, 1)
	server.SetPauseHook(&cfg, func() {
		select {
		case paused <- struct{}{}:
		default:
		}
	})
	srv, err := server.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	srv.AddUser(ctx, "node", "pw", server.Processors)
	tok, _ := srv.NewToken(ctx, "node")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	c := &tokenClient{t: t, base: "http://" + ln.Addr().String() + "/", token: tok, hc: &http.Client{}}
	polled := make(chan answer, 1)
	go func() { polled <- c.postJSON("/queue/dequeue/", map[string]any{"wait": 30}) }()
	select {
	case <-paused: // the poll waits: Shutdown must end it
	case <-time.After(30 * time.Second):
		t.Fatal("the long poll does not wait")
	}
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	select {
	case a := <-polled:
		if a.code != 200 || len(a.json["tasks"].([]any)) != 0 {
			t.Errorf("long poll answered %v", a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long poll not ended by Shutdown")
	}
	t.Logf("Shutdown took %v with a 30 s long poll in flight", time.Since(start))
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if resp, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
		resp.Body.Close()
		t.Errorf("still accepting after Shutdown")
	}
	// The folder is free again.
	srv2, err := server.Open(server.Config{DataDir: dir, Database: folderDatabase(t, dir), Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	srv2.Close()
}

// One server per data folder.
func TestDataFolderLock(t *testing.T) {
	e := newEnv(t)
	_, err := server.Open(server.Config{DataDir: e.dir, Database: e.cfg.Database, Logger: testLogger(t)})
	if err == nil || !errorsIs(err, server.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	// The admin API opens next to a running server.
	adm, err := server.OpenAdmin(server.Config{DataDir: e.dir, Database: e.cfg.Database, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("OpenAdmin: %v", err)
	}
	defer adm.Close()
	if err := adm.AddUser(context.Background(), "carol", password("carol"), server.Clients); err != nil {
		t.Fatal(err)
	}
	mustOK(t, e.py("carol").get("/settings/"))
}
