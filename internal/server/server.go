// Package server is kolejka-server: Kolejka's HTTP API (docs/kolejka-protocol.md
// §3) over an SQLite database and a content-addressed blob store, so that
// Kolejka's Python client and foreman work against it unchanged, with
// Kolejka's defects fixed (strict validation, leases that bring a dead
// node's tasks back, one result per task, dequeue that hands out what was
// asked) and a few extensions Kolejka lacks (bearer tokens, heartbeats, long
// polling, tasks handed back by a stopping node, callbacks), announced in
// /settings/.
//
// Lifecycle, net/http style:
//
//	s, err := server.Open(cfg)      // lock the data folder, migrate, clean up, start background work
//	go s.Serve(ctx, listener)       // or mount s.Handler() anywhere (httptest)
//	...
//	s.Shutdown(ctx)                 // stop accepting, end long polls, finish requests, close the database
//
// Open takes an exclusive lock on the data folder: one server per folder.
// At start-up it removes the temporary files of uploads a crash cut short
// and blob files whose database row was never committed. The background
// work is the lease expiry loop, the garbage collector of unreferenced
// blobs and expired sessions, and the callback delivery loop.
//
// The admin commands use OpenAdmin, which opens the same folder next to a
// running server without the lock, the clean-up or background work.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/internal/flock"
	"github.com/kolejka-go/kolejka/internal/server/blobs"
	blobss3 "github.com/kolejka-go/kolejka/internal/server/blobs/s3"
	"github.com/kolejka-go/kolejka/internal/server/notify"
	"github.com/kolejka-go/kolejka/internal/server/notify/pgrelay"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/server/ui"
)

// File names inside the data folder.
const (
	DatabaseFile = "kolejka.sqlite3"
	BlobsDir     = "blobs"
	LockFile     = "server.lock"
)

// Server is a kolejka-server over one data folder.
type Server struct {
	cfg   Config
	log   *slog.Logger
	db    *store.Store
	blobs blobs.Store
	lock  *os.File // nil for OpenAdmin
	// ownRelay is the relay Open made for a PostgreSQL database (closed
	// with the server); a Config.Relay belongs to its caller.
	ownRelay notify.Relay

	queue   notify.Broadcast // a task became available (submitted, requeued)
	results notify.Keyed     // a task got its result (or was deleted)
	// nodeRoom: a node posted a result, so it has room its held dequeue
	// did not ask for (key: the node's user id).
	nodeRoom  notify.Keyed
	callbacks chan struct{} // an outbox row was added
	// triggerWake: a schedule was put or resumed, a task or run ended.
	triggerWake chan struct{}
	gc          chan string // a blob may have lost its last reference

	hashes    hashLocks
	runs      runCache // workflow runs between advances (workflows.go)
	owed      owedRuns // runs whose advance failed, for the expiry pass
	auth      authCache
	nodes     nodeBook // what each node last said (nodes.go)
	tokenUses tokenUses
	metrics   *metrics
	handler   http.Handler
	ui        *ui.UI // the web UI, under <prefix>ui/

	stop     chan struct{} // closed by Shutdown/Close: loops and long polls end
	stopOnce sync.Once
	loops    sync.WaitGroup

	mu      sync.Mutex
	servers map[*http.Server]struct{}
	closed  bool
}

// Open opens the data folder cfg.DataDir for serving; see the package doc.
func Open(cfg Config) (*Server, error) {
	return open(cfg, true)
}

// OpenAdmin opens the data folder for the admin API only (AddUser, …),
// next to a server that may be running on it. Its Handler works, but
// nothing runs in the background and nothing is cleaned up.
func OpenAdmin(cfg Config) (*Server, error) {
	return open(cfg, false)
}

