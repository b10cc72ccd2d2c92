package pgrelay_test

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/kolejka-go/kolejka/internal/server/notify"
	"github.com/kolejka-go/kolejka/internal/server/notify/pgrelay"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// listen starts r's Listen and returns what it delivers.
func listen(t *testing.T, r *pgrelay.Relay) <-chan string {
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Listen(ctx, func(m string) { got <- m })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return got
}

// next is the next message delivered, or a failure after 10 s.
func next(t *testing.T, got <-chan string) string {
	t.Helper()
	select {
	case m := <-got:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("nothing delivered within 10 s")
		return ""
	}
}

func newRelay(t *testing.T, url string) *pgrelay.Relay {
	r, err := pgrelay.New(context.Background(), url, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// A message published by one replica reaches another, once, after the
// listener's first Gap; repeats queued together go as one.
func TestPublishReachesAnotherReplica(t *testing.T) {
	url := pgtest.Database(t)
	a, b := newRelay(t, url), newRelay(t, url)
	got := listen(t, b)
	if m := next(t, got); m != notify.Gap {
		t.Fatalf("first delivery %q, want the gap of a new connection", m)
	}
	a.Publish("r:task1")
	if m := next(t, got); m != "r:task1" {
		t.Fatalf("delivered %q, want r:task1", m)
	}
	a.Publish("q")
	if m := next(t, got); m != "q" {
		t.Fatalf("delivered %q, want q", m)
	}
}

// Replicas of another installation (another database on the same
// PostgreSQL) hear nothing of this one.
func TestOtherDatabaseHearsNothing(t *testing.T) {
	a := newRelay(t, pgtest.Database(t))
	other := newRelay(t, pgtest.Database(t))
	got := listen(t, other)
	if m := next(t, got); m != notify.Gap {
		t.Fatalf("first delivery %q, want the gap", m)
	}
	a.Publish("q")
	other.Publish("mine")
	if m := next(t, got); m != "mine" {
		t.Fatalf("delivered %q, want only this database's message", m)
	}
}

// A listener whose connection is cut reconnects and delivers a Gap (what
// was sent meanwhile is lost), then hears new messages again.
func TestLostConnectionDeliversGap(t *testing.T) {
	url := pgtest.Database(t)
	a, b := newRelay(t, url), newRelay(t, url)
	got := listen(t, b)
	if m := next(t, got); m != notify.Gap {
		t.Fatalf("first delivery %q, want the gap", m)
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var killed int
	if err := db.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d listening sessions, want 1", killed)
	}
	if m := next(t, got); m != notify.Gap {
		t.Fatalf("after the cut: %q, want a gap", m)
	}
	a.Publish("r:after")
	if m := next(t, got); m != "r:after" {
		t.Fatalf("delivered %q, want r:after", m)
	}
}

// A publisher whose connection is cut sends the next messages on a new one.
func TestPublisherReconnects(t *testing.T) {
	url := pgtest.Database(t)
	a, b := newRelay(t, url), newRelay(t, url)
	got := listen(t, b)
	next(t, got)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Every session of the database but the listener's and this one.
	if _, err := db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query NOT LIKE 'LISTEN%' AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	// The first publish after the cut may be the one that finds it broken
	// and is retried on a new connection: it must still arrive.
	a.Publish("r:x")
	if m := next(t, got); m != "r:x" {
		t.Fatalf("delivered %q, want r:x", m)
	}
}

// A wrong address stops New with an error, not a relay that never works.
func TestNewRefusesAWrongAddress(t *testing.T) {
	url := pgtest.Database(t)
	bad := url[:len(url)-1] + "x_missing"
	if _, err := pgrelay.New(context.Background(), bad, quiet); err == nil {
		t.Fatal("a database that does not exist was accepted")
	}
}

// Close sends what is still queued: an admin command publishes and exits.
func TestCloseSendsWhatIsQueued(t *testing.T) {
	url := pgtest.Database(t)
	b := newRelay(t, url)
	got := listen(t, b)
	next(t, got)
	a, err := pgrelay.New(context.Background(), url, quiet)
	if err != nil {
		t.Fatal(err)
	}
	a.Publish("a:")
	a.Close()
	if m := next(t, got); m != "a:" {
		t.Fatalf("delivered %q, want a:", m)
	}
	a.Publish("after") // a closed relay drops it, without blocking
}
