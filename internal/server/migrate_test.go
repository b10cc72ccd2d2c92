package server_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
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

// treeSums is every file under dir with its SHA-256, to show a folder did
// not change.
func treeSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[p] = sha(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// An installation moved to PostgreSQL and an S3 bucket by Migrate serves
// its tasks, results and files from there, from a new data folder; the old
// folder is not changed; a running server's folder is refused; a damaged
// blob stops the move with the blob named, the database left empty.
func TestMigrateToPostgresAndS3(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.Database = "" })
	e.standardUsers()
	alice, node := e.tok("alice"), e.tok("node")
	key := alice.submit(simpleTask(), map[string][]byte{"in": []byte("the task's input")})
	taskKeys(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1}))
	out := node.upload([]byte("the result's output"))
	mustOK(t, node.postJSON("/task/result/", map[string]any{"id": key, "result": 0,
		"files": map[string]any{"out": map[string]any{"reference": out}}}))
	bucket := s3test.Start(t).Bucket(t)
	m := server.Migration{From: server.Config{DataDir: e.dir}, Database: pgtest.Database(t),
		Blobs: s3test.URL(bucket), BlobsAccessKey: bucket.AccessKey, BlobsSecretKey: bucket.SecretKey}

	if _, err := server.Migrate(context.Background(), m); !errors.Is(err, server.ErrLocked) {
		t.Errorf("migrating a running server's folder: %v, want ErrLocked", err)
	}
	e.stop()
	before := treeSums(t, e.dir)

	// A damaged blob (another blob's bytes under its name) stops it.
	damaged := t.TempDir()
	if err := os.CopyFS(damaged, os.DirFS(e.dir)); err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.Walk(filepath.Join(damaged, server.BlobsDir), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && len(fi.Name()) == 64 {
			files = append(files, p)
		}
		return nil
	})
	if len(files) < 2 {
		t.Fatalf("blob files %v", files)
	}
	if err := os.WriteFile(files[0], []byte("not what its name says"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := m
	bad.From.DataDir = damaged
	bad.Database = pgtest.Database(t)
	if _, err := server.Migrate(context.Background(), bad); err == nil || !strings.Contains(err.Error(), filepath.Base(files[0])) || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("a damaged blob: %v, want the blob named as damaged", err)
	}
	if db, err := store.OpenSQL(bad.Database); err == nil {
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'tasks'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("after a damaged blob the target has %d tasks tables (%v), want none", n, err)
		}
		db.Close()
	}

	rep, err := server.Migrate(context.Background(), m)
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	t.Logf("migrated: %+v", rep)
	if rep.BlobsCopied != 2 || rep.Rows["tasks"] != 1 || rep.Rows["results"] != 1 {
		t.Errorf("report %+v: want 2 blobs copied (the input, the output), 1 task, 1 result", rep)
	}
	if after := treeSums(t, e.dir); !maps.Equal(before, after) {
		t.Errorf("the installation's folder changed:\nbefore %v\nafter  %v", before, after)
	}
	// Again: the blobs are there, the database is not empty.
	if rep, err := server.Migrate(context.Background(), m); !errors.Is(err, store.ErrNotEmpty) || rep.BlobsThere != 2 {
		t.Errorf("a second migration: %+v, %v; want the 2 blobs found there and ErrNotEmpty", rep, err)
	}

	// A new server on the targets only.
	moved := newEnv(t, func(c *server.Config) {
		c.Database, c.Blobs, c.BlobsAccessKey, c.BlobsSecretKey = m.Database, m.Blobs, m.BlobsAccessKey, m.BlobsSecretKey
	})
	moved.tokens = e.tokens
	r := mustOK(t, moved.tok("alice").do("GET", "/task/result/"+key+"/", nil))
	if !strings.Contains(string(r.body), out) {
		t.Fatalf("the moved result %s lacks %s", r.body, out)
	}
	got := moved.tok("alice").do("GET", "/blob/reference/"+out+"/", nil)
	if got.code != 200 || !strings.Contains(string(got.body), "the result's output") {
		t.Errorf("the result's file from the bucket: %v", got)
	}
}
