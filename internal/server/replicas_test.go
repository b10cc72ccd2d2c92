package server_test

// Replicas: several servers on one PostgreSQL database behave as one. A
// change made through one replica wakes the long polls waiting in another
// (the relay, internal/server/notify/pgrelay), long before the periodic
// re-read that covers a lost wake-up.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

// replicas starts n servers on one new PostgreSQL database, each with its
// own data folder, re-reading only every recheck without a wake-up; the
// standard users are made through the first.
func replicas(t *testing.T, n int, recheck time.Duration) []*env {
	url := pgtest.Database(t)
	var out []*env
	for range n {
		out = append(out, newEnv(t, func(c *server.Config) {
			c.Database = url
			c.RelayRecheck = recheck
			c.MaxWait = time.Minute
		}))
	}
	out[0].standardUsers()
	for _, e := range out[1:] {
		e.tokens = out[0].tokens
	}
	return out
}

func TestReplicasWakeEachOther(t *testing.T) {
	const wait = time.Minute // what each poll asks; the recheck is as long
	rs := replicas(t, 2, wait)
	a, b := rs[0], rs[1]

	t.Run("a task submitted through one wakes a dequeue waiting in another", func(t *testing.T) {
		done := make(chan []string, 1)
		b.polling(func() {
			done <- ids(dequeue(t, b.tok("node"), map[string]any{"wait": wait.Seconds(), "concurency": 1}))
		})
		start := time.Now()
		key := a.tok("alice").submit(simpleTask(), nil)
		select {
		case got := <-done:
			if !slices.Equal(got, []string{key}) {
				t.Errorf("the waiting dequeue got %v, want [%s]", got, key)
			}
			t.Logf("woken %v after the submission", time.Since(start))
		case <-time.After(wait / 2):
			t.Fatalf("the dequeue in the other replica was not woken within %v", wait/2)
		}
	})

	t.Run("a result stored through one answers a client waiting in another", func(t *testing.T) {
		key := a.tok("alice").submit(simpleTask(), nil)
		if got := ids(dequeue(t, a.tok("node2"), map[string]any{"concurency": 1})); !slices.Equal(got, []string{key}) {
			t.Fatalf("dequeued %v, want [%s]", got, key)
		}
		done := make(chan answer, 1)
		b.polling(func() {
			done <- b.tok("alice").do("GET", fmt.Sprintf("/task/result/%s/?wait=%g", key, wait.Seconds()), nil)
		})
		start := time.Now()
		mustOK(t, a.tok("node2").postJSON("/task/result/", map[string]any{"id": key, "result": 0}))
		select {
		case r := <-done:
			if r.code != 200 {
				t.Errorf("the waiting client got %v, want the result", r)
			}
			t.Logf("answered %v after the result", time.Since(start))
		case <-time.After(wait / 2):
			t.Fatalf("the client waiting in the other replica was not answered within %v", wait/2)
		}
	})

	t.Run("a node's result stored through one ends its dequeue waiting in another", func(t *testing.T) {
		key := a.tok("alice").submit(simpleTask(), nil)
		if got := ids(dequeue(t, a.tok("node2"), map[string]any{"concurency": 1})); !slices.Equal(got, []string{key}) {
			t.Fatalf("dequeued %v, want [%s]", got, key)
		}
		done := make(chan []string, 1)
		b.polling(func() {
			done <- ids(dequeue(t, b.tok("node2"), map[string]any{"wait": wait.Seconds(), "concurency": 1, "room_wake": true}))
		})
		start := time.Now()
		mustOK(t, a.tok("node2").postJSON("/task/result/", map[string]any{"id": key, "result": 0}))
		select {
		case got := <-done:
			if len(got) != 0 {
				t.Errorf("the ended dequeue got %v, want nothing", got)
			}
			t.Logf("ended %v after the result", time.Since(start))
		case <-time.After(wait / 2):
			t.Fatalf("the node's dequeue in the other replica was not ended within %v", wait/2)
		}
	})
}

// lost loses every wake-up, as a relay whose connection is down does.
type lost struct{}

func (lost) Publish(string) {}
func (lost) Listen(ctx context.Context, _ func(string)) error {
	<-ctx.Done()
	return nil
}
func (lost) Close() error { return nil }

// A wake-up the relay lost delays a waiting dequeue in another replica by
// at most RelayRecheck: the task is submitted through a replica whose
// relay loses everything.
func TestReplicasRecheckWithoutWakeUp(t *testing.T) {
	rs := replicas(t, 1, 300*time.Millisecond)
	b := rs[0]
	a := newEnv(t, func(c *server.Config) { c.Database = b.cfg.Database; c.Relay = lost{} })
	a.tokens = b.tokens
	done := make(chan []string, 1)
	b.polling(func() { done <- ids(dequeue(t, b.tok("node"), map[string]any{"wait": 30.0, "concurency": 1})) })
	key := a.tok("alice").submit(simpleTask(), nil)
	select {
	case got := <-done:
		if !slices.Equal(got, []string{key}) {
			t.Errorf("the waiting dequeue got %v, want [%s]", got, key)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the waiting dequeue did not find the task at its recheck")
	}
}

// A credential ended through one process (a sign-out in a replica, tokens
// revoked by an admin command) is refused by every replica at once, not
// after the cache of credentials lapses (5 s).
func TestReplicasForgetEndedCredentials(t *testing.T) {
	rs := replicas(t, 2, time.Minute)
	a, b := rs[0], rs[1]
	py := a.py("alice")
	session := py.cookie("sessionid")
	onB := newPyClient(t, b.base)
	u := mustURL(b.base)
	onB.jar.SetCookies(u, []*http.Cookie{{Name: "sessionid", Value: session}})
	if r := onB.get("/task/list/"); r.code != 200 {
		t.Fatalf("the session from replica a on replica b: %v", r)
	}
	if r := b.tok("bob").do("GET", "/task/list/", nil); r.code != 200 {
		t.Fatalf("bob's token on replica b: %v", r)
	}
	refused := func(what string, get func() answer) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for get().code == 200 {
			if time.Now().After(deadline) {
				t.Fatalf("%s still accepted by replica b 2 s later", what)
			}
			time.Sleep(10 * time.Millisecond) // the poll's period
		}
	}
	py.get("/logout/")
	refused("a session signed out in replica a", func() answer { return onB.get("/task/list/") })

	admin, err := server.OpenAdmin(server.Config{DataDir: t.TempDir(), Database: a.cfg.Database, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RevokeTokens(context.Background(), "bob"); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	refused("a token revoked by an admin command", func() answer { return b.tok("bob").do("GET", "/task/list/", nil) })
}
