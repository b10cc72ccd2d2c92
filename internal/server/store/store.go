// Package store keeps the server's metadata in one SQLite file, or in a
// PostgreSQL database ([server] database = postgres://…): users,
// sessions and tokens, blobs and their references, tasks with their
// assignments and leases, results, and the outbox of callbacks. Every SQL
// statement of the server lives in this package, written once for both
// databases ("?" placeholders, rewritten for PostgreSQL; see postgres.go).
//
// Durability: the database runs in WAL mode. With synchronous=NORMAL (the
// default) a committed transaction survives a crash of the server process
// (kill -9, OOM) because the WAL is in the kernel's page cache; a power loss
// or kernel crash may lose the last transactions before a checkpoint.
// synchronous=FULL fsyncs the WAL at every commit and survives power loss
// too, at about a tenth of the commit rate (docs/platform-notes.md).
//
// Concurrency: writes go through one connection with BEGIN IMMEDIATE
// (_txlock=immediate), so transactions that read then write never fail
// with "database is locked" and are serialised in Go's pool queue rather
// than in SQLite's busy-sleep loop. Reads use a separate pool and see the
// last committed state (WAL readers never block the writer). Other
// processes (the admin commands) wait for the lock up to the busy timeout.
//
// On PostgreSQL, several processes (the admin commands, later several
// servers) may write the same database. Every write transaction first
// takes one transaction-scoped advisory lock (pg_advisory_xact_lock), so
// writes run one at a time across all of them, in the same serial order
// SQLite gives: the read-then-write logic of a dequeue or a result stays
// correct without row locks or retries, at the price of write throughput
// bounded by one writer (docs/scaling.md). Under READ COMMITTED each
// statement after the lock sees every write committed before it.
// Readers use a pool of read-only sessions. Durability is PostgreSQL's
// (synchronous_commit); the synchronous option is SQLite's only.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/kolejka-go/kolejka/internal/server/sched"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrInUse is a reference or blob a task or result still uses.
	ErrInUse = errors.New("in use")
	// ErrNotAssigned is a result from a node that never held the task.
	ErrNotAssigned = errors.New("task is not assigned to the poster")
	// ErrResolved is a second, different result for a task.
	ErrResolved = errors.New("task already has a result")
	// ErrExpired is a bearer token past its expiry.
	ErrExpired = errors.New("expired")
)

// Synchronous modes accepted by Open.
const (
	SyncNormal = "NORMAL"
	SyncFull   = "FULL"
)

// Store is an open database. It is safe for concurrent use.
type Store struct {
	w    *sql.DB // the one writer connection
	r    *sql.DB // readers
	path string  // the SQLite file, or the PostgreSQL URL without its password

	// postgres: the database is PostgreSQL (postgres.go), not SQLite.
	postgres bool
	// locks holds the connections of blob locks (hashlock.go; PostgreSQL
	// only).
	locks *sql.DB

	// cands caches queued tasks as the scheduler sees them, by task id:
	// reading a task's limits costs ~15 µs (units, big numbers), a map
	// lookup nothing, and a task's requires, exclusive and limits never
	// change after submission. Bounded by maxCands; see queue.go.
	candMu sync.Mutex
	cands  map[int64]sched.Candidate
}

// Options tune Open.
type Options struct {
	// Synchronous is SyncNormal (default) or SyncFull; see the package doc.
	Synchronous string
	// BusyTimeout is how long a statement waits for another process's lock
	// (default 10 s).
	BusyTimeout time.Duration
	// Readers is the size of the read pool (default 8).
	Readers int
}

// Open opens the database and brings its schema up to date: path is a
// SQLite file (created if needed) or a postgres:// URL (IsPostgres) of an
// existing PostgreSQL database.
func Open(path string, o Options) (*Store, error) {
	sync := strings.ToUpper(o.Synchronous)
	if sync == "" {
		sync = SyncNormal
	}
	if sync != SyncNormal && sync != SyncFull {
		return nil, fmt.Errorf("unable to open database: synchronous must be NORMAL or FULL, not %q", o.Synchronous)
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 10 * time.Second
	}
	if o.Readers <= 0 {
		o.Readers = 8
	}
	if IsPostgres(path) {
		return openPostgres(path, o)
	}
	// The writer gets a 64 MiB page cache (SQLite's default is 2 MiB): a
	// task insert touches pages all over the key index, and with 100k
	// tasks the default cache misses on most of them.
	w, err := sql.Open("sqlite3", dsn(path, sync, o.BusyTimeout, "immediate")+"&_cache_size=-65536")
	if err != nil {
		return nil, fmt.Errorf("unable to open database: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// On failure below, w's Close can only add noise to the error: every
	// step that wrote (a migration) committed or rolled back whole.
	if err := w.Ping(); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("unable to open database %s: %w", path, err)
	}
	s := &Store{w: w, path: path, cands: map[int64]sched.Candidate{}}
	if err := s.migrate(context.Background()); err != nil {
		_ = w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite3", dsn(path, sync, o.BusyTimeout, "deferred")+"&_query_only=1&_cache_size=-16384")
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("unable to open database: %w", err)
	}
	r.SetMaxOpenConns(o.Readers)
	r.SetMaxIdleConns(o.Readers)
	s.r = r
	return s, nil
}

// uriPath escapes a file path for a file: URI: a "?" or "#" in it would
// otherwise start the parameters (docs/platform-notes.md).
func uriPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// dsn builds a go-sqlite3 URI. The path is escaped: a "?" or "#" in it would
// otherwise start the parameters (docs/platform-notes.md).
func dsn(path, sync string, busy time.Duration, txlock string) string {
	p := uriPath(path)
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", sync)
	q.Set("_busy_timeout", fmt.Sprint(busy.Milliseconds()))
	q.Set("_foreign_keys", "1")
	q.Set("_txlock", txlock)
	// Keep prepared statements per connection: preparing costs about as
	// much as running most of the server's queries.
	q.Set("_stmt_cache_size", "128")
	return "file:" + p + "?" + q.Encode()
}

// Close closes the database.
func (s *Store) Close() error {
	var errs []error
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.locks != nil {
		errs = append(errs, s.locks.Close())
	}
	errs = append(errs, s.w.Close())
	return errors.Join(errs...)
}

// Path is the database file, or the PostgreSQL URL without its password.
func (s *Store) Path() string { return s.path }

// write runs fn in one immediate transaction, committed if fn returns nil.
// On PostgreSQL the transaction first takes the advisory write lock, so
// that it runs alone among the writes of every process, as on SQLite.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("unable to begin transaction: %w", err)
	}
	if s.postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(writeLock)); err != nil {
			tx.Rollback()
			return fmt.Errorf("unable to take the write lock: %w", err)
		}
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("unable to commit: %w", err)
	}
	return nil
}

// snapshot is a read transaction whose statements all see one state: a
// SQLite read transaction does; PostgreSQL's default (READ COMMITTED)
// takes a new snapshot per statement, REPEATABLE READ one for all.
func (s *Store) snapshot() *sql.TxOptions {
	if s.postgres {
		return &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
	}
	return &sql.TxOptions{ReadOnly: true}
}

// us is the database's time: microseconds since the epoch, UTC.
func us(t time.Time) int64 { return t.UnixMicro() }

func fromUS(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullUS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromUS(v.Int64)
}

// isUnique is a unique violation, on either database.
func isUnique(err error) bool {
	var e sqlite3.Error
	return errors.As(err, &e) && e.ExtendedCode == sqlite3.ErrConstraintUnique || isUniquePG(err)
}
