package server_test

import (
	"context"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
)

// Long polls wake promptly on the event (a notifier, not a poll loop) and
// end at their deadline otherwise. Wake-up latencies are logged; the
// assertions only need them to be far below the wait (proof that the
// event, not the timeout, ended the request).
func TestLongPoll(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxWait = 2 * time.Second })
	e.standardUsers()
	a, n := e.tok("alice"), e.tok("node")

	t.Run("dequeue wakes on submission", func(t *testing.T) {
		type res struct {
			keys []string
			at   time.Time
		}
		done := make(chan res)
		go func() {
			got := ids(dequeue(t, n, map[string]any{"wait": 10}))
			done <- res{got, time.Now()}
		}()
		time.Sleep(200 * time.Millisecond)
		submitted := time.Now()
		key := a.submit(task(nil), nil)
		acked := time.Now()
		r := <-done
		if !slices.Equal(r.keys, []string{key}) {
			t.Fatalf("got %v", r.keys)
		}
		lat := r.at.Sub(submitted)
		t.Logf("dequeue answered %v after the submission was sent (its own answer took %v)", lat, acked.Sub(submitted))
		if lat > 500*time.Millisecond {
			t.Errorf("wake-up took %v", lat)
		}
	})
	t.Run("dequeue times out empty", func(t *testing.T) {
		start := time.Now()
		got := dequeue(t, n, map[string]any{"wait": 0.3})
		if d := time.Since(start); len(got) != 0 || d < 300*time.Millisecond || d > 1500*time.Millisecond {
			t.Errorf("got %v after %v", got, d)
		}
	})
	t.Run("dequeue wait is capped at MaxWait", func(t *testing.T) {
		start := time.Now()
		dequeue(t, n, map[string]any{"wait": "1H"})
		if d := time.Since(start); d < 2*time.Second || d > 4*time.Second {
			t.Errorf("wait of an hour answered after %v, want MaxWait (2s)", d)
		}
	})
	t.Run("result wakes on post", func(t *testing.T) {
		key := a.submit(task(nil), nil)
		dequeue(t, n, map[string]any{})
		type res struct {
			a  answer
			at time.Time
		}
		done := make(chan res)
		go func() {
			r := a.do("GET", "/task/result/"+key+"/?wait=10", nil)
			done <- res{r, time.Now()}
		}()
		time.Sleep(200 * time.Millisecond)
		sent := time.Now()
		mustOK(t, n.postJSON("/task/result/", map[string]any{"id": key, "result": 3}))
		r := <-done
		mustOK(t, r.a)
		if r.a.json["result"].(map[string]any)["result"] != float64(3) {
			t.Errorf("got %v", r.a)
		}
		t.Logf("result answered %v after the post was sent", r.at.Sub(sent))
		if r.at.Sub(sent) > 500*time.Millisecond {
			t.Errorf("wake-up took %v", r.at.Sub(sent))
		}
	})
	t.Run("result times out with 404", func(t *testing.T) {
		key := a.submit(task(map[string]any{"requires": []string{"none"}}), nil)
		start := time.Now()
		r := a.do("GET", "/task/result/"+key+"/?wait=0.3", nil)
		if d := time.Since(start); r.code != 404 || d < 300*time.Millisecond || d > 1500*time.Millisecond {
			t.Errorf("got %v after %v", r, d)
		}
		if r := a.do("GET", "/task/result/"+key+"/?wait=soon", nil); r.status() != "FAIL" {
			t.Errorf("bad wait: %v", r)
		}
	})
	t.Run("task deleted while waiting", func(t *testing.T) {
		key := a.submit(task(map[string]any{"requires": []string{"none"}}), nil)
		done := make(chan answer)
		go func() { done <- a.do("GET", "/task/result/"+key+"/?wait=10", nil) }()
		time.Sleep(200 * time.Millisecond)
		mustOK(t, a.do("DELETE", "/task/task/"+key+"/", nil))
		select {
		case r := <-done:
			if r.status() != "FAIL" {
				t.Errorf("got %v", r)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("waiter not woken by the delete")
		}
	})
}

// Shutdown ends long polls at once, lets in-flight requests finish, and
// refuses new connections.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	srv, err := server.Open(server.Config{DataDir: dir, Logger: testLogger(t)})
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
	time.Sleep(200 * time.Millisecond)
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
	srv2, err := server.Open(server.Config{DataDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	srv2.Close()
}

// One server per data folder.
func TestDataFolderLock(t *testing.T) {
	e := newEnv(t)
	_, err := server.Open(server.Config{DataDir: e.dir, Logger: testLogger(t)})
	if err == nil || !errorsIs(err, server.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	// The admin API opens next to a running server.
	adm, err := server.OpenAdmin(server.Config{DataDir: e.dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("OpenAdmin: %v", err)
	}
	defer adm.Close()
	if err := adm.AddUser(context.Background(), "carol", password("carol"), server.Clients); err != nil {
		t.Fatal(err)
	}
	mustOK(t, e.py("carol").get("/settings/"))
}
