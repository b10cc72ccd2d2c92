package server

// This file owns the server's configuration and its defaults.

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/internal/clock"
	blobss3 "github.com/kolejka-go/kolejka/internal/server/blobs/s3"
	"github.com/kolejka-go/kolejka/internal/server/notify"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/spec"
)

// Config is everything the server needs; the zero value of every field but
// DataDir has a working default (see Open).
type Config struct {
	// DataDir holds the database (kolejka.sqlite3) and the blob store
	// (blobs/); created on first start.
	DataDir string
	// Database, when set, is a PostgreSQL database for the metadata
	// instead of the SQLite file in DataDir: a URL
	// postgres://user:password@host:port/db?… (store.IsPostgres). The
	// database must exist; the server creates its tables.
	Database string
	// Prefix is the URL path the API lives under, starting and ending with
	// "/" (default "/"), e.g. "/kolejka/".
	Prefix string
	// TLSCert and TLSKey, when both set, make Serve speak HTTPS.
	TLSCert, TLSKey string

	// Blobs is where blobs are kept: empty (the default) for the folder
	// blobs/ in DataDir, or an S3 bucket,
	// s3://BUCKET?endpoint=http(s)://HOST:PORT&region=REGION (package
	// blobs/s3), signed with BlobsAccessKey and BlobsSecretKey, else with
	// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
	Blobs                          string
	BlobsAccessKey, BlobsSecretKey string
	// BlobGrace is how old a blob with no database row must be before the
	// collector or the start-up sweep removes it (default 0 for the folder,
	// which one server owns; 1 h for S3, where another replica may have
	// just put a blob whose row it has not committed yet).
	BlobGrace time.Duration

	// Synchronous is SQLite's synchronous mode: "NORMAL" (default; every
	// acknowledged write survives a crash of the server process) or "FULL"
	// (survives power loss too, at a lower commit rate).
	Synchronous string

	// Limits are the server's caps, merged into every submitted task
	// (field-wise minimum) and announced in /settings/.
	Limits spec.Limits
	// Defaults fill limits a task omits: a task is handed out carrying
	// each of them it lacks (spec.Fit where the node declares the limit,
	// as given where it does not), unless the node's dequeue gives its
	// own (a node knows its shape). Whatever is set here, every task
	// handed out has cpus (default 1), memory (default 1 GiB) and time
	// (default DefaultTaskTime): Kolejka's Python foreman given a task
	// without a time limit waits for it with join(timeout=-1), which
	// returns at once, and then reboots its node through
	// /proc/sysrq-trigger; without cpus or memory it fails on arithmetic
	// with None (Kolejka's server never hands such tasks out).
	Defaults spec.Limits

	// MaxJSONBody caps task, dequeue, heartbeat and login bodies (default
	// 1 MiB); MaxResultBody caps result bodies (default 16 MiB: a result
	// lists every output file, ~100 bytes each, so 30,000 outputs are ~3
	// MiB; only processors post them); MaxBlobSize caps one blob (default
	// 1 GiB). A larger body gets 413 and nothing is stored.
	MaxJSONBody   int64
	MaxResultBody int64
	MaxBlobSize   int64

	// LeaseTime is how long a heartbeating node keeps its tasks after its
	// last heartbeat (default 60 s).
	LeaseTime time.Duration
	// LeaseMargin and DefaultTaskTime make the lease of a node that never
	// heartbeats (Kolejka's foreman): margin + 2 × the sum of the time
	// limits of the tasks one dequeue gave it (defaults 10 min and 1 h).
	// DefaultTaskTime is also the time limit a task without one is handed
	// out with, unless Defaults names another (see Defaults), and stands
	// in for tasks handed out before that was so.
	LeaseMargin     time.Duration
	DefaultTaskTime time.Duration
	// MaxAttempts is how many times a task is handed out before a lost
	// lease gives it an SE result (default 3).
	MaxAttempts int
	// QueueTimeout, if positive, gives an SE result to a task among the
	// ScanWindow oldest queued ones that has waited that long since it last
	// entered the queue: no node took it (default 0: wait for ever, as
	// Kolejka). Checked by the background expiry pass.
	QueueTimeout time.Duration
	// ScanWindow is how many of the oldest queued tasks one dequeue looks at
	// (default 1000). Tasks behind them wait until older ones are taken.
	ScanWindow int
	// Relay carries wake-ups between replicas sharing one database (nil:
	// this server is the only one); the caller owns it.
	Relay notify.Relay
	// RelayRecheck bounds how long a long poll waits without re-reading
	// the database when a Relay is in use (default 2 s).
	RelayRecheck time.Duration
	// ExpiryInterval is how often lapsed leases are reclaimed besides at
	// every dequeue (default LeaseTime/4, between 10 ms and 5 s).
	ExpiryInterval time.Duration

	// MaxWait caps the long-poll wait of dequeue and result requests
	// (default 60 s).
	MaxWait time.Duration

	// GCInterval is how often unreferenced blobs and expired sessions are
	// removed (default 1 h); deletes trigger a collection of their blob.
	GCInterval time.Duration
	// SessionAge is how long a login lasts (default 14 days, Django's).
	SessionAge time.Duration
	// TokenAge is how long a bearer token made by NewToken lasts (default
	// 365 days); `kolejka-server token --age` overrides it per token.
	TokenAge time.Duration
	// UploadGrace is how long a node's upload may wait for the result that
	// uses it (default 1 day): after that, a reference of a user without
	// the clients role that no task or result holds is removed by the
	// collector, with its blob if nothing else holds it (store.SweepUploads).
	UploadGrace time.Duration
	// TrustedOrigins are extra hosts ("host" or "host:port") accepted in the
	// Referer of cookie-authenticated requests (a proxy that rewrites Host).
	TrustedOrigins []string

	// CallbackHosts allow-lists the hosts task callbacks may go to: "host"
	// (any port), "host:port", "*.domain" or "*" (anything). Empty (the
	// default): a task with a callback_url is refused at submission.
	CallbackHosts []string
	// CallbackAttempts (default 10), CallbackBackoff (first retry delay,
	// doubled each time, default 1 s), CallbackMaxBackoff (default 10 min)
	// and CallbackTimeout (per attempt, default 10 s) shape delivery.
	CallbackAttempts   int
	CallbackBackoff    time.Duration
	CallbackMaxBackoff time.Duration
	CallbackTimeout    time.Duration

	// Logger receives access and error logs (default slog.Default()).
	Logger *slog.Logger
	// Clock is what leases, sessions, tokens, uploads and callbacks are
	// dated and aged by (default clock.System); long polls and the
	// background loops' periods run on the system's timers.
	Clock clock.Clock

	// Test hooks, set by export_test.go: pausing is called each time a
	// long poll starts waiting for an event, collected after each full
	// pass of the garbage collector; tests act on what they announce.
	pausing, collected func()
	// uiPoll is how often the web UI's live streams read the store (0:
	// the UI's default, a second).
	uiPoll time.Duration
	// uiStreams caps the web UI's open live streams (0: the UI's default).
	uiStreams int
	// firing is called by a trigger's firing at "recorded" (its work is
	// in the store's transaction, not yet committed) and "committed"
	// (before the work after the commit: a run's first advance).
	firing func(phase string)
}

