package e2e

// Named queues (docs/queues.md) on a grid of real processes: queues made
// with `kolejka-server queue` beside the running server, tasks put with
// kolejka-client, nodes serving queues through [foreman] queues.

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
)

// queueTask is a task folder of queue q (none: the default queue) that
// prints its name.
func queueTask(t *testing.T, q, name string) string {
	t.Helper()
	key := ""
	if q != "" {
		key = fmt.Sprintf(`, "queue": %q`, q)
	}
	return gridtest.WriteTask(t, fmt.Sprintf(`{"image": %q, "args": ["echo", %q], "stdout": "stdout",
		"limits": {"memory": "64M", "time": "20s"}%s}`, gridtest.TestImage, name, key))
}

// ranOn waits for key's result and returns the node that ran it (its
// node:<name> tag).
func (g *grid) ranOn(key string) string {
	g.T.Helper()
	dir, err := g.result(key, time.Minute)
	if err != nil {
		g.T.Fatalf("result of %s: %v", key, err)
	}
	res, err := spec.LoadResult(dir)
	if err != nil {
		g.T.Fatal(err)
	}
	for _, tag := range res.Tags {
		if n, ok := strings.CutPrefix(tag, "node:"); ok {
			return n
		}
	}
	g.T.Fatalf("result of %s names no node: %v", key, res.Tags)
	return ""
}

// regexpLine says whether out matches pattern.
func regexpLine(out, pattern string) bool { return regexp.MustCompile(pattern).MatchString(out) }

// untaken says the task is still queued: no node, no result.
func (g *grid) untaken(key string) bool {
	info := g.TaskInfo(key)
	return info["resolved"] != true && info["assignee"] == nil
}

// A private queue: an outsider's submission is refused naming the queue
// (nothing stored); its tasks go only to its nodes, even when another node
// serving it by name asks first.
func TestQueuePrivate(t *testing.T) {
	g := newGrid(t)
	g.Admin("adduser", "--clients", "bob", "bob-password")
	g.Tokens["bob"] = strings.TrimSpace(g.Admin("token", "bob"))
	g.Admin("queue", "add", "judge", "--private", "--submitters", "alice", "--nodes", "a")

	bob := g.Client("bob")
	_, err := bob.TaskPut(context.Background(), queueTask(t, "judge", "bob's"), spec.Limits{})
	if err == nil || !strings.Contains(err.Error(), `queue: queue "judge" is private: user bob may not submit to it`) {
		t.Fatalf("bob's submission to judge: %v", err)
	}
	st, err := g.Alice.Stats(context.Background())
	if err != nil || st.TaskCount != 0 {
		t.Fatalf("after the refusal: %d tasks, %v", st.TaskCount, err)
	}

	// b serves judge by name but is not among its nodes: it runs a newer
	// default-queue task and leaves judge's older ones.
	g.startForeman("b", pin(1), "queues = judge, default")
	judged := []string{g.Put(queueTask(t, "judge", "j1")), g.Put(queueTask(t, "judge", "j2"))}
	if n := g.ranOn(g.Put(queueTask(t, "", "d"))); n != "b" {
		t.Fatalf("the default task ran on %s", n)
	}
	for _, k := range judged {
		if !g.untaken(k) {
			t.Fatalf("judge's task %s was handed out before its node came: %v", k, g.TaskInfo(k))
		}
	}
	g.startForeman("a", pin(0), "queues = judge")
	for _, k := range judged {
		if n := g.ranOn(k); n != "a" {
			t.Errorf("judge's task %s ran on %s, want a", k, n)
		}
	}
}

// A paused queue keeps its tasks and hands none out; resumed (by the admin
// command, in another process), they run.
func TestQueuePaused(t *testing.T) {
	g := newGrid(t)
	g.Admin("queue", "add", "held")
	g.Admin("queue", "pause", "held")
	g.startForeman("a", pin(0), "queues = held, default")
	held := g.Put(queueTask(t, "held", "h"))
	if n := g.ranOn(g.Put(queueTask(t, "", "d"))); n != "a" {
		t.Fatalf("the default task ran on %s", n)
	}
	if !g.untaken(held) {
		t.Fatalf("the paused queue's task was handed out: %v", g.TaskInfo(held))
	}
	if out := g.Admin("queue", "ls"); !regexpLine(out, `(?m)^held\s+0\s+no\s+yes\s+1\s+0\s+\S+s$`) {
		t.Errorf("queue ls does not show held paused with 1 task:\n%s", out)
	}
	g.Admin("queue", "resume", "held")
	if n := g.ranOn(held); n != "a" {
		t.Errorf("the resumed task ran on %s", n)
	}
}

// A node serving two queues takes the higher priority queue's task first,
// though the other queue's is older.
func TestQueuePriority(t *testing.T) {
	g := newGrid(t)
	g.Admin("queue", "add", "lo", "--priority", "1")
	g.Admin("queue", "add", "hi", "--priority", "5")
	lo := g.Put(queueTask(t, "lo", "lo"))
	hi := g.Put(queueTask(t, "hi", "hi"))
	// One core: one task at a time, so the order of hand-outs is the
	// order of runs.
	g.startForeman("a", pin(0), "queues = lo, hi", "cpus = 1")
	for _, k := range []string{lo, hi} {
		if n := g.ranOn(k); n != "a" {
			t.Fatalf("%s ran on %s", k, n)
		}
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(g.Data, server.DatabaseFile)+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var order []string
	rows, err := db.Query(`SELECT t.key FROM task_nodes n JOIN tasks t ON t.id = n.task_id ORDER BY n.time_assign, t.id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		rows.Scan(&k)
		order = append(order, k)
	}
	rows.Close()
	if !slices.Equal(order, []string{hi, lo}) {
		t.Errorf("hand-outs %v, want hi's %s before lo's %s", order, hi, lo)
	}
}
