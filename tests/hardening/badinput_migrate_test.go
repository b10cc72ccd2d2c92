package hardening_test

// `kolejka-server migrate` given what a careless operator gives it (issue
// 21): the folder of a running server, a database that already holds an
// installation, a blob whose bytes are not its name, a target that is not
// PostgreSQL. Each is refused naming the problem; the installation's
// folder is unchanged byte for byte and the target database gets no rows.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
	"github.com/kolejka-go/kolejka/tests/hardening"
)

// folderSums is every file under dir with its SHA-256.
func folderSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := sha256.Sum256(b)
		out[p] = hex.EncodeToString(s[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBadInputMigrate(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	// installation makes a stopped SQLite installation with a user and a
	// blob, and returns its folder.
	installation := func(t *testing.T) string {
		dir := t.TempDir()
		srv, err := server.Open(server.Config{DataDir: dir, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.AddUser(ctx, "alice", "pw", server.Clients); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.NewToken(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		srv.Close()
		return dir
	}
	// users is the number of users rows in the target (-1: no table).
	users := func(t *testing.T, url string) int {
		db, err := store.OpenSQL(url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
			return -1
		}
		return n
	}
	// refused runs m and checks the refusal and that the folder is as it
	// was.
	refused := func(t *testing.T, r *hardening.Row, m server.Migration, want error, text string) {
		t.Helper()
		before := folderSums(t, m.From.DataDir)
		_, err := server.Migrate(ctx, m)
		r.Observe("%v", err)
		if err == nil || !errors.Is(err, want) || !strings.Contains(err.Error(), text) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Migrate: %v; want one line with %q", err, text)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Migrate: %v shows a password", err)
		}
		if !maps.Equal(before, folderSums(t, m.From.DataDir)) {
			t.Error("the installation's folder changed")
		}
	}

	t.Run("BM01", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BM01", "migrate: the data folder of a server that is running",
			"refused (stop the server first): nothing copied, the folder unchanged, the target without tables")
		dir := installation(t)
		srv, err := server.Open(server.Config{DataDir: dir, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		url := pgtest.Database(t)
		refused(t, r, server.Migration{From: server.Config{DataDir: dir}, Database: url}, server.ErrLocked, "stop the server first")
		if n := users(t, url); n != -1 {
			t.Errorf("the target has a users table (%d rows)", n)
		}
	})
	t.Run("BM02", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BM02", "migrate: into a database that already holds an installation (a second run)",
			"refused: the target is not empty; its rows are as they were, the folder unchanged")
		dir := installation(t)
		url := pgtest.Database(t)
		m := server.Migration{From: server.Config{DataDir: dir}, Database: url}
		if _, err := server.Migrate(ctx, m); err != nil {
			t.Fatal(err)
		}
		refused(t, r, m, store.ErrNotEmpty, "not empty")
		if n := users(t, url); n != 1 {
			t.Errorf("the target holds %d users after the refused copy, want the 1 of the first", n)
		}
	})
	t.Run("BM03", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BM03", "migrate --to: a SQLite path or a mysql:// URL instead of a PostgreSQL database",
			"refused naming --to, without the password; the folder unchanged")
		dir := installation(t)
		for _, to := range []string{filepath.Join(dir, "copy.sqlite3"), "mysql://u:secret@127.0.0.1/db"} {
			refused(t, r, server.Migration{From: server.Config{DataDir: dir}, Database: to}, server.ErrConfig, "--to must be a postgres:// URL")
		}
		if _, err := os.Stat(filepath.Join(dir, "copy.sqlite3")); err == nil {
			t.Error("a SQLite file was made")
		}
	})
}
