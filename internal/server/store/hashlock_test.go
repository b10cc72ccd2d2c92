package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A blob's lock held by one process (a replica) keeps another waiting
// until it is released; another blob's lock is free meanwhile.
func TestBlobLockAcrossProcesses(t *testing.T) {
	if testBackend != "postgres" {
		t.Skip("one server process on SQLite: the server's in-memory lock is the lock")
	}
	path := filepath.Join(t.TempDir(), "db.sqlite3")
	a, b := open(t, path), open(t, path)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	hash, other := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	unlock, err := a.LockBlob(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	u, err := b.LockBlob(ctx, other)
	if err != nil {
		t.Fatalf("another blob's lock: %v", err)
	}
	u()
	got := make(chan func(), 1)
	go func() {
		u, err := b.LockBlob(ctx, hash)
		if err != nil {
			t.Error(err)
			u = func() {}
		}
		got <- u
	}()
	// b must wait on the lock: PostgreSQL shows it waiting.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := a.r.QueryRow(`SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		select {
		case <-got:
			t.Fatal("the lock was taken while another process held it")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("nobody waits on the blob's lock after 10 s")
		}
		time.Sleep(10 * time.Millisecond) // the poll's period
	}
	unlock()
	select {
	case u := <-got:
		u()
	case <-time.After(10 * time.Second):
		t.Fatal("the lock was not taken within 10 s of its release")
	}
	if _, err := a.LockBlob(ctx, "zz"); err == nil {
		t.Error("a lock on a non-hash was taken")
	}
}
