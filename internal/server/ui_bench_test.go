package server_test

// Benchmarks of the web UI's two heaviest pages on a server holding 100k
// tasks (BENCHMARKS.md "Web UI"): the overview (queues and the last day's
// ends by minute) and the task table (first page, a filtered page, a page
// deep in the past). Each op is one request over loopback, so ns/op is
// the server's time plus a loopback round trip.

import (
	"database/sql"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
)

// benchTasks is how many tasks the UI's benchmarks hold.
const benchTasks = 100_000

// fillTasks writes n tasks straight into the server's database in one
// transaction (the API would take minutes): submitted one every 0.86 s
// over the last day, alternately alice's and bob's; 7 in 10 done (2 in 3
// of them OK, the rest WA), 1 in 10 cancelled, 2 in 10 queued. The
// store's triggers keep its counts as for tasks submitted one by one.
func fillTasks(b *testing.B, e *env, n int) {
	b.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(e.dir, server.DatabaseFile)+"?_busy_timeout=10000")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var alice, bob, node int64
	for name, id := range map[string]*int64{"alice": &alice, "bob": &bob, "node": &node} {
		if err := db.QueryRow(`SELECT id FROM users WHERE name = ?`, name).Scan(id); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now().UnixMicro()
	step := (24 * time.Hour).Microseconds() / int64(n)
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tx.Exec(`
		WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?)
		INSERT INTO tasks (key, user_id, description, limits, requires, exclusive, callback_url, state, time_create, time_queued, queue, type_name, time_finish, status)
		SELECT printf('bench%07d', i), CASE WHEN i % 2 = 0 THEN ? ELSE ? END, '{"image": "busybox:latest", "args": ["true"]}', '{}', '[]', 0, '',
			CASE WHEN i % 10 < 7 THEN 2 WHEN i % 10 = 7 THEN 3 ELSE 0 END,
			? - (? - i) * ?, ? - (? - i) * ?, 'default', '',
			CASE WHEN i % 10 < 8 THEN ? - (? - i) * ? + 500000 END,
			CASE WHEN i % 10 >= 7 THEN '' WHEN i % 3 = 0 THEN 'WA' ELSE 'OK' END
		FROM k`, n, alice, bob, now, n, step, now, n, step, now, n, step); err != nil {
		b.Fatal(err)
	}
	if _, err := tx.Exec(`
		INSERT INTO results (task_id, user_id, description, fingerprint, time_create)
		SELECT id, ?, '{"status": "' || status || '"}', '', time_finish FROM tasks WHERE state = 2`, node); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// uiBench is a server of benchTasks tasks and max, a manager, signed in
// on the UI (who sees every task: the largest table).
func uiBench(b *testing.B) *browser {
	b.Helper()
	e := newEnv(b)
	e.standardUsers()
	fillTasks(b, e, benchTasks)
	br := e.browser()
	br.signIn("max")
	return br
}

func benchPage(b *testing.B, br *browser, path string) {
	b.Helper()
	if p := br.get(path); p.code != http.StatusOK {
		b.Fatalf("%s: %d %s", path, p.code, p.body)
	}
	b.ResetTimer()
	for b.Loop() {
		if p := br.get(path); p.code != http.StatusOK {
			b.Fatalf("%s: %d", path, p.code)
		}
	}
}

func BenchmarkUIOverview(b *testing.B) {
	benchPage(b, uiBench(b), "ui/")
}

func BenchmarkUITaskTable(b *testing.B) {
	br := uiBench(b)
	b.Run("first", func(b *testing.B) { benchPage(b, br, "ui/tasks/") })
	b.Run("done-by-alice", func(b *testing.B) { benchPage(b, br, "ui/tasks/?state=done&owner=alice") })
	b.Run("status-WA", func(b *testing.B) { benchPage(b, br, "ui/tasks/?status=WA") })
	b.Run("deep", func(b *testing.B) { benchPage(b, br, "ui/tasks/?before=bench0000100") })
}
