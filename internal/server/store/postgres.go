package store

// This file owns what the PostgreSQL backend needs beyond the portable
// SQL the store shares with SQLite: opening the pools, the driver wrapper
// that rewrites the store's "?" placeholders to PostgreSQL's $1, $2, …
// (once per statement text, cached), the mechanical translation of the
// migrations' SQLite DDL, and the advisory lock that serialises writes
// across server processes.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/kolejka-go/kolejka/internal/deadpeer"
	"github.com/kolejka-go/kolejka/internal/server/sched"
)

// writeLock is the key of the transaction-scoped advisory lock every write
// transaction on PostgreSQL takes first ("kolejka" in ASCII): the writes
// of all server processes sharing the database run one at a time, as
// SQLite's BEGIN IMMEDIATE runs them in one process.
const writeLock = 0x6b6f6c656a6b61

// The liveness of the connections to PostgreSQL. A server whose network
// is cut silently (a dead switch port, a partition: no RST, no FIN) may
// hold the global write lock (writeLock) inside an open transaction, or a
// blob's lock; PostgreSQL would keep that session, and so the lock, for
// as long as TCP retransmits its last answer (tcp_retries2: about 15
// minutes) or, with nothing in flight, for the kernel's keepalive time
// (2 hours), and every other replica's writes would wait behind it. So
// every session of the store and of the relay asks PostgreSQL, in its
// startup parameters, to probe the client and to give up on it:
//
//   - tcp_keepalives_idle/interval/count 5 s, 2 s, 5: an idle client
//     (idle in a transaction included) that answers no probe for 15 s is
//     dead;
//   - tcp_user_timeout 15 s: so is one that acknowledges none of the data
//     sent to it for 15 s;
//   - idle_in_transaction_session_timeout 30 s: a client that is alive
//     but does not go on (a frozen process: its kernel still answers the
//     probes) loses its transaction and its session.
//
// and dials with the same from its own end (keepalives, TCP_USER_TIMEOUT),
// so that a server cut off notices within as long and reconnects when
// the network is back. None of these ends a healthy transaction: the TCP
// ones look only at the peer's kernel, which answers whatever the process
// does, and the store's transactions run their statements back to back
// (milliseconds; nothing waits on the network but PostgreSQL inside one).
// So the others carry on about 15 s after a cut. PostgreSQL 12 or newer
// (tcp_user_timeout); a pooler in between must pass these parameters.
const (
	keepaliveIdle     = 5 * time.Second
	keepaliveInterval = 2 * time.Second
	keepaliveCount    = 5
	deadPeer          = keepaliveIdle + keepaliveCount*keepaliveInterval // 15 s, as deadpeer.Dialer
	idleInTransaction = "30s"
	// writeLockWait bounds a write's wait for writeLock: above the longest
	// a dead holder keeps it (deadPeer, or idleInTransaction for a frozen
	// one), so that it fails only when the database itself is stuck.
	writeLockWait = "60s"
)

// Liveness sets cfg's session parameters and dialer so that a silent
// peer ends the connection on both ends (see above). The relay's
// connections use it too.
func Liveness(cfg *pgx.ConnConfig) {
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	for k, v := range map[string]string{
		"tcp_keepalives_idle":                 strconv.Itoa(int(keepaliveIdle.Seconds())),
		"tcp_keepalives_interval":             strconv.Itoa(int(keepaliveInterval.Seconds())),
		"tcp_keepalives_count":                strconv.Itoa(keepaliveCount),
		"tcp_user_timeout":                    strconv.Itoa(int(deadPeer.Milliseconds())),
		"idle_in_transaction_session_timeout": idleInTransaction,
	} {
		if _, set := cfg.RuntimeParams[k]; !set { // the URL's own win
			cfg.RuntimeParams[k] = v
		}
	}
	cfg.DialFunc = deadpeer.Dialer(0, keepaliveIdle, keepaliveInterval, keepaliveCount).DialContext
}

