package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
)

// nodesOf reads GET /node/ as c.
func nodesOf(t *testing.T, c *tokenClient) map[string]api.Node {
	t.Helper()
	a := mustOK(t, c.do("GET", "/node/", nil))
	var ans api.NodesAnswer
	if err := api.Decode(a.body, &ans); err != nil {
		t.Fatalf("GET /node/: %v: %s", err, a.body)
	}
	out := map[string]api.Node{}
	for _, n := range ans.Nodes {
		out[n.Name] = n
	}
	return out
}

// storedSeen is the node's last seen time as written in the database.
func (e *env) storedSeen(name string) time.Time {
	e.t.Helper()
	db := e.db()
	defer db.Close()
	var us int64
	if err := db.QueryRow(`SELECT n.last_seen FROM nodes n JOIN users u ON u.id = n.user_id WHERE u.name = ?`, name).Scan(&us); err != nil {
		e.t.Fatalf("last_seen of %s: %v", name, err)
	}
	return time.UnixMicro(us)
}

// A node appears with what its dequeue said; its health follows the age
// of its last contact (the injected clock) against the lease time; a
// heartbeat is a contact; who may read what.
func TestNodesSeen(t *testing.T) {
	clk := newClock()
	e := newEnv(t, withClock(clk), func(c *server.Config) { c.LeaseTime = 60 * time.Second })
	e.standardUsers()
	n, max := e.tok("node"), e.tok("max")

	if got := nodesOf(t, max); len(got) != 0 {
		t.Fatalf("nodes before any came: %+v", got)
	}
	// A dequeue with a bad capacity is a FAIL naming it and notes nothing.
	bad := n.postJSON("/queue/dequeue/", map[string]any{"capacity": map[string]any{"memory": "lots"}})
	if bad.status() != "FAIL" || !strings.Contains(bad.message(), "dequeue capacity") || !strings.Contains(bad.message(), "memory") {
		t.Errorf("a bad capacity: %v", bad)
	}
	if got := nodesOf(t, max); len(got) != 0 {
		t.Fatalf("a refused dequeue noted its node: %+v", got)
	}
	dequeue(t, n, map[string]any{"concurency": 2, "limits": map[string]any{"cpus": 3, "memory": "2G"}, "tags": []string{"gpu"},
		"capacity": map[string]any{"cpus": 4, "memory": "8G"}, "queues": []string{"default"}, "defaults": map[string]any{"time": "30s"}})
	t0 := clk.Now().UTC()
	got := nodesOf(t, max)["node"]
	three, four, twoG, eightG, thirty := int64(3), int64(4), int64(2<<30), int64(8<<30), 30*time.Second
	want := api.Node{Capacity: spec.Limits{CPUs: &four, Memory: &eightG}, Concurency: 2, Defaults: spec.Limits{Time: &thirty},
		Free: spec.Limits{CPUs: &three, Memory: &twoG}, Health: api.HealthOK, LastDequeue: timeOfDay(t0), LastSeen: timeOfDay(t0),
		Name: "node", Queues: []string{"default"}, Running: []string{}, Tags: []string{"gpu"}}
	if !nodeEqual(got, want) {
		t.Fatalf("after a dequeue:\n got %+v\nwant %+v", got, want)
	}

	// Health by age: ok under 40 s (2/3 of the lease), warn under 60 s, crit beyond.
	for _, c := range []struct {
		advance time.Duration
		health  string
	}{{39 * time.Second, api.HealthOK}, {time.Second, api.HealthWarn}, {19 * time.Second, api.HealthWarn}, {time.Second, api.HealthCrit}} {
		clk.Advance(c.advance)
		if got := nodesOf(t, max)["node"]; got.Health != c.health || got.AgeSeconds != clk.Now().Sub(t0).Seconds() {
			t.Errorf("%v after the dequeue: %s, age %v; want %s", clk.Now().Sub(t0), got.Health, got.AgeSeconds, c.health)
		}
	}
	// A heartbeat is a contact: ok again, and written (more than 5 s passed).
	mustOK(t, n.postJSON("/queue/heartbeat/", map[string]any{"tasks": []string{}}))
	if got := nodesOf(t, max)["node"]; got.Health != api.HealthOK || got.LastSeen != timeOfDay(clk.Now()) || got.LastDequeue != timeOfDay(t0) {
		t.Errorf("after a heartbeat: %+v", got)
	}
	if s := e.storedSeen("node"); !s.Equal(clk.Now().Truncate(time.Microsecond)) {
		t.Errorf("stored last seen %v, want the heartbeat's %v", s, clk.Now())
	}

	// Who reads what: inspectors all, a processor itself (never seen),
	// clients and strangers nothing.
	if got := nodesOf(t, e.tok("ivy")); len(got) != 1 || got["node"].Name != "node" {
		t.Errorf("an inspector reads %+v", got)
	}
	if got := nodesOf(t, e.tok("node2")); len(got) != 1 || got["node2"].Health != api.HealthCrit || got["node2"].LastSeen != "" {
		t.Errorf("node2 reads %+v, want itself, never seen", got)
	}
	mustOK(t, e.tok("node2").do("GET", "/node/node2/", nil))
	mustOK(t, e.tok("ivy").do("GET", "/node/node/", nil))
	for _, c := range []struct {
		who, method, path string
		code              int
	}{
		{"alice", "GET", "/node/", 403},
		{"", "GET", "/node/", 403},
		{"alice", "GET", "/node/node/", 403},
		{"node2", "GET", "/node/node/", 403},
		{"max", "GET", "/node/nobody/", 404},
		{"max", "GET", "/node/alice/", 404},
		{"max", "DELETE", "/node/node/", 405},
		{"ivy", "POST", "/node/node/drain/", 403},
		{"node", "POST", "/node/node/drain/", 403},
		{"alice", "POST", "/node/node/undrain/", 403},
		{"max", "GET", "/node/node/drain/", 405},
		{"max", "POST", "/node/nobody/drain/", 404},
		{"max", "POST", "/node/alice/drain/", 404},
	} {
		if a := e.tok(c.who).do(c.method, c.path, nil); a.code != c.code {
			t.Errorf("%s %s by %q: %v, want %d", c.method, c.path, c.who, a, c.code)
		}
	}
	if got := nodesOf(t, max); got["node"].Drained || len(got) != 1 {
		t.Errorf("refused drains changed the nodes: %+v", got)
	}
}

