package server_test

// The server on PostgreSQL ([server] database): a full cycle through the
// API on a real cluster (internal/testenv/pgtest), and a bad database
// setting stopping the start with one line that names it.

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

func withPostgres(t testing.TB) func(*server.Config) {
	u := pgtest.Database(t)
	return func(cfg *server.Config) { cfg.Database = u }
}

// Submit, dequeue, post a result, read it back, over a restart: the rows
// are in PostgreSQL, and no SQLite file appears in the data folder.
func TestPostgresCycle(t *testing.T) {
	e := newEnv(t, withPostgres(t))
	e.standardUsers()
	alice, node := e.tok("alice"), e.tok("node")
	key := alice.submit(simpleTask(), map[string][]byte{"a": []byte("A")})
	if got := taskKeys(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1})); !slices.Equal(got, []string{key}) {
		t.Fatalf("dequeued %v, want [%s]", got, key)
	}
	out := node.upload([]byte("out"))
	mustOK(t, node.postJSON("/task/result/", map[string]any{"id": key, "result": 0,
		"files": map[string]any{"out": map[string]any{"reference": out}}}))
	e.restart()
	alice = e.tok("alice")
	r := mustOK(t, alice.do("GET", "/task/result/"+key+"/", nil))
	if !strings.Contains(string(r.body), out) {
		t.Errorf("result %s lacks %s", r.body, out)
	}
	var state int
	if err := e.db().QueryRow(`SELECT state FROM tasks WHERE key = ?`, key).Scan(&state); err != nil || state != 2 {
		t.Errorf("the task's row in PostgreSQL: state %d, %v; want 2 (done)", state, err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, server.DatabaseFile)); err == nil {
		t.Errorf("a SQLite file %s in the data folder", server.DatabaseFile)
	}
}

// Each bad database setting stops Open with one line naming the setting
// and the problem, without the password.
func TestPostgresBadSetting(t *testing.T) {
	c := pgtest.Get(t)
	newer := pgtest.Database(t)
	e := newEnv(t, func(cfg *server.Config) { cfg.Database = newer })
	e.stop()
	if _, err := e.db().Exec(`UPDATE schema_version SET version = version + 1`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, url, want string }{
		{"unreachable", "postgres://postgres:" + pgtest.Password + "@127.0.0.1:1/postgres?connect_timeout=5", "connect"},
		{"wrong password", c.URL(pgtest.User, "not-the-password", "postgres"), "password authentication failed"},
		{"no such database", c.URL(pgtest.User, pgtest.Password, "nosuchdb"), `database "nosuchdb" does not exist`},
		{"newer schema", newer, "newer than this program"},
		{"not a URL", "postgres://postgres:x@127.0.0.1:notaport/db", "not a valid PostgreSQL URL"},
		{"not PostgreSQL", "mysql://u:p@h/db", "must be a postgres:// URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := server.Open(server.Config{DataDir: t.TempDir(), Database: tc.url, Logger: testLogger(t)})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, "database") || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line naming the database setting and %q", msg, tc.want)
			}
			if strings.Contains(msg, pgtest.Password) || strings.Contains(msg, "not-the-password") {
				t.Errorf("error %q shows the password", msg)
			}
		})
	}
}
