package server_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

// An installation on SQLite copied into PostgreSQL serves the same users,
// tokens, tasks, results and files from there; the SQLite file is not
// changed; a second copy into the same database is refused.
func TestCopySQLiteToPostgres(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.Database = "" })
	e.standardUsers()
	alice, node := e.tok("alice"), e.tok("node")
	done := alice.submit(simpleTask(), map[string][]byte{"in": []byte("input of the done task")})
	waiting := alice.submit(simpleTask(), map[string][]byte{"in": []byte("input of the waiting task")})
	if got := taskKeys(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1})); !slices.Equal(got, []string{done}) {
		t.Fatalf("dequeued %v", got)
	}
	out := node.upload([]byte("the result's output"))
	mustOK(t, node.postJSON("/task/result/", map[string]any{"id": done, "result": 0,
		"files": map[string]any{"out": map[string]any{"reference": out}}}))
	e.stop()
	src := filepath.Join(e.dir, server.DatabaseFile)
	before, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}

	url := pgtest.Database(t)
	dst, err := store.Open(url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := dst.CopySQLite(context.Background(), src)
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	t.Logf("copied %v", rep.Rows)
	for table, want := range map[string]int64{"users": 6, "tasks": 2, "results": 1} {
		if rep.Rows[table] != want {
			t.Errorf("%d rows of %s copied, want %d", rep.Rows[table], table, want)
		}
	}
	if _, err := dst.CopySQLite(context.Background(), src); !errors.Is(err, store.ErrNotEmpty) {
		t.Errorf("a second copy into the same database: %v, want ErrNotEmpty", err)
	}
	dst.Close()
	after, _ := os.ReadFile(src)
	if !slices.Equal(before, after) {
		t.Error("the SQLite file changed")
	}

	// The same data folder (its blobs) with the metadata in PostgreSQL.
	e.cfg.Database = url
	e.start()
	alice, node = e.tok("alice"), e.tok("node")
	r := mustOK(t, alice.do("GET", "/task/result/"+done+"/", nil))
	if !strings.Contains(string(r.body), out) {
		t.Errorf("the copied result %s lacks its file %s", r.body, out)
	}
	if got := taskKeys(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1})); !slices.Equal(got, []string{waiting}) {
		t.Errorf("dequeued %v from the copy, want the waiting task %s", got, waiting)
	}
	// New rows get new ids after the copied ones.
	alice.submit(simpleTask(), nil)
	stats := mustOK(t, e.tok("max").do("GET", "/queue/stats/", nil))
	t.Logf("stats after the copy: %s", stats.body)
}
