package flock

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Two opens of one file are two open file descriptions: their flock locks
// conflict as two processes' would.
func TestLocksConflictAcrossDescriptions(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	a, err := Own(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Own(p); !errors.Is(err, ErrLocked) {
		t.Fatalf("second owner: %v, want ErrLocked", err)
	}
	b, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := TryShared(b); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared beside exclusive: %v, want ErrLocked", err)
	}
	a.Close() // closing releases, as a killed owner's would
	if err := TryShared(b); err != nil {
		t.Fatalf("shared after the owner closed: %v", err)
	}
	c, _ := os.Open(p)
	defer c.Close()
	if err := TryShared(c); err != nil {
		t.Fatalf("two shared locks: %v", err)
	}
	if err := TryExclusive(c); !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive beside shared: %v, want ErrLocked", err)
	}
	if err := Unlock(b); err != nil {
		t.Fatal(err)
	}
	if err := Unlock(c); err != nil {
		t.Fatal(err)
	}
	if err := Exclusive(c); err != nil {
		t.Fatalf("exclusive once free: %v", err)
	}
}
