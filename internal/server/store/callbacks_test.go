package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Replicas running the delivery loop at once each claim a due callback
// before posting it: one claim wins, and the callback is not due again
// until the claim lapses (its claimant may have died).
func TestCallbackClaimedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.sqlite3")
	s := open(t, path)
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	due := oneDueCallback(t, s, now)
	// Two stores on one database stand for two replicas.
	other := open(t, path)
	defer other.Close()
	until := now.Add(time.Minute)
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if i%2 == 1 {
				st = other
			}
			ok, err := st.ClaimCallback(ctx, due[0], now, until)
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := won.Load(); n != 1 {
		t.Fatalf("%d claims won, want 1", n)
	}
	if again, _ := s.DueCallbacks(ctx, now.Add(time.Second), 10); len(again) != 0 {
		t.Errorf("a claimed callback is due again before its claim lapsed: %v", again)
	}
	if again, _ := s.DueCallbacks(ctx, until, 10); len(again) != 1 {
		t.Errorf("after the claim lapsed: due %v, want the callback again", again)
	}
}

// A claim given back (the attempt cut off by a shutdown) makes the
// callback due at once; a claim whose attempt was recorded since is not
// touched by a late release.
func TestCallbackClaimReleased(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite3"))
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	due := oneDueCallback(t, s, now)
	until := now.Add(time.Minute)
	if ok, err := s.ClaimCallback(ctx, due[0], now, until); !ok || err != nil {
		t.Fatalf("claim: %v %v", ok, err)
	}
	later := now.Add(time.Second)
	if err := s.ReleaseCallback(ctx, due[0], until, later); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.DueCallbacks(ctx, later, 10); len(again) != 1 {
		t.Fatalf("after the release: due %v, want the callback at once", again)
	}
	// Claimed again and its failure recorded: a stale release of the
	// first claim changes nothing.
	if ok, err := s.ClaimCallback(ctx, due[0], later, until); !ok || err != nil {
		t.Fatalf("second claim: %v %v", ok, err)
	}
	retry := now.Add(time.Hour)
	if err := s.CallbackFailed(ctx, due[0].ID, "answered 503", retry, false); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseCallback(ctx, due[0], until, later); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.DueCallbacks(ctx, retry.Add(-time.Second), 10); len(again) != 0 {
		t.Errorf("a stale release made a recorded failure due early: %v", again)
	}
}

// oneDueCallback queues a callback due at now and returns the due list,
// which holds it alone.
func oneDueCallback(t *testing.T, s *Store, now time.Time) []Callback {
	t.Helper()
	ctx := context.Background()
	if err := s.write(ctx, func(tx *sql.Tx) error {
		return queueCallback(ctx, tx, "task1", "http://127.0.0.1:1/", []byte(`{}`), []byte(`{}`), now)
	}); err != nil {
		t.Fatal(err)
	}
	due, err := s.DueCallbacks(ctx, now, 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("due %v, %v; want the one callback", due, err)
	}
	return due
}
