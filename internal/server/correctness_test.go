package server_test

// Correctness, each property at its mechanism: bearer tokens expire and can
// be listed and withdrawn (and a password change withdraws them); a result
// that cannot be stored leaves nothing behind, and many outputs fit; limits
// no task can run with are refused where they come in; every task handed
// out carries cpus, memory and time.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
)

// A token works until its expiry, then gets a 403 that says it expired.
func TestTokenExpires(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	tok, row, err := e.srv.NewTokenFor(context.Background(), "alice", 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if got := row.TimeExpire.Sub(row.TimeCreate); got != 1500*time.Millisecond {
		t.Fatalf("token lasts %v, want 1.5s", got)
	}
	c := &tokenClient{t: t, base: e.base, token: tok, hc: e.tok("alice").hc}
	mustOK(t, c.do("GET", "/settings/", nil))
	waitFor(t, "the token to expire", func() bool { return c.do("GET", "/settings/", nil).code == 403 })
	a := c.do("GET", "/settings/", nil)
	if !strings.Contains(string(a.body), "expired bearer token") {
		t.Errorf("an expired token is told %v, want it to say it expired", a)
	}
	// The default lifetime is the configured TokenAge.
	_, row, err = e.srv.NewTokenFor(context.Background(), "alice", 0)
	if err != nil || row.TimeExpire.Sub(row.TimeCreate) != server.DefaultTokenAge {
		t.Errorf("default token: %+v %v, want it to last %v", row, err, server.DefaultTokenAge)
	}
}

// Tokens are listed (id, prefix, created, expires, last used) and revoked
// one by one, by the token itself, or all at once; a revoked token is
// refused at once by this server and within the auth cache's lifetime by
// a server in another process.
func TestTokenListAndRevoke(t *testing.T) {
	clk := newClock()
	e := newEnv(t, withClock(clk))
	e.standardUsers()
	ctx := context.Background()
	t1, r1, err := e.srv.NewTokenFor(ctx, "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t2, _, _ := e.srv.NewTokenFor(ctx, "alice", time.Hour)
	t3, _, _ := e.srv.NewTokenFor(ctx, "alice", time.Hour)
	use := func(tok string) answer {
		return (&tokenClient{t: t, base: e.base, token: tok, hc: e.tok("alice").hc}).do("GET", "/settings/", nil)
	}
	mustOK(t, use(t1))
	list, err := e.srv.ListTokens(ctx, "alice")
	if err != nil || len(list) != 4 { // standardUsers made one
		t.Fatalf("list: %v %v", list, err)
	}
	var found bool
	for _, x := range list {
		if x.ID == r1.ID {
			found = true
			if x.Prefix != t1[:11] || !strings.HasPrefix(t1, x.Prefix) || x.TimeExpire.Sub(x.TimeCreate) != time.Hour {
				t.Errorf("listed %+v for token %s", x, t1[:11])
			}
		}
	}
	if !found {
		t.Fatalf("token %s not listed: %+v", r1.ID, list)
	}
	// By id: refused at once here.
	if n, err := e.srv.RevokeTokens(ctx, "alice", r1.ID); err != nil || n != 1 {
		t.Fatalf("revoke %s: %d %v", r1.ID, n, err)
	}
	if a := use(t1); a.code != 403 || !strings.Contains(string(a.body), "invalid bearer token") {
		t.Errorf("a revoked token: %v", a)
	}
	mustOK(t, use(t2))
	// An id that is not alice's changes nothing.
	if _, err := e.srv.RevokeTokens(ctx, "alice", "000000000000", r1.ID); !errorsIs(err, server.ErrNotFound) || !strings.Contains(err.Error(), "000000000000") {
		t.Errorf("revoking an unknown id: %v, want not found naming it", err)
	}
	if _, err := e.srv.RevokeTokens(ctx, "bob", t2); !errorsIs(err, server.ErrNotFound) {
		t.Errorf("revoking alice's token as bob's: %v", err)
	}
	mustOK(t, use(t2))
	// By the token itself, from another process (the admin command): the
	// running server stops taking it within the auth cache's lifetime.
	adm, err := server.OpenAdmin(server.Config{DataDir: e.dir, Database: e.cfg.Database, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := adm.RevokeTokens(ctx, "alice", t2); err != nil || n != 1 {
		t.Fatalf("revoke by token: %d %v", n, err)
	}
	clk.Advance(5 * time.Second) // the auth cache keeps an entry 5 s
	if a := use(t2); a.code != 403 {
		t.Fatalf("the running server still takes a token revoked 5 s ago by another process: %v", a)
	}
	// All of them.
	if n, err := adm.RevokeTokens(ctx, "alice"); err != nil || n != 2 {
		t.Fatalf("revoke all: %d %v, want 2 (t3 and standardUsers')", n, err)
	}
	adm.Close()
	clk.Advance(5 * time.Second)
	if a, b := use(t3), use(e.tokens["alice"]); a.code != 403 || b.code != 403 {
		t.Fatalf("alice's tokens still work 5 s after revoke --all: %v, %v", a, b)
	}
	mustOK(t, e.tok("bob").do("GET", "/settings/", nil))
}

// "Last used" is noted per request and written down by the collection pass
// or at shutdown, never while serving a request.
func TestTokenLastUsed(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	before := time.Now().UTC().Add(-time.Second)
	mustOK(t, e.tok("alice").do("GET", "/settings/", nil))
	list, _ := e.srv.ListTokens(context.Background(), "bob")
	if len(list) != 1 || !list[0].TimeUsed.IsZero() {
		t.Fatalf("bob's unused token: %+v", list)
	}
	e.restart()
	list, err := e.srv.ListTokens(context.Background(), "alice")
	if err != nil || len(list) != 1 || list[0].TimeUsed.Before(before) {
		t.Errorf("alice's token after a use and a restart: %+v %v, want last used after %v", list, err, before)
	}
	if list, _ := e.srv.ListTokens(context.Background(), "bob"); len(list) != 1 || !list[0].TimeUsed.IsZero() {
		t.Errorf("bob's unused token: %+v", list)
	}
}

// A new password ends the user's sessions and revokes its tokens: whoever
// knew the old one may have made either. Other users keep theirs.
func TestPasswordChangeRevokesTokens(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	py := e.py("alice")
	mustOK(t, py.get("/settings/"))
	mustOK(t, e.tok("alice").do("GET", "/settings/", nil))
	sessions, tokens, err := e.srv.SetPassword(context.Background(), "alice", "new-secret")
	if err != nil || sessions != 1 || tokens != 1 {
		t.Fatalf("SetPassword: %d sessions, %d tokens, %v; want 1 and 1", sessions, tokens, err)
	}
	if a := e.tok("alice").do("GET", "/settings/", nil); a.code != 403 {
		t.Errorf("alice's token after passwd: %v", a)
	}
	if a := py.get("/settings/"); a.code != 403 {
		t.Errorf("alice's session after passwd: %v", a)
	}
	if list, _ := e.srv.ListTokens(context.Background(), "alice"); len(list) != 0 {
		t.Errorf("alice still has tokens: %+v", list)
	}
	mustOK(t, e.tok("bob").do("GET", "/settings/", nil))
}

// Limits no task can run with are refused at submission, naming the
// field; nothing is stored. So are such defaults in a dequeue and in the
// configuration.
func TestUnrunnableLimitsRefused(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	ref := e.tok("alice").upload([]byte("input"))
	for field, value := range map[string]any{"memory": "0", "cpus": 0, "time": "0s"} {
		before := e.snapshot()
		task := simpleTask()
		task["limits"] = map[string]any{field: value}
		task["files"] = map[string]any{"in": map[string]any{"reference": ref}}
		body, _ := json.Marshal(task)
		for _, a := range []answer{e.tok("alice").do("POST", "/task/task/", body), e.py("alice").post("/task/task/", body)} {
			if a.code != 200 || a.status() != "FAIL" || !strings.Contains(a.message(), spec.TaskFile+": limits."+field+": 0") {
				t.Errorf("%s %v: %v, want FAIL naming kolejka_task.json and limits.%s", field, value, a, field)
			}
		}
		if after := e.snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("%s 0 changed the server: %v → %v", field, before, after)
		}
	}
	// Zero swap and gpus mean "none" and are fine.
	task := simpleTask()
	task["limits"] = map[string]any{"swap": "0", "gpus": 0}
	mustOK(t, e.tok("alice").postJSON("/task/task/", task))
	a := e.tok("node").postJSON("/queue/dequeue/", map[string]any{"concurency": 1, "defaults": map[string]any{"memory": 0}})
	if a.status() != "FAIL" || !strings.Contains(a.message(), "defaults.memory") {
		t.Errorf("dequeue defaults memory 0: %v", a)
	}
	for _, cfg := range []func(*server.Config){
		func(c *server.Config) { _ = spec.ParseLimit(&c.Limits, "cpus", "0") },
		func(c *server.Config) { _ = spec.ParseLimit(&c.Defaults, "time", "0") },
	} {
		c := server.Config{DataDir: t.TempDir()}
		cfg(&c)
		if _, err := c.WithDefaults(); !errorsIs(err, server.ErrConfig) {
			t.Errorf("configuration %s / defaults %s: %v, want ErrConfig", c.Limits, c.Defaults, err)
		}
	}
}

// What Kolejka's Python foreman sends (its capacity, with or without a
// time) gets tasks that all carry cpus, memory and time, whatever the task
// omitted: given none it would reboot its node (join(timeout=-1)).
func TestHandedOutTasksCarryTimeCPUsMemory(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	a := e.tok("alice")
	for range 3 {
		a.submit(simpleTask(), nil)
	}
	node := e.py("node")
	for _, limits := range []map[string]any{
		{"cpus": 4, "memory": "8G", "network": true},
		{"cpus": 4, "memory": "8G", "time": "30s"},
		{},
	} {
		got := node.dequeue(1, limits, nil)
		tasks := got.json["tasks"].([]any)
		if len(tasks) != 1 {
			t.Fatalf("dequeue %v: %v", limits, got)
		}
		l := tasks[0].(map[string]any)["limits"].(map[string]any)
		for _, k := range []string{"cpus", "memory", "time"} {
			if l[k] == nil {
				t.Errorf("node declaring %v got a task without %s: %v", limits, k, l)
			}
		}
		if limits["time"] == "30s" && l["time"] != "30.0s" {
			t.Errorf("node with a 30 s maximum got time %v", l["time"])
		}
	}
}

// A result over max_result_body is 413 and stores nothing; the refused
// post's uploads (a node's references no result holds) are swept by the
// collector once they are older than UploadGrace, not before, with their
// blobs. A client's references and a node's references a result took stay.
func TestStaleUploadsSwept(t *testing.T) {
	const grace = 3 * time.Second
	clk := newClock()
	passes := make(chan struct{}, 1)
	e := newEnv(t, withClock(clk), func(c *server.Config) {
		c.MaxResultBody = 4 << 10
		c.UploadGrace = grace
		c.GCInterval = 10 * time.Millisecond
		server.SetCollectHook(c, func() {
			select {
			case passes <- struct{}{}:
			default:
			}
		})
	})
	// fullPass returns after a collector pass that began after the call
	// (the second one ended since: the first may have begun before).
	fullPass := func() {
		t.Helper()
		select {
		case <-passes:
		default:
		}
		for range 2 {
			select {
			case <-passes:
			case <-time.After(30 * time.Second):
				t.Fatal("the collector made no pass in 30 s")
			}
		}
	}
	e.standardUsers()
	alice, node := e.tok("alice"), e.tok("node")
	kept := alice.upload([]byte("alice keeps this"))
	k1 := alice.submit(simpleTask(), nil)
	k2 := alice.submit(simpleTask(), nil)
	taskKeys(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 2}))

	files := map[string]any{}
	for i := range 100 {
		files[fmt.Sprintf("out/%03d", i)] = map[string]any{"reference": node.upload([]byte(fmt.Sprintf("output %d", i)))}
	}
	big := node.postJSON("/task/result/", map[string]any{"id": k1, "result": 0, "status": "OK", "files": files})
	if big.code != 413 {
		t.Fatalf("a result over max_result_body: %v, want 413", big)
	}
	if e.count("results") != 0 {
		t.Fatal("a refused result was stored")
	}
	// k2's result is accepted: its file passes to alice and stays.
	taken := node.upload([]byte("k2's output"))
	mustOK(t, node.postJSON("/task/result/", map[string]any{"id": k2, "result": 0, "status": "OK", "files": map[string]any{"out": map[string]any{"reference": taken}}}))
	// A pass at the end of the grace period takes nothing; the uploads
	// were made at the clock's time, which stood still meanwhile.
	clk.Advance(grace - time.Millisecond)
	fullPass()
	if got := e.count("refs"); got != 102 {
		t.Fatalf("%d references within upload_grace, want all 102", got)
	}
	clk.Advance(2 * time.Millisecond)
	waitFor(t, "the stale uploads to be swept", func() bool { return e.count("refs") == 2 })
	waitFor(t, "their blobs to be collected", func() bool { return e.count("blobs") == 2 && len(e.blobFiles()) == 2 })
	for _, ref := range []string{kept, taken} {
		if a := alice.do("GET", "/blob/reference/"+ref+"/", nil); a.code != 200 {
			t.Errorf("reference %s was swept: %v", ref, a)
		}
	}
}

// 30,000 output files fit the default max_result_body and reach the
// task's owner: the result is not SE and leaves no references behind, as
// it would under a 1 MiB cap shared with tasks.
func TestManyOutputsFit(t *testing.T) {
	if testing.Short() {
		t.Skip("30,000 references take a while")
	}
	e := newEnv(t)
	e.standardUsers()
	alice, node := e.tok("alice"), e.tok("node")
	key := alice.submit(simpleTask(), nil)
	taskKeys(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1}))
	hash := sha([]byte("out\n"))
	node.upload([]byte("out\n"))
	const n = 30000
	refs := make([]string, n)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.tok("node")
			for i := w; i < n; i += 4 {
				a := c.do("POST", "/blob/blob/"+hash+"/", nil)
				if a.status() != "OK" {
					t.Errorf("dedup: %v", a)
					return
				}
				refs[i] = a.json["reference"].(map[string]any)["key"].(string)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	files := map[string]spec.File{}
	for i, r := range refs {
		files[fmt.Sprintf("tests/%05d/output.txt", i)] = spec.File{Reference: r}
	}
	zero := 0
	res := &spec.Result{ID: key, Result: &zero, Status: spec.StatusOK, Files: files}
	body, err := res.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(body) <= server.DefaultMaxJSONBody {
		t.Fatalf("the result is only %d bytes: not a test of the result cap", len(body))
	}
	mustOK(t, node.do("POST", "/task/result/", body))
	got := mustOK(t, alice.do("GET", "/task/result/"+key+"/", nil))
	if stored := got.json["result"].(map[string]any)["files"].(map[string]any); len(stored) != n {
		t.Errorf("the owner sees %d files, want %d", len(stored), n)
	}
	t.Logf("a %d-file result is %d bytes; the default cap is %d", n, len(body), server.DefaultMaxResultBody)
}
