package store

// Group commit of writes (store.go: write, writeGroup), on both backends:
// writes that queue behind a running one share one transaction, each
// caller's error rolls back its own work only, and a failed COMMIT fails
// every caller of the batch.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// groupStore opens a store with group commit: SQLite with FULL turns it
// on; the test cluster of PostgreSQL runs with fsync off, where Open
// leaves it off, so it is turned on here.
func groupStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(dbAddr(t, filepath.Join(t.TempDir(), "db.sqlite3")), Options{Synchronous: SyncFull})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if s.postgres {
		var fsync string
		if err := s.r.QueryRow(`SHOW fsync`).Scan(&fsync); err != nil {
			t.Fatal(err)
		}
		if s.group != (fsync == "on") {
			t.Fatalf("group commit %t with fsync %s", s.group, fsync)
		}
		s.group = true
	} else if !s.group {
		t.Fatal("group commit is off with synchronous=FULL")
	}
	return s
}

// holdWriter runs a write that waits for release, and returns once it is
// running: the writes that come next queue for one batch.
func holdWriter(t *testing.T, s *Store) (release func(), done <-chan error) {
	t.Helper()
	entered, hold := make(chan struct{}), make(chan struct{})
	out := make(chan error, 1)
	go func() {
		out <- s.write(context.Background(), func(tx *sql.Tx) error {
			close(entered)
			<-hold
			return nil
		})
	}()
	<-entered
	return func() { close(hold) }, out
}

// waitQueued waits until n writes wait for the next batch.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.wmu.Lock()
		got := len(s.wqueue)
		s.wmu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued after 10 s, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// insertUser is a write fn adding user name; then it fails with fail if
// not nil.
func insertUser(name string, fail error) func(tx *sql.Tx) error {
	return func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO users (name, password, roles, time_create) VALUES (?, 'h', 0, 0)`, name); err != nil {
			return err
		}
		return fail
	}
}

func userExists(t *testing.T, s *Store, name string) bool {
	t.Helper()
	var n int
	if err := s.r.QueryRow(`SELECT COUNT(*) FROM users WHERE name = ?`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// Six writes queued behind a running one commit in one transaction; the
// one that returns an error, the one that breaks a unique key (which on
// PostgreSQL aborts the transaction, save for the savepoint) and the one
// whose caller went away before its turn leave nothing, the others all
// their rows.
func TestWritesQueuedTogetherCommitInOneTransaction(t *testing.T) {
	s := groupStore(t)
	ctx := context.Background()
	if err := s.write(ctx, insertUser("taken", nil)); err != nil {
		t.Fatal(err)
	}
	release, held := holdWriter(t, s)
	refused := errors.New("refused")
	gone, cancel := context.WithCancel(ctx)
	type call struct {
		name string
		ctx  context.Context
		fn   func(tx *sql.Tx) error
		want error // nil, or what errors.Is must find
	}
	calls := []call{
		{"a", ctx, insertUser("a", nil), nil},
		{"b", ctx, insertUser("b", refused), refused},
		{"c", ctx, insertUser("c", nil), nil},
		{"taken", ctx, func(tx *sql.Tx) error {
			if err := insertUser("d", nil)(tx); err != nil {
				return err
			}
			return insertUser("taken", nil)(tx) // unique violation
		}, nil},
		{"e", gone, insertUser("e", nil), context.Canceled},
		{"f", ctx, insertUser("f", nil), nil},
	}
	errs := make([]chan error, len(calls))
	for i, c := range calls {
		errs[i] = make(chan error, 1)
		go func() { errs[i] <- s.write(c.ctx, c.fn) }()
		waitQueued(t, s, i+1) // in this order
	}
	cancel()
	release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for i, c := range calls {
		err := <-errs[i]
		switch {
		case c.name == "taken":
			if !isUnique(err) {
				t.Errorf("the duplicate user: %v, want a unique violation", err)
			}
		case c.want == nil && err != nil:
			t.Errorf("write %s: %v", c.name, err)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("write %s: %v, want %v", c.name, err, c.want)
		}
	}
	for name, want := range map[string]bool{"a": true, "b": false, "c": true, "d": false, "e": false, "f": true} {
		if got := userExists(t, s, name); got != want {
			t.Errorf("user %s exists: %t, want %t", name, got, want)
		}
	}
	if s.batches != 1 {
		t.Errorf("%d batched transactions, want 1", s.batches)
	}
}

// A COMMIT that fails (here a deferred foreign key one write left broken)
// fails every write of the batch, and none of their work stays; the
// writes after it commit.
func TestFailedGroupCommitFailsEveryWrite(t *testing.T) {
	s := groupStore(t)
	ctx := context.Background()
	release, held := holdWriter(t, s)
	breaker := func(tx *sql.Tx) error {
		for _, q := range []string{
			`CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY)`,
			`CREATE TEMP TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)`,
			`INSERT INTO child (p) VALUES (1)`, // checked at COMMIT
		} {
			if _, err := tx.Exec(q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	}
	fns := []func(tx *sql.Tx) error{insertUser("a", nil), breaker, insertUser("b", nil)}
	errs := make([]chan error, len(fns))
	for i, fn := range fns {
		errs[i] = make(chan error, 1)
		go func() { errs[i] <- s.write(ctx, fn) }()
		waitQueued(t, s, i+1)
	}
	release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for i := range fns {
		if err := <-errs[i]; err == nil {
			t.Errorf("write %d of the failed batch succeeded", i)
		}
	}
	for _, name := range []string{"a", "b"} {
		if userExists(t, s, name) {
			t.Errorf("user %s of the failed batch exists", name)
		}
	}
	if err := s.write(ctx, insertUser("after", nil)); err != nil || !userExists(t, s, "after") {
		t.Errorf("the write after the failed batch: %v", err)
	}
}
