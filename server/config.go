package server

// This file owns the server's configuration and its defaults.

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/spec"
)

// Config is everything the server needs; the zero value of every field but
// DataDir has a working default (see Open).
type Config struct {
	// DataDir holds the database (kolejka.sqlite3) and the blob store
	// (blobs/); created on first start.
	DataDir string
	// Prefix is the URL path the API lives under, starting and ending with
	// "/" (default "/"), e.g. "/kolejka/".
	Prefix string
	// TLSCert and TLSKey, when both set, make Serve speak HTTPS.
	TLSCert, TLSKey string

	// Synchronous is SQLite's synchronous mode: "NORMAL" (default; every
	// acknowledged write survives a crash of the server process) or "FULL"
	// (survives power loss too, at a lower commit rate).
	Synchronous string

	// Limits are the server's caps, merged into every submitted task
	// (field-wise minimum) and announced in /settings/.
	Limits spec.Limits
	// Defaults fill limits a task omits when a node declares them, unless
	// the node's dequeue gives its own (spec.Fit).
	Defaults spec.Limits

	// MaxJSONBody caps task, result, dequeue, heartbeat and login bodies
	// (default 1 MiB); MaxBlobSize caps one blob (default 1 GiB). A larger
	// body gets 413 and nothing is stored.
	MaxJSONBody int64
	MaxBlobSize int64

	// LeaseTime is how long a heartbeating node keeps its tasks after its
	// last heartbeat (default 60 s).
	LeaseTime time.Duration
	// LeaseMargin and DefaultTaskTime make the lease of a node that never
	// heartbeats (Kolejka's foreman): margin + 2 × the sum of the time
	// limits of the tasks one dequeue gave it, DefaultTaskTime standing in
	// for a task without a time limit (defaults 10 min and 1 h).
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
}

// Defaults of Config.
const (
	DefaultMaxJSONBody        = 1 << 20
	DefaultMaxBlobSize        = 1 << 30
	DefaultLeaseTime          = 60 * time.Second
	DefaultLeaseMargin        = 10 * time.Minute
	DefaultTaskTime           = time.Hour
	DefaultMaxAttempts        = 3
	DefaultScanWindow         = 1000
	DefaultMaxWait            = 60 * time.Second
	DefaultGCInterval         = time.Hour
	DefaultSessionAge         = 14 * 24 * time.Hour
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
	s := strings.ToUpper(c.Synchronous)
	switch s {
	case "":
		s = "NORMAL"
	case "NORMAL", "FULL":
	default:
		return c, fmt.Errorf("invalid configuration: %w: synchronous must be NORMAL or FULL, not %q", ErrConfig, c.Synchronous)
	}
	c.Synchronous = s
	setDefault(&c.MaxJSONBody, DefaultMaxJSONBody)
	setDefault(&c.MaxBlobSize, DefaultMaxBlobSize)
	setDefault(&c.LeaseTime, DefaultLeaseTime)
	setDefault(&c.LeaseMargin, DefaultLeaseMargin)
	setDefault(&c.DefaultTaskTime, DefaultTaskTime)
	setDefault(&c.MaxAttempts, DefaultMaxAttempts)
	setDefault(&c.ScanWindow, DefaultScanWindow)
	setDefault(&c.MaxWait, DefaultMaxWait)
	setDefault(&c.GCInterval, DefaultGCInterval)
	setDefault(&c.SessionAge, DefaultSessionAge)
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
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

func setDefault[T int | int64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}
