package hardening_test

// A bad [server] database setting (PostgreSQL, issue 21): the server does
// not start, its error is one line naming the setting and the problem
// (never the password), and nothing is made in its stead: no SQLite file
// in the data folder, no tables in a database it could not use.

import (
	"database/sql"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
	"github.com/kolejka-go/kolejka/tests/hardening"
)

func TestBadInputPostgres(t *testing.T) {
	c := pgtest.Get(t)
	// refused opens the server with database and checks the refusal.
	refused := func(t *testing.T, r *hardening.Row, database, want string) {
		t.Helper()
		data := t.TempDir()
		_, err := server.Open(server.Config{DataDir: data, Database: database, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		r.Observe("%v", err)
		if err == nil {
			t.Fatal("the server started")
		}
		msg := err.Error()
		if !strings.Contains(msg, "database") || !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
			t.Errorf("error %q: want one line naming the database setting and %q", msg, want)
		}
		if strings.Contains(msg, pgtest.Password) || strings.Contains(msg, "wrong-secret") {
			t.Errorf("error %q shows the password", msg)
		}
		if _, err := os.Stat(filepath.Join(data, server.DatabaseFile)); err == nil {
			t.Errorf("a SQLite file was made in the data folder instead")
		}
	}
	t.Run("BP01", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BP01", "database: a PostgreSQL URL whose server does not answer (a closed port)",
			"the server does not start: one line naming the database setting and the refused connection; no SQLite file instead")
		refused(t, r, "postgres://postgres:"+pgtest.Password+"@127.0.0.1:1/postgres?connect_timeout=5", "connection refused")
	})
	t.Run("BP02", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BP02", "database: the right server, a wrong password",
			"the server does not start: one line naming the database setting and the failed authentication, without the password")
		refused(t, r, c.URL(pgtest.User, "wrong-secret", "postgres"), "password authentication failed")
	})
	t.Run("BP03", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BP03", "database: a database that does not exist on the server",
			"the server does not start: one line naming the database setting and the missing database; none is created")
		refused(t, r, c.URL(pgtest.User, pgtest.Password, "nosuchdb"), `database "nosuchdb" does not exist`)
		db, err := sql.Open("pgx", c.URL(pgtest.User, pgtest.Password, "postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM pg_database WHERE datname = 'nosuchdb'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("databases named nosuchdb after: %d %v", n, err)
		}
	})
	t.Run("BP04", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BP04", "database: a PostgreSQL database whose schema is newer than the server (a later release used it)",
			"the server does not start: one line naming the database setting and both versions; the schema is untouched")
		u := pgtest.Database(t)
		s, err := store.Open(u, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		db, err := store.OpenSQL(u)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		newer := store.SchemaVersion() + 1
		if _, err := db.Exec(`UPDATE schema_version SET version = ?`, newer); err != nil {
			t.Fatal(err)
		}
		refused(t, r, u, "newer than this program")
		var v int
		if err := db.QueryRow(`SELECT version FROM schema_version`).Scan(&v); err != nil || v != newer {
			t.Errorf("schema version after: %d %v, want %d", v, err, newer)
		}
	})
	t.Run("BP05", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BP05", "database: a postgres:// URL that does not parse (port \"notaport\"), with a password in it",
			"the server does not start: one line naming the database setting as not a valid URL, without the password")
		refused(t, r, "postgres://postgres:wrong-secret@127.0.0.1:notaport/db", "not a valid PostgreSQL URL")
	})
	t.Run("BP06", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BP06", "database: a URL of another database (mysql://…)",
			"the server does not start: one line saying database must be a postgres:// URL; no SQLite file instead")
		refused(t, r, "mysql://u:wrong-secret@127.0.0.1/db", "must be a postgres:// URL")
	})
}