// Defaults of Config.
const (
	DefaultMaxJSONBody        = 1 << 20
	DefaultMaxResultBody      = 16 << 20
	DefaultMaxBlobSize        = 1 << 30
	DefaultLeaseTime          = 60 * time.Second
	DefaultLeaseMargin        = 10 * time.Minute
	DefaultTaskTime           = time.Hour
	DefaultMaxAttempts        = 3
	DefaultScanWindow         = 1000
	DefaultMaxWait            = 60 * time.Second
	DefaultGCInterval         = time.Hour
	DefaultSessionAge         = 14 * 24 * time.Hour
	DefaultTokenAge           = 365 * 24 * time.Hour
	DefaultUploadGrace        = 24 * time.Hour
	DefaultS3BlobGrace        = time.Hour
	DefaultCPUs               = 1
	DefaultMemory             = 1 << 30
	DefaultCallbackAttempts   = 10
	DefaultCallbackBackoff    = time.Second
	DefaultCallbackMaxBackoff = 10 * time.Minute
	DefaultCallbackTimeout    = 10 * time.Second
)

// WithDefaults returns the configuration with every default filled in, or
// an ErrConfig error naming what is wrong. Open applies it; callers use it
// to show the configuration in effect.
func (c Config) WithDefaults() (Config, error) {
	if c.DataDir == "" {
		return c, fmt.Errorf("invalid configuration: %w: data folder not set", ErrConfig)
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return c, fmt.Errorf("invalid configuration: data folder: %w", err)
	}
	c.DataDir = abs
	if c.Prefix == "" {
		c.Prefix = "/"
	}
	if !strings.HasPrefix(c.Prefix, "/") {
		c.Prefix = "/" + c.Prefix
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	for _, r := range c.Prefix {
		if !(r == '/' || r == '-' || r == '_' || r == '.' || r == '~' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return c, fmt.Errorf("invalid configuration: %w: prefix %q: only letters, digits and -_.~/ allowed", ErrConfig, c.Prefix)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return c, fmt.Errorf("invalid configuration: %w: TLS needs both a certificate and a key", ErrConfig)
	}
	if c.Database != "" && !store.IsPostgres(c.Database) {
		return c, fmt.Errorf("invalid configuration: %w: database must be a postgres:// URL (or unset for the SQLite file in the data folder), not %q", ErrConfig, store.Redact(c.Database))
	}
	s := strings.ToUpper(c.Synchronous)
	switch s {
	case "":
		s = "NORMAL"
	case "NORMAL", "FULL":
	default:
		return c, fmt.Errorf("invalid configuration: %w: synchronous must be NORMAL or FULL, not %q", ErrConfig, c.Synchronous)
	}
	c.Synchronous = s
	if blobss3.IsURL(c.Blobs) {
		if _, err := blobss3.ParseURL(c.Blobs); err != nil {
			return c, fmt.Errorf("invalid configuration: %w: %v", ErrConfig, err)
		}
		setDefault(&c.BlobGrace, DefaultS3BlobGrace)
	} else if c.Blobs != "" {
		return c, fmt.Errorf("invalid configuration: %w: blobs %q: want empty (the data folder) or s3://BUCKET?endpoint=…", ErrConfig, c.Blobs)
	}
	if c.BlobGrace < 0 {
		c.BlobGrace = 0
	}
	setDefault(&c.MaxJSONBody, DefaultMaxJSONBody)
	setDefault(&c.MaxResultBody, DefaultMaxResultBody)
	setDefault(&c.MaxBlobSize, DefaultMaxBlobSize)
	setDefault(&c.LeaseTime, DefaultLeaseTime)
	setDefault(&c.LeaseMargin, DefaultLeaseMargin)
	setDefault(&c.DefaultTaskTime, DefaultTaskTime)
	setDefault(&c.MaxAttempts, DefaultMaxAttempts)
	setDefault(&c.ScanWindow, DefaultScanWindow)
	setDefault(&c.RelayRecheck, defaultRelayRecheck)
	setDefault(&c.MaxWait, DefaultMaxWait)
	setDefault(&c.GCInterval, DefaultGCInterval)
	setDefault(&c.SessionAge, DefaultSessionAge)
	setDefault(&c.TokenAge, DefaultTokenAge)
	setDefault(&c.UploadGrace, DefaultUploadGrace)
	setDefault(&c.CallbackAttempts, DefaultCallbackAttempts)
	setDefault(&c.CallbackBackoff, DefaultCallbackBackoff)
	setDefault(&c.CallbackMaxBackoff, DefaultCallbackMaxBackoff)
	setDefault(&c.CallbackTimeout, DefaultCallbackTimeout)
	if c.ExpiryInterval <= 0 {
		c.ExpiryInterval = min(max(c.LeaseTime/4, 10*time.Millisecond), 5*time.Second)
	}
	if c.QueueTimeout < 0 {
		c.QueueTimeout = 0
	}
	if err := unrunnableLimits(c.Limits, "limits"); err != nil {
		return c, fmt.Errorf("invalid configuration: %w: %v", ErrConfig, err)
	}
	if err := unrunnableLimits(c.Defaults, "defaults"); err != nil {
		return c, fmt.Errorf("invalid configuration: %w: %v", ErrConfig, err)
	}
	c.Defaults = c.Defaults.Clone()
	if c.Defaults.CPUs == nil {
		v := int64(DefaultCPUs)
		c.Defaults.CPUs = &v
	}
	if c.Defaults.Memory == nil {
		v := int64(DefaultMemory)
		c.Defaults.Memory = &v
	}
	if c.Defaults.Time == nil {
		v := c.DefaultTaskTime
		c.Defaults.Time = &v
	}
	// No default needs capping: a capped limit is in every task from its
	// submission (the caps are merged in), so its default never applies.
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Clock = clock.Or(c.Clock)
	return c, nil
}

func setDefault[T int | int64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// unrunnableLimits names the first limit of l that no task can run with:
// cpus, memory or time of 0. A node given one fails the task (SE); the
// server refuses it where it comes in (a task, a dequeue's defaults, the
// configuration), naming the field. swap 0 (no swap), gpus 0 and the
// other zeros are meaningful and allowed.
func unrunnableLimits(l spec.Limits, field string) error {
	switch {
	case l.CPUs != nil && *l.CPUs == 0:
		return fmt.Errorf("%s.cpus: 0 cores: a task needs at least 1", field)
	case l.Memory != nil && *l.Memory == 0:
		return fmt.Errorf("%s.memory: 0 bytes: a task needs some memory", field)
	case l.Time != nil && *l.Time == 0:
		return fmt.Errorf("%s.time: 0 seconds: a task needs some time", field)
	}
	return nil
}