func open(cfg Config, owner bool) (*Server, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	// The blob store first: an S3 bucket that cannot be used stops the
	// start before anything is created.
	bs, err := openBlobs(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("unable to create data folder: %w", err)
	}
	s := &Server{
		blobs:       bs,
		cfg:         cfg,
		log:         cfg.Logger,
		callbacks:   make(chan struct{}, 1),
		triggerWake: make(chan struct{}, 1),
		gc:          make(chan string, 1024),
		stop:        make(chan struct{}),
		servers:     map[*http.Server]struct{}{},
	}
	if owner {
		if s.lock, err = lockDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	fail := func(err error) (*Server, error) {
		if s.db != nil {
			_ = s.db.Close() // err is the news; what the store committed is durable
		}
		if s.lock != nil {
			s.lock.Close()
		}
		if s.ownRelay != nil {
			_ = s.ownRelay.Close()
		}
		return nil, err
	}
	if cfg.Database != "" {
		s.db, err = store.Open(cfg.Database, store.Options{Synchronous: cfg.Synchronous})
		if err != nil {
			return fail(fmt.Errorf("database setting: %w", err))
		}
	} else if s.db, err = store.Open(filepath.Join(cfg.DataDir, DatabaseFile), store.Options{Synchronous: cfg.Synchronous}); err != nil {
		return fail(err)
	}
	if cfg.Database != "" && cfg.Relay == nil {
		// Replicas on one PostgreSQL database wake each other's long polls
		// and drop each other's ended credentials; an admin command's
		// changes reach them too.
		relay, err := pgrelay.New(context.Background(), cfg.Database, s.log)
		if err != nil {
			return fail(fmt.Errorf("database setting: %w", err))
		}
		s.ownRelay = relay
		s.cfg.Relay = relay
	}
	s.metrics = newMetrics(s)
	s.ui, err = ui.New(uiBackend{s}, ui.Options{Prefix: cfg.Prefix, Log: s.log, PollEvery: cfg.uiPoll, Streams: cfg.uiStreams})
	if err != nil {
		return fail(err)
	}
	s.handler = s.routes()
	if owner {
		if err := s.recover(context.Background()); err != nil {
			return fail(err)
		}
		// What a crash left undone: results accepted whose runs did not
		// advance yet.
		s.advanceRunning(context.Background())
		s.start()
	}
	return s, nil
}

// lockDir takes the data folder's exclusive lock, held until Close.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("unable to open lock file: %w", err)
	}
	if err := flock.TryExclusive(f); err != nil {
		f.Close()
		if errors.Is(err, flock.ErrLocked) {
			return nil, fmt.Errorf("unable to open %s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("unable to lock data folder: %w", err)
	}
	return f, nil
}

// openBlobs opens the configured blob store: the data folder's blobs/, or
// an S3 bucket, checked now (a missing bucket, refused credentials or an
// endpoint that does not answer stops the start, naming the setting).
func openBlobs(cfg Config) (blobs.Store, error) {
	if !blobss3.IsURL(cfg.Blobs) {
		return blobs.OpenFolder(filepath.Join(cfg.DataDir, BlobsDir))
	}
	o, err := blobss3.ParseURL(cfg.Blobs)
	if err != nil {
		return nil, fmt.Errorf("invalid configuration: %w: %v", ErrConfig, err)
	}
	o.AccessKey, o.SecretKey = cfg.BlobsAccessKey, cfg.BlobsSecretKey
	st, err := blobss3.Open(context.Background(), o, blobsOpenTimeout)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return st, nil
}

// blobsOpenTimeout bounds the start-up check of an S3 bucket.
const blobsOpenTimeout = 15 * time.Second

// recover cleans up after a crash, before anything can run: temporary
// uploads, and blobs whose row was never committed and that are older
// than BlobGrace (another replica's fresh upload is not an orphan).
func (s *Server) recover(ctx context.Context) error {
	cutoff := time.Now().Add(-s.cfg.BlobGrace)
	n, err := s.blobs.CleanTemp(ctx, cutoff)
	if err != nil {
		return err
	}
	if n > 0 {
		s.log.Info("removed unfinished uploads", "count", n)
	}
	orphans := 0
	bad, err := s.blobs.Walk(ctx, func(b blobs.Info) error {
		if !b.ModTime.Before(cutoff) {
			return nil
		}
		known, err := s.db.BlobKnown(ctx, b.Hash)
		if err != nil {
			return err
		}
		if !known {
			orphans++
			return s.blobs.Remove(ctx, b.Hash)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if orphans > 0 {
		s.log.Info("removed blob files without a database row", "count", orphans)
	}
	for _, p := range bad {
		s.log.Warn("stray file in the blob store (left alone)", "path", p)
	}
	return nil
}

// start runs the background loops.
func (s *Server) start() {
	for _, loop := range []func(){s.expiryLoop, s.gcLoop, s.callbackLoop, s.triggerLoop, s.relayLoop} {
		s.loops.Add(1)
		go func() {
			defer s.loops.Done()
			loop()
		}()
	}
}

// Handler is the HTTP API, under the configured prefix.
func (s *Server) Handler() http.Handler { return s.handler }

// Config is the configuration in effect, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Serve accepts connections on ln until Shutdown or Close (it then
// returns nil) or until ctx is done (it then shuts this listener down
// gracefully). It speaks HTTPS when the configuration names a certificate.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("unable to load TLS certificate: %w", err)
		}
		hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, hs.TLSConfig)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	s.servers[hs] = struct{}{}
	s.mu.Unlock()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = hs.Shutdown(sctx) // Serve returns either way; the Server's Close or Shutdown cuts what outlived sctx
		case <-done:
		}
	}()
	s.log.Info("serving", "address", ln.Addr().String(), "prefix", s.cfg.Prefix, "tls", s.cfg.TLSCert != "")
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the server gracefully: listeners stop accepting, long
// polls end at once (answering as on timeout), in-flight requests finish,
// background loops stop, and the database is closed. If ctx ends first,
// remaining connections are closed and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.halt(func(hs *http.Server) error {
		if err := hs.Shutdown(ctx); err != nil {
			_ = hs.Close() // cuts what Shutdown left; its error says so already
			return err
		}
		return nil
	})
}

// Close stops the server at once: connections are closed, in-flight
// requests cut off, the database closed.
func (s *Server) Close() error { return s.halt((*http.Server).Close) }

// halt is Shutdown and Close: the first call stops every listener with
// stop, then the background loops, then closes the storage; later calls
// do nothing.
func (s *Server) halt(stop func(*http.Server) error) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	servers := s.serverList()
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	var errs []error
	for _, hs := range servers {
		errs = append(errs, stop(hs))
	}
	s.loops.Wait()
	errs = append(errs, s.closeStorage())
	return errors.Join(errs...)
}

func (s *Server) serverList() []*http.Server {
	out := make([]*http.Server, 0, len(s.servers))
	for hs := range s.servers {
		out = append(out, hs)
	}
	return out
}

func (s *Server) closeStorage() error {
	s.recordTokenUses(context.Background())
	err := s.db.Close()
	if s.ownRelay != nil {
		_ = s.ownRelay.Close() // it only drops wake-ups not yet sent
	}
	if s.lock != nil {
		s.lock.Close()
	}
	return err
}

// stopContext is a context that ends when the server stops, for the
// background loops' queries and requests.
func (s *Server) stopContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-s.stop
		cancel()
	}()
	return ctx, cancel
}

// stopped is closed when the server stops.
func (s *Server) stopped() <-chan struct{} { return s.stop }

// now is the time of day by the server's clock.
func (s *Server) now() time.Time { return s.cfg.Clock.Now().UTC() }
