package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/observer"
)

// ErrServerClosed is what Serve returns after Shutdown.
var ErrServerClosed = errors.New("observer: server closed")

// ServerOptions bound what a peer can make the server hold. Zero values
// take the defaults shown.
type ServerOptions struct {
	Logger *slog.Logger
	// MaxConns is how many connections are served at once (256). Past it,
	// a new connection takes the place of the one that has waited longest
	// for its request, so a flood of idle or slow connections cannot lock
	// the clients that send their request at once out.
	MaxConns int
	// MaxHeaderBytes bounds the request line and headers (16 KiB),
	// MaxBodyBytes the body (64 KiB).
	MaxHeaderBytes int
	MaxBodyBytes   int64
	// ReadTimeout is how long a request may take to arrive whole, from its
	// connection's opening or its first byte (10 s): a slow sender
	// (slowloris) loses its connection. IdleTimeout is how long a
	// kept-alive connection may wait for its next request (60 s).
	// WriteTimeout bounds writing an answer (10 s).
	ReadTimeout  time.Duration
	IdleTimeout  time.Duration
	WriteTimeout time.Duration
}

// Server serves a Registry over the observer protocol (see wire.go and
// handlers.go) on unix sockets. The caller of each request is the process
// that opened the connection, as the kernel tells (SO_PEERCRED, taken at
// connect time).
type Server struct {
	r   *Registry
	o   ServerOptions
	log *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   bool
	wg        sync.WaitGroup // one per connection goroutine
}

// NewServer returns a server of r's sessions.
func NewServer(r *Registry, o ServerOptions) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 256
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 16 << 10
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 64 << 10
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 10 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	return &Server{r: r, o: o, log: o.Logger, listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}}
}

// Listen makes the observer's socket at path: its folder is made if
// missing, a stale socket file left by a dead observer is removed (a live
// one is not: that is an error), and the socket is made writable by
// everyone (mode 0777), since task containers of any uid use it.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("unable to make the socket's folder: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("unable to listen on %s: it exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("unable to listen on %s: another observer answers there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("unable to remove the stale socket %s: %w", path, err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("unable to listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o777); err != nil {
		l.Close()
		return nil, fmt.Errorf("unable to open the socket %s to everyone: %w", path, err)
	}
	return l, nil
}

// Serve accepts connections on l until Shutdown (then it returns
// ErrServerClosed) or a permanent accept error.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			// Out of file descriptors and the like: wait, as net/http does.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
				errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.ECONNABORTED) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accepting a connection failed; retrying", "error", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("unable to accept connections: %w", err)
		}
		delay = 0
		s.accept(nc)
	}
}

// accept starts serving a new connection, making room for it if needed.
func (s *Server) accept(nc net.Conn) {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close() // no peer credentials, no caller
		return
	}
	p, err := peerOf(uc)
	if err != nil {
		s.log.Debug("connection refused", "error", err)
		nc.Close()
		return
	}
	c := &conn{s: s, nc: uc, peer: p, since: time.Now()}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if len(s.conns) >= s.o.MaxConns {
		var victim *conn
		for o := range s.conns {
			o.mu.Lock()
			if !o.busy && (victim == nil || o.since.Before(victim.since)) {
				victim = o
			}
			o.mu.Unlock()
		}
		if victim == nil {
			s.mu.Unlock()
			// Every slot is handling a command: refuse this one.
			bw := bufio.NewWriter(nc)
			_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
			_ = writeResponse(bw, http.StatusServiceUnavailable, errorBody(observer.KindBusy, "too many connections"), false, false)
			nc.Close()
			return
		}
		delete(s.conns, victim)
		victim.nc.Close() // its goroutine ends on the read error
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go c.serve()
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Shutdown stops accepting, closes the connections that wait for a
// request, lets those handling one answer it (then they close), and
// returns once all are done, or closes what is left when ctx ends. The
// registry is not touched: shut it down after.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.mu.Lock()
		if !c.busy {
			c.nc.Close()
		}
		c.mu.Unlock()
	}
	s.mu.Unlock()
	done := inBackground(s.wg.Wait)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// inBackground runs wait in a goroutine of its own and returns a channel
// closed when it returns: a Shutdown's wait, which its context may cut
// short.
func inBackground(wait func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	return done
}

// peer is the process at the other end of a connection, as it was when it
// connected.
type peer struct {
	proc
	uid int
}

// peerOf asks the kernel who connected: SO_PEERCRED holds the pid (in the
// observer's pid namespace; 0 if the peer's is not visible from it) and
// uid of the process that called connect(2), recorded at that moment.
func peerOf(uc *net.UnixConn) (peer, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{}, err
	}
	if cerr != nil {
		return peer{}, fmt.Errorf("unable to read the peer's credentials: %w", cerr)
	}
	if cred.Pid <= 0 {
		return peer{}, errors.New("the peer's pid namespace is not visible from the observer's")
	}
	p, err := procOf(int(cred.Pid))
	if err != nil {
		return peer{}, err
	}
	return peer{proc: p, uid: int(cred.Uid)}, nil
}

// conn is one client connection.
type conn struct {
	s    *Server
	nc   *net.UnixConn
	peer peer

	mu    sync.Mutex
	busy  bool      // handling a command: not to be evicted
	since time.Time // when it began waiting for its current request
}

func (c *conn) setBusy(busy bool) {
	c.mu.Lock()
	c.busy = busy
	if !busy {
		c.since = time.Now()
	}
	c.mu.Unlock()
}

// serve reads requests and answers them until the peer or the server ends
// the connection.
func (c *conn) serve() {
	s := c.s
	defer func() {
		// A bug in one request must not take the node's observer down.
		if v := recover(); v != nil {
			s.log.Error("request handling panicked", "pid", c.peer.Pid, "panic", v, "stack", string(debug.Stack()))
		}
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	cr := &connReader{r: c.nc}
	br := bufio.NewReaderSize(cr, 4096)
	bw := bufio.NewWriterSize(c.nc, 4096)
	wait := s.o.ReadTimeout
	for {
		// The first byte may take IdleTimeout on a kept-alive connection;
		// from then on the whole request must come within ReadTimeout.
		cr.remain = int64(s.o.MaxHeaderBytes)
		_ = c.nc.SetReadDeadline(time.Now().Add(wait))
		if _, err := br.Peek(1); err != nil {
			return
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(s.o.ReadTimeout))
		req, err := readRequest(br, cr, s.o.MaxHeaderBytes, s.o.MaxBodyBytes, func() error {
			_ = c.nc.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout))
			_, err := io.WriteString(c.nc, "HTTP/1.1 100 Continue\r\n\r\n")
			return err
		})
		if err != nil {
			var he *httpError
			if errors.As(err, &he) {
				s.log.Debug("bad request", "pid", c.peer.Pid, "status", he.status, "error", he.msg)
				_ = c.nc.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout))
				_ = writeResponse(bw, he.status, errorBody(kindOf(he.status), he.msg), false, false)
			}
			return
		}
		c.setBusy(true)
		if s.isClosing() {
			req.keepAlive = false
		}
		status, body := s.handle(c, req)
		_ = c.nc.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout))
		err = writeResponse(bw, status, body, req.keepAlive, req.method == http.MethodHead)
		c.setBusy(false)
		if err != nil || !req.keepAlive || s.isClosing() {
			return
		}
		wait = s.o.IdleTimeout
	}
}
