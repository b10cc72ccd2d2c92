package store

// This file owns the backends the package's tests run on. TestMain runs
// the whole suite on SQLite, then again on PostgreSQL (a real cluster,
// internal/testenv/pgtest): one conformance run for both. Set
// KOLEJKA_TEST_DATABASE=sqlite or =postgres to run one of them.

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

// testBackend is the database of the current run: "sqlite" or "postgres".
var testBackend = "sqlite"

func TestMain(m *testing.M) {
	backends := []string{"sqlite", "postgres"}
	if b := os.Getenv("KOLEJKA_TEST_DATABASE"); b != "" {
		backends = []string{b}
	}
	code := 0
	for _, b := range backends {
		if b != "sqlite" && b != "postgres" {
			fmt.Fprintf(os.Stderr, "KOLEJKA_TEST_DATABASE=%s: want sqlite or postgres\n", b)
			os.Exit(2)
		}
		testBackend = b
		fmt.Printf("--- store tests on %s\n", b)
		if c := m.Run(); c != 0 {
			code = c
		}
	}
	pgtest.Stop()
	os.Exit(code)
}

var (
	pgMu  sync.Mutex
	pgDBs = map[string]string{} // a test's SQLite path → its PostgreSQL database
)

// dbAddr is what Open gets for a test's database file path: the path on
// SQLite; on PostgreSQL a fresh database, the same one for the same path
// (a test that reopens its database).
func dbAddr(t testing.TB, path string) string {
	t.Helper()
	if testBackend == "sqlite" {
		return path
	}
	pgMu.Lock()
	defer pgMu.Unlock()
	if u, ok := pgDBs[path]; ok {
		return u
	}
	u := pgtest.Database(t)
	pgDBs[path] = u
	return u
}

// sqliteOnly skips a test of SQLite's own behaviour (its query plans, a
// file path) on the other backends.
func sqliteOnly(t testing.TB, why string) {
	t.Helper()
	if testBackend != "sqlite" {
		t.Skipf("SQLite only: %s", why)
	}
}

// undoSQL is a statement of a test's undoing of migration steps as the
// backend runs it: on PostgreSQL a trigger belongs to its table (all the
// undone ones are on tasks), and the function behind step 9's triggers
// goes with their table.
func undoSQL(q string) string {
	if testBackend == "sqlite" {
		return q
	}
	if strings.HasPrefix(q, "DROP TRIGGER ") {
		return q + " ON tasks"
	}
	if q == "DROP TABLE queue_counts" {
		return q + "; DROP FUNCTION tasks_queue_count()"
	}
	return q
}
