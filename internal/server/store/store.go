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
// With synchronous=FULL, and on PostgreSQL where a commit waits for a WAL
// flush (fsync and synchronous_commit on), writes are group committed:
// those that queue behind a running transaction run together in the next
// one, each in a savepoint of its own, so one COMMIT (one fsync, one WAL
// flush) serves them all (write, writeGroup).
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

	// group: concurrent writes share a transaction (writeGroup): set
	// where each commit waits for the disk: SQLite with synchronous=FULL,
	// PostgreSQL with fsync and synchronous_commit on.
	group bool
	// wmu guards wqueue and wbusy: the writes waiting for the next batch,
	// and whether a committer goroutine runs.
	wmu    sync.Mutex
	wqueue []*writeCall
	wbusy  bool
	// batches counts the transactions that ran more than one write (tests).
	batches int
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
		s, err := openPostgres(path, o)
		if err != nil {
			return nil, err
		}
		// Group commit only where a commit waits for a WAL flush to
		// disk: with fsync or synchronous_commit off a COMMIT is cheap
		// and the savepoints' round trips cost more than it saves
		// (BENCHMARKS.md, issue 22).
		if err := s.w.QueryRow(`SELECT current_setting('fsync') = 'on' AND current_setting('synchronous_commit') <> 'off'`).Scan(&s.group); err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("unable to read the database's durability settings: %w", err)
		}
		return s, nil
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
	s.group = sync == SyncFull
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
//
// With group set, writes that arrive while another runs wait and then
// share one transaction (writeGroup): one COMMIT, so one fsync, for all.
// Either way write returns only once fn's work is committed or known
// rolled back, whatever ctx does meanwhile: a caller never sees an error
// for work that is committed. fn may run in a transaction after other
// writes' work (it sees it, as it would once committed) and must keep its
// effects outside the database for after write returns nil, as every
// caller here does (the candidate cache's forget): fn's work is only
// committed then.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if !s.group {
		return s.writeAlone(ctx, fn)
	}
	c := &writeCall{ctx: ctx, fn: fn, done: make(chan struct{})}
	s.wmu.Lock()
	s.wqueue = append(s.wqueue, c)
	if !s.wbusy {
		s.wbusy = true
		go s.committer()
	}
	s.wmu.Unlock()
	<-c.done
	return c.err
}

// writeAlone runs fn in a transaction of its own.
func (s *Store) writeAlone(ctx context.Context, fn func(tx *sql.Tx) error) error {
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

// writeCall is a write waiting for its batch; err is its outcome, set
// before done closes.
type writeCall struct {
	ctx  context.Context
	fn   func(tx *sql.Tx) error
	err  error
	done chan struct{}
}

// maxBatch bounds the writes of one transaction, so one batch does not
// hold the write lock for long.
const maxBatch = 64

// committer runs the queued writes, batch after batch, until none waits:
// the first write of an idle store starts at once, and the writes that
// arrive while a transaction runs make the next one.
func (s *Store) committer() {
	for {
		s.wmu.Lock()
		n := min(len(s.wqueue), maxBatch)
		if n == 0 {
			s.wbusy = false
			s.wmu.Unlock()
			return
		}
		batch := s.wqueue[:n:n]
		s.wqueue = s.wqueue[n:]
		s.wmu.Unlock()
		if len(batch) == 1 {
			c := batch[0]
			c.err = s.writeAlone(c.ctx, c.fn)
			close(c.done)
			continue
		}
		rest := s.writeGroup(batch)
		for _, c := range batch[:len(batch)-len(rest)] {
			close(c.done)
		}
		if len(rest) > 0 {
			// Not run: the transaction broke before them. They go first
			// in the next batch.
			s.wmu.Lock()
			s.wqueue = append(rest, s.wqueue...)
			s.wmu.Unlock()
		}
	}
}

// writeGroup runs batch's fns in one transaction, each in a savepoint
// of its own: a fn's error rolls back its work alone and is its caller's
// answer; the others' work commits together. The transaction is not
// bound to any caller's context (one caller going away must not roll back
// the others); a caller whose context is done before its turn gets
// ctx.Err() without running. If the COMMIT fails, or the transaction
// breaks (SQLite rolls it all back on some errors, an interrupt among
// them), every fn that ran fails; writeGroup returns the tail of batch
// that did not run, for the next batch. Either way the candidate cache is
// emptied: a fn may have cached what an uncommitted transaction showed.
func (s *Store) writeGroup(batch []*writeCall) (rest []*writeCall) {
	ctx := context.Background()
	fail := func(calls []*writeCall, err error) {
		for _, c := range calls {
			if c.err == nil {
				c.err = err
			}
		}
		s.candMu.Lock()
		clear(s.cands)
		s.candMu.Unlock()
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		fail(batch, fmt.Errorf("unable to begin transaction: %w", err))
		return nil
	}
	if s.postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(writeLock)); err != nil {
			tx.Rollback()
			fail(batch, fmt.Errorf("unable to take the write lock: %w", err))
			return nil
		}
	}
	s.batches++
	for i, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = err
			continue
		}
		if _, err := tx.ExecContext(ctx, `SAVEPOINT write`); err != nil {
			// c did not run but fails too, so a batch always progresses.
			tx.Rollback()
			fail(batch[:i+1], fmt.Errorf("unable to commit: %w", err))
			return batch[i+1:]
		}
		c.err = c.fn(tx)
		end := `RELEASE SAVEPOINT write`
		if c.err != nil {
			end = `ROLLBACK TO SAVEPOINT write`
		}
		if _, err := tx.ExecContext(ctx, end); err != nil {
			// The transaction is gone with every fn's work in it.
			tx.Rollback()
			fail(batch[:i+1], fmt.Errorf("unable to commit: the transaction broke: %w", err))
			return batch[i+1:]
		}
		if c.err != nil {
			// ROLLBACK TO keeps the savepoint open; close it.
			if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT write`); err != nil {
				tx.Rollback()
				fail(batch[:i+1], fmt.Errorf("unable to commit: the transaction broke: %w", err))
				return batch[i+1:]
			}
		}
	}
	if err := tx.Commit(); err != nil {
		fail(batch, fmt.Errorf("unable to commit: %w", err))
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