// IsPostgres reports whether a database setting names a PostgreSQL
// database (a postgres:// or postgresql:// URL) rather than a SQLite file.
func IsPostgres(database string) bool {
	return strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://")
}

// Redact is a database setting with any password in it replaced by
// "xxxxx", for logs and errors (any URL: a mistyped scheme carries one as
// well).
func Redact(database string) string {
	scheme, _, ok := strings.Cut(database, "://")
	if !ok {
		return database // a file
	}
	u, err := url.Parse(database)
	if err != nil {
		return scheme + "://(a URL that does not parse)"
	}
	return u.Redacted()
}

// OpenSQL opens a bare database/sql handle on a PostgreSQL database
// that takes the store's SQL as it is written ("?" placeholders): for
// tests and tools that read the store's tables directly.
func OpenSQL(addr string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(addr)
	if err != nil {
		return nil, fmt.Errorf("unable to open database %s: not a valid PostgreSQL URL", Redact(addr))
	}
	return sql.OpenDB(rebindConnector{stdlib.GetConnector(*cfg)}), nil
}

// openPostgres opens the writer and reader pools of the database at the
// URL addr and brings its schema up to date.
func openPostgres(addr string, o Options) (*Store, error) {
	where := Redact(addr)
	cfg, err := pgx.ParseConfig(addr)
	if err != nil {
		// pgx's parse errors quote the URL, password and all.
		return nil, fmt.Errorf("unable to open database %s: not a valid PostgreSQL URL", where)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = o.BusyTimeout
	}
	Liveness(cfg)
	// One writer connection, as on SQLite: the writes of this process
	// queue in Go's pool rather than on the advisory lock. Its writes wait
	// at most writeLockWait for the lock (then fail, and the request with
	// them) rather than for ever.
	wc := cfg.Copy()
	wc.RuntimeParams["lock_timeout"] = writeLockWait
	w := sql.OpenDB(rebindConnector{stdlib.GetConnector(*wc)})
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	if err := w.Ping(); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("unable to open database %s: %w", where, pgReason(err))
	}
	s := &Store{w: w, path: where, postgres: true}
	s.cands = map[int64]sched.Candidate{}
	if err := s.migrate(context.Background()); err != nil {
		_ = w.Close()
		return nil, err
	}
	rc := cfg.Copy()
	rc.RuntimeParams["default_transaction_read_only"] = "on"
	r := sql.OpenDB(rebindConnector{stdlib.GetConnector(*rc)})
	r.SetMaxOpenConns(o.Readers)
	r.SetMaxIdleConns(o.Readers)
	s.r = r
	s.locks = sql.OpenDB(rebindConnector{stdlib.GetConnector(*cfg)})
	s.locks.SetMaxOpenConns(blobLockConns)
	s.locks.SetMaxIdleConns(4)
	return s, nil
}

// pgReason is a connection error cut to what an operator acts on: pgx's
// own text repeats the address and every fallback it tried.
func pgReason(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Unwrap() != nil {
		err = ce.Unwrap()
	}
	// One line: pgx lists each attempt (with and without TLS) on its own.
	first, _, _ := strings.Cut(err.Error(), "\n")
	return errors.New(first)
}

// isUniquePG is a PostgreSQL unique violation.
func isUniquePG(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == "23505"
}

// rebindConnector hands out connections that rewrite placeholders.
type rebindConnector struct{ driver.Connector }

func (c rebindConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &rebindConn{conn.(*stdlib.Conn)}, nil
}

// rebindConn is pgx's database/sql connection with the store's "?"
// placeholders rewritten, and booleans sent as the 0/1 integers the
// schema keeps them as (SQLite's driver does the same).
type rebindConn struct{ c *stdlib.Conn }

var (
	_ driver.Conn               = (*rebindConn)(nil)
	_ driver.ConnBeginTx        = (*rebindConn)(nil)
	_ driver.ConnPrepareContext = (*rebindConn)(nil)
	_ driver.ExecerContext      = (*rebindConn)(nil)
	_ driver.QueryerContext     = (*rebindConn)(nil)
	_ driver.Pinger             = (*rebindConn)(nil)
	_ driver.SessionResetter    = (*rebindConn)(nil)
	_ driver.NamedValueChecker  = (*rebindConn)(nil)
)

