package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

// [server] database in kolejka.conf reaches the admin commands: a user
// added and a token made land in PostgreSQL (no SQLite file appears), and
// config shows the setting without its password; a database that is not
// there fails the command, with no SQLite file made instead.
func TestDatabaseSetting(t *testing.T) {
	u := pgtest.Database(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "kolejka.conf")
	os.WriteFile(conf, []byte("[server]\ndatabase = "+u+"\n"), 0o644)
	t.Setenv("KOLEJKA_SERVER_CONFIG_FILE", conf)
	data := filepath.Join(dir, "data")
	for _, args := range [][]string{{"adduser", "--clients", "alice", "pw"}, {"token", "alice"}, {"token", "list", "alice"}} {
		if code, out, errOut := run(t, nil, append([]string{"--data", data}, args...)...); code != 0 {
			t.Fatalf("%v: exit %d; stdout %q stderr %q", args, code, out, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(data, server.DatabaseFile)); err == nil {
		t.Error("the commands made a SQLite file")
	}
	code, out, _ := run(t, nil, "--data", data, "config")
	if code != 0 || !strings.Contains(out, "database = postgres://postgres:xxxxx@") || strings.Contains(out, pgtest.Password) {
		t.Errorf("config: exit %d\n%s", code, out)
	}
	// The user is in PostgreSQL: a second command sees it.
	// (cliexit prints the errors to the process's stderr; their text is
	// internal/server's TestPostgresBadSetting.)
	if code, _, _ := run(t, nil, "--data", data, "adduser", "--clients", "alice", "pw"); code == 0 {
		t.Error("adding alice again succeeded")
	}
	bad := strings.Replace(u, "/t", "/missing_t", 1)
	if code, _, _ := run(t, nil, "--data", data, "--database", bad, "adduser", "--clients", "bob", "pw"); code == 0 {
		t.Error("a command on a missing database succeeded")
	}
	if _, err := os.Stat(filepath.Join(data, server.DatabaseFile)); err == nil {
		t.Error("a failed command made a SQLite file")
	}
}

// migrate copies a stopped installation into PostgreSQL and says what it
// copied; into a database that holds one already it refuses (exit 2).
func TestMigrateCommand(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if code, _, errOut := run(t, nil, "--data", data, "adduser", "--clients", "alice", "pw"); code != 0 {
		t.Fatalf("adduser: exit %d: %s", code, errOut)
	}
	u := pgtest.Database(t)
	code, out, errOut := run(t, nil, "--data", data, "migrate", "--to", u)
	if code != 0 || !strings.Contains(out, "users            1 rows") || strings.Contains(out, pgtest.Password) {
		t.Fatalf("migrate: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if code, _, _ := run(t, nil, "--data", data, "migrate", "--to", u); code != 2 {
		t.Errorf("a second migrate into the same database: exit %d, want 2", code)
	}
	if code, _, _ := run(t, nil, "--data", data, "migrate"); code != 2 {
		t.Errorf("migrate without --to: exit %d, want 2", code)
	}
	// The copy is what a server on PostgreSQL sees.
	conf := filepath.Join(t.TempDir(), "kolejka.conf")
	os.WriteFile(conf, []byte("[server]\ndatabase = "+u+"\n"), 0o644)
	t.Setenv("KOLEJKA_SERVER_CONFIG_FILE", conf)
	if code, _, _ := run(t, nil, "--data", t.TempDir(), "adduser", "--clients", "alice", "pw"); code == 0 {
		t.Error("alice could be added again to the copy: she was not copied")
	}
}
