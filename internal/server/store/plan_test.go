package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// The hot queries must be index searches, never scans of the tasks table
// (a dequeue with 100k queued tasks depends on it).
func TestQueryPlans(t *testing.T) {
	sqliteOnly(t, "SQLite's query plans")
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite3"))
	defer s.Close()
	for q, index := range map[string]string{
		`SELECT id, key, attempts FROM tasks WHERE state = ? AND lease_expire < ? ORDER BY lease_expire LIMIT 500`: "tasks_lease",
		`SELECT id FROM tasks WHERE state = ? AND id > ? ORDER BY id LIMIT 100`:                                    "tasks_queue",
		`SELECT 1 FROM tasks WHERE assignee_id = ? AND state = ? AND exclusive = 1`:                                "tasks_assignee",
		`SELECT MIN(lease_expire) FROM tasks WHERE state = ?`:                                                      "tasks_lease",
		`SELECT id FROM tasks WHERE queue = 'q' AND state = 0 AND id > 5 ORDER BY id LIMIT 100`:                    "tasks_queue_wait",
		`SELECT time_queued, time_create FROM tasks WHERE queue = 'q' AND state = 0 ORDER BY id LIMIT 1`:           "tasks_queue_wait",
		`SELECT id FROM callbacks WHERE state = ? AND next_attempt <= ? ORDER BY next_attempt LIMIT 64`:            "callbacks_due",
	} {
		rows, err := s.w.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			rows.Scan(&id, &parent, &unused, &detail)
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "; ")
		if !strings.Contains(joined, "USING") || !strings.Contains(joined, index) || strings.Contains(joined, "TEMP B-TREE") {
			t.Errorf("%s\n  plan: %s\n  want a search of %s without sorting", q, joined, index)
		}
	}
}