func (c *rebindConn) Prepare(query string) (driver.Stmt, error) { return c.c.Prepare(rebind(query)) }
func (c *rebindConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.c.PrepareContext(ctx, rebind(query))
}
func (c *rebindConn) Close() error              { return c.c.Close() }
func (c *rebindConn) Begin() (driver.Tx, error) { return c.c.Begin() } //nolint:staticcheck // the interface's
func (c *rebindConn) BeginTx(ctx context.Context, o driver.TxOptions) (driver.Tx, error) {
	return c.c.BeginTx(ctx, o)
}
func (c *rebindConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.c.ExecContext(ctx, rebind(query), ints(args))
}
func (c *rebindConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.c.QueryContext(ctx, rebind(query), ints(args))
}
func (c *rebindConn) Ping(ctx context.Context) error             { return c.c.Ping(ctx) }
func (c *rebindConn) ResetSession(ctx context.Context) error     { return c.c.ResetSession(ctx) }
func (c *rebindConn) CheckNamedValue(v *driver.NamedValue) error { return c.c.CheckNamedValue(v) }

func ints(args []driver.NamedValue) []driver.NamedValue {
	for i, a := range args {
		if b, ok := a.Value.(bool); ok {
			args[i].Value = int64(0)
			if b {
				args[i].Value = int64(1)
			}
		}
	}
	return args
}

var rebound sync.Map // statement text → its PostgreSQL text

// rebind rewrites the "?" placeholders of query to $1, $2, … in order,
// leaving alone a "?" in a string literal, a quoted name or a comment.
func rebind(query string) string {
	if v, ok := rebound.Load(query); ok {
		return v.(string)
	}
	out := rebindText(query)
	rebound.Store(query, out)
	return out
}

func rebindText(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		ch := query[i]
		switch {
		case ch == '\'' || ch == '"':
			// Through the closing quote; a doubled quote stays inside.
			j := i + 1
			for j < len(query) && query[j] != ch {
				j++
			}
			if j >= len(query) {
				j = len(query) - 1
			}
			b.WriteString(query[i : j+1])
			i = j
		case ch == '-' && i+1 < len(query) && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				j = len(query) - i - 1
			}
			b.WriteString(query[i : i+j+1])
			i += j
		case ch == '?':
			n++
			fmt.Fprintf(&b, "$%d", n)
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}

var (
	// id INTEGER PRIMARY KEY [AUTOINCREMENT]: SQLite's rowid alias,
	// numbered by the database when an insert leaves it out.
	ddlIdentity = regexp.MustCompile(`\bid(\s+)INTEGER\s+PRIMARY\s+KEY(\s+AUTOINCREMENT)?\b`)
	ddlInteger  = regexp.MustCompile(`\bINTEGER\b`)
	ddlBlob     = regexp.MustCompile(`\bBLOB\b`)
	ddlNoRowid  = regexp.MustCompile(`\)\s*WITHOUT\s+ROWID`)
)

// pgDDL translates a migration step's SQLite DDL for PostgreSQL: SQLite's
// INTEGER is 64 bits (BIGINT), BLOB is BYTEA, a rowid alias "id" is an
// identity column (never reusing a number, as AUTOINCREMENT promises; a
// plain rowid alias may reuse the highest, which nothing relies on), and
// WITHOUT ROWID, a storage choice, has no equivalent. Statements with
// SQLite-only syntax (triggers) have their own text in pgSteps.
func pgDDL(step string) string {
	step = ddlIdentity.ReplaceAllString(step, "id${1}BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
	step = ddlInteger.ReplaceAllString(step, "BIGINT")
	step = ddlBlob.ReplaceAllString(step, "BYTEA")
	return ddlNoRowid.ReplaceAllString(step, ")")
}