// nodeEqual compares nodes by their JSON, as the API writes them.
func nodeEqual(a, b api.Node) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func timeOfDay(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/1000 != 0 {
		return t.Format("2006-01-02T15:04:05.000Z")
	}
	return t.Format("2006-01-02T15:04:05Z")
}

// A node's last seen is written at most every 5 s while its dequeues say
// the same; a dequeue that says something new is written at once. Between
// writes the API shows the contact kept in memory.
func TestNodeWritesThrottled(t *testing.T) {
	clk := newClock()
	e := newEnv(t, withClock(clk))
	e.standardUsers()
	n := e.tok("node")
	body := map[string]any{"limits": map[string]any{"cpus": 2}, "tags": []string{}}
	dequeue(t, n, body)
	t0 := clk.Now().Truncate(time.Microsecond)
	clk.Advance(2 * time.Second)
	dequeue(t, n, body)
	if s := e.storedSeen("node"); !s.Equal(t0) {
		t.Errorf("a dequeue 2 s later saying the same was written: %v, want %v", s, t0)
	}
	if got := nodesOf(t, e.tok("max"))["node"]; got.LastSeen != timeOfDay(clk.Now()) {
		t.Errorf("the API shows %s, want the contact in memory %s", got.LastSeen, timeOfDay(clk.Now()))
	}
	clk.Advance(time.Second)
	dequeue(t, n, map[string]any{"limits": map[string]any{"cpus": 1}, "tags": []string{}})
	if s := e.storedSeen("node"); !s.Equal(clk.Now().Truncate(time.Microsecond)) {
		t.Errorf("a dequeue with new free limits was not written: %v", s)
	}
	t1 := clk.Now().Truncate(time.Microsecond)
	clk.Advance(4 * time.Second)
	mustOK(t, n.postJSON("/queue/heartbeat/", nil))
	if s := e.storedSeen("node"); !s.Equal(t1) {
		t.Errorf("a heartbeat 4 s after a write was written: %v", s)
	}
	clk.Advance(time.Second)
	mustOK(t, n.postJSON("/queue/heartbeat/", nil))
	if s := e.storedSeen("node"); !s.Equal(clk.Now().Truncate(time.Microsecond)) {
		t.Errorf("a heartbeat 5 s after a write was not written: %v", s)
	}
	// After a restart the stored state is what the API shows.
	e.restart()
	got := nodesOf(t, e.tok("max"))["node"]
	if got.LastSeen != timeOfDay(clk.Now()) || got.Free.CPUs == nil || *got.Free.CPUs != 1 {
		t.Errorf("after a restart: %+v", got)
	}
}

// Drain: a drained node's dequeue gets nothing at once, though tasks wait;
// its long poll waiting ends at once; its running task goes on (its
// heartbeat holds it, its result is taken); undrain hands it tasks again.
// Kolejka's dequeue body (no key of ours) works throughout.
func TestNodeDrain(t *testing.T) {
	const wait = 30 * time.Second
	e := newEnv(t, func(c *server.Config) { c.MaxWait = wait })
	e.standardUsers()
	a, n, max := e.tok("alice"), e.tok("node"), e.tok("max")
	py := e.py("node")

	running := a.submit(task(nil), nil)
	if keys := taskKeys(t, py.dequeue(1, nil, nil)); !slices.Equal(keys, []string{running}) {
		t.Fatalf("Kolejka's dequeue got %v", keys)
	}
	if got := nodesOf(t, max)["node"]; !got.Capacity.IsZero() || got.Concurency != 1 || !slices.Equal(got.Running, []string{running}) {
		t.Errorf("after Kolejka's dequeue: %+v", got)
	}

	// A long poll waiting when the drain comes ends at once, empty.
	done := make(chan []map[string]any, 1)
	start := time.Now()
	e.polling(func() { done <- dequeue(t, n, map[string]any{"wait": wait.Seconds()}) })
	d := mustOK(t, max.do("POST", "/node/node/drain/", nil))
	if node := d.json["node"].(map[string]any); node["drained"] != true || node["name"] != "node" {
		t.Errorf("drain answered %v", d)
	}
	if got := <-done; len(got) != 0 {
		t.Errorf("the drained poll got %v", got)
	}
	if el := time.Since(start); el >= wait/2 {
		t.Errorf("the drained poll answered after %v", el)
	}

	// Tasks wait, but the drained node gets none, at once, even asking to wait.
	waiting := a.submit(task(nil), nil)
	start = time.Now()
	if got := dequeue(t, n, map[string]any{"wait": wait.Seconds()}); len(got) != 0 {
		t.Errorf("a drained node got %v", ids(got))
	}
	if keys := taskKeys(t, py.dequeue(1, nil, nil)); len(keys) != 0 {
		t.Errorf("a drained node got %v through Kolejka's dequeue", keys)
	}
	if el := time.Since(start); el >= wait/2 {
		t.Errorf("the drained node's dequeues took %v", el)
	}
	// Its running task goes on.
	hb := mustOK(t, n.postJSON("/queue/heartbeat/", map[string]any{"tasks": []string{running}}))
	if held := hb.json["tasks"].([]any); len(held) != 1 || held[0] != running {
		t.Errorf("the drained node's heartbeat holds %v", hb)
	}
	mustOK(t, n.postJSON("/task/result/", map[string]any{"id": running, "result": 0}))
	if got := nodesOf(t, max)["node"]; !got.Drained || len(got.Running) != 0 {
		t.Errorf("after its result: %+v", got)
	}

	// Drain is kept over a restart; undrain hands out again.
	e.restart()
	max, n = e.tok("max"), e.tok("node")
	if got := dequeue(t, n, map[string]any{}); len(got) != 0 {
		t.Errorf("after a restart the drained node got %v", ids(got))
	}
	u := mustOK(t, max.do("POST", "/node/node/undrain/", nil))
	if u.json["node"].(map[string]any)["drained"] != false {
		t.Errorf("undrain answered %v", u)
	}
	if got := ids(dequeue(t, n, map[string]any{})); !slices.Equal(got, []string{waiting}) {
		t.Errorf("undrained, the node got %v, want [%s]", got, waiting)
	}
}

// A drain made in another process (an admin command: OpenAdmin on the
// same folder) ends a waiting long poll within about a second and holds
// for the next dequeues.
func TestNodeDrainFromAdmin(t *testing.T) {
	const wait = 30 * time.Second
	e := newEnv(t, func(c *server.Config) { c.MaxWait = wait })
	e.standardUsers()
	n := e.tok("node")
	admin, err := server.OpenAdmin(server.Config{DataDir: e.dir, Database: e.cfg.Database, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.SetNodeDrained(context.Background(), "alice", true); !errors.Is(err, server.ErrNotFound) {
		t.Errorf("drain a client: %v", err)
	}
	done := make(chan []map[string]any, 1)
	start := time.Now()
	e.polling(func() { done <- dequeue(t, n, map[string]any{"wait": wait.Seconds()}) })
	if node, err := admin.SetNodeDrained(context.Background(), "node", true); err != nil || !node.Drained {
		t.Fatalf("drain: %+v %v", node, err)
	}
	if got := <-done; len(got) != 0 {
		t.Errorf("the drained poll got %v", got)
	}
	if el := time.Since(start); el >= wait/2 {
		t.Errorf("the poll drained in another process answered after %v", el)
	}
	e.tok("alice").submit(task(nil), nil)
	if got := dequeue(t, n, map[string]any{}); len(got) != 0 {
		t.Errorf("a node drained in another process got %v", ids(got))
	}
}
