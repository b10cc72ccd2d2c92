package observer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kolejka-go/kolejka/internal/observerwire"
	"github.com/kolejka-go/kolejka/spec"
)

// Client speaks the observer protocol to a daemon, for the process that
// uses it: the daemon knows the caller by the process that opened the
// connection. It keeps one connection open ("Connection: keep-alive") and
// opens a new one when the daemon has closed it. Its methods are safe for
// concurrent use (requests go one at a time).
type Client struct {
	path string
	// Timeout bounds each request (default 30 s: a close may wait up to
	// 10 s for processes to die).
	Timeout time.Duration

	mu    sync.Mutex
	nc    net.Conn
	br    *bufio.Reader
	fixed bool // the connection was handed over (NewClientConn): never redial
}

// maxAnswer bounds an answer's body.
const maxAnswer = 1 << 20

// Dial connects to the observer at socket path ("" means DefaultSocket).
func Dial(path string) (*Client, error) {
	if path == "" {
		path = DefaultSocket
	}
	c := &Client{path: path, Timeout: 30 * time.Second}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.connect(); err != nil {
		return nil, err
	}
	return c, nil
}

// NewClientConn returns a client that sends its requests over nc, an
// already connected socket, and never reconnects: the daemon takes the
// caller from whoever opened nc (see Run, which connects from the process
// that then becomes the command).
func NewClientConn(nc net.Conn) *Client {
	return &Client{nc: nc, br: bufio.NewReader(nc), fixed: true, Timeout: 30 * time.Second}
}

func (c *Client) connect() error {
	nc, err := net.DialTimeout("unix", c.path, 5*time.Second)
	if err != nil {
		return fmt.Errorf("unable to reach the observer at %s: %w", c.path, err)
	}
	c.nc, c.br = nc, bufio.NewReader(nc)
	return nil
}

// CloseIdleConnections closes the client's connection; the next request
// opens a new one.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nc != nil {
		c.nc.Close()
		if !c.fixed {
			c.nc = nil
		}
	}
}

// Sessions returns how many sessions the observer has open (GET /).
func (c *Client) Sessions() (int, error) {
	a, _, err := c.do(http.MethodGet, "", nil)
	if err != nil {
		return 0, err
	}
	if a.Sessions == nil {
		return 0, fmt.Errorf("unable to %s: the observer answered no sessions", verbOf(""))
	}
	return *a.Sessions, nil
}

// Open makes a session in the caller's cgroup; the caller stays outside.
func (c *Client) Open() (*Session, error) { return c.newSession("open", &Request{}) }

// Attach makes a session in the caller's cgroup and moves the caller in.
func (c *Client) Attach() (*Session, error) { return c.newSession("attach", &Request{}) }

// Adopt makes a session at cgroup path holding process pid (host root only).
func (c *Client) Adopt(pid int, path string, l spec.Limits) (*Session, error) {
	return c.newSession("adopt", &Request{Pid: &pid, Path: &path, Limits: &l})
}

func (c *Client) newSession(cmd string, req *Request) (*Session, error) {
	a, _, err := c.do(http.MethodPost, cmd, req)
	if err != nil {
		return nil, err
	}
	if a.SessionID == "" || a.Secret == "" {
		return nil, fmt.Errorf("unable to %s a session: the observer answered no session_id and secret", cmd)
	}
	return &Session{ID: a.SessionID, Secret: a.Secret}, nil
}

// AttachTo moves the caller into the session id.
func (c *Client) AttachTo(id, secret string) error { return c.simple("attach", id, secret) }

// Detach moves the caller back out of the session id.
func (c *Client) Detach(id, secret string) error { return c.simple("detach", id, secret) }

// Freeze stops every process of the session.
func (c *Client) Freeze(id, secret string) error { return c.simple("freeze", id, secret) }

// Thaw resumes them.
func (c *Client) Thaw(id, secret string) error { return c.simple("thaw", id, secret) }

// Kill kills every process of the session.
func (c *Client) Kill(id, secret string) error { return c.simple("kill", id, secret) }

// SetLimits applies limits to the session.
func (c *Client) SetLimits(id, secret string, l spec.Limits) error {
	_, _, err := c.do(http.MethodPost, "limits", &Request{SessionID: &id, Secret: secret, Limits: &l})
	return err
}

// Stats measures the session (or returns its final stats after a close).
func (c *Client) Stats(id, secret string) (spec.Stats, error) { return c.stats("stats", id, secret) }

// Close ends the session and returns its final stats.
func (c *Client) Close(id, secret string) (spec.Stats, error) { return c.stats("close", id, secret) }

func (c *Client) simple(cmd, id, secret string) error {
	_, _, err := c.do(http.MethodPost, cmd, &Request{SessionID: &id, Secret: secret})
	return err
}

// stats reads a stats answer: Kolejka's stats object with "status" added.
func (c *Client) stats(cmd, id, secret string) (spec.Stats, error) {
	_, body, err := c.do(http.MethodPost, cmd, &Request{SessionID: &id, Secret: secret})
	if err != nil {
		return spec.Stats{}, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return spec.Stats{}, fmt.Errorf("unable to %s: the observer answered %q: %v", cmd, observerwire.Clip(string(body)), err)
	}
	delete(fields, "status")
	b, err := json.Marshal(fields)
	if err != nil {
		return spec.Stats{}, err
	}
	return spec.ParseStats(b, "observer "+cmd+" answer")
}

// do sends one request and returns its answer, decoded and as sent. A
// request on a kept-alive connection that the daemon closed meanwhile (it
// said nothing at all) is sent again once on a new connection: the daemon
// closes connections only between requests, so the first one was never
// read.
func (c *Client) do(method, cmd string, params *Request) (*Answer, []byte, error) {
	var body []byte
	if params != nil {
		var err error
		if body, err = json.Marshal(params); err != nil {
			return nil, nil, err
		}
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s /%s HTTP/1.1\r\nHost: kolejka-observer\r\nConnection: keep-alive\r\n", method, cmd)
	if method == http.MethodPost {
		fmt.Fprintf(&req, "Content-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n", len(body))
	}
	req.WriteString("\r\n")
	req.Write(body)

	c.mu.Lock()
	defer c.mu.Unlock()
	for attempt := 0; ; attempt++ {
		fresh := false
		if c.nc == nil {
			if c.fixed {
				return nil, nil, fmt.Errorf("unable to %s: the observer closed the connection", verbOf(cmd))
			}
			if err := c.connect(); err != nil {
				return nil, nil, err
			}
			fresh = true
		}
		status, answer, keep, err := c.roundTrip(req.Bytes())
		if err != nil {
			c.nc.Close()
			if !c.fixed {
				c.nc = nil
			}
			var silent *silentClose
			if errors.As(err, &silent) && !fresh && !c.fixed && attempt == 0 {
				continue
			}
			return nil, nil, fmt.Errorf("unable to %s: %w", verbOf(cmd), err)
		}
		if !keep {
			c.nc.Close()
			if !c.fixed {
				c.nc = nil
			}
		}
		return decodeAnswer(cmd, status, answer)
	}
}

// silentClose is a connection that ended before any byte of the answer.
type silentClose struct{ err error }

func (e *silentClose) Error() string { return e.err.Error() }
func (e *silentClose) Unwrap() error { return e.err }

func (c *Client) roundTrip(req []byte) (int, []byte, bool, error) {
	_ = c.nc.SetDeadline(time.Now().Add(c.Timeout))
	if _, err := c.nc.Write(req); err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			return 0, nil, false, &silentClose{err}
		}
		return 0, nil, false, err
	}
	tp := textproto.NewReader(c.br)
	line, err := tp.ReadLine()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return 0, nil, false, &silentClose{err}
		}
		return 0, nil, false, err
	}
	proto, rest, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if err != nil || !strings.HasPrefix(proto, "HTTP/1.") {
		return 0, nil, false, fmt.Errorf("malformed answer %q", observerwire.Clip(line))
	}
	header, err := tp.ReadMIMEHeader()
	if err != nil {
		return 0, nil, false, err
	}
	n, err := strconv.ParseInt(header.Get("Content-Length"), 10, 64)
	if err != nil || n < 0 || n > maxAnswer {
		return 0, nil, false, fmt.Errorf("answer with Content-Length %q", header.Get("Content-Length"))
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.br, body); err != nil {
		return 0, nil, false, err
	}
	keep := observerwire.HasToken(header.Values("Connection"), "keep-alive") && !strings.HasPrefix(proto, "HTTP/1.0")
	return status, body, keep, nil
}

// decodeAnswer turns an answer into its fields and body, or into the error
// it reports, wrapping the sentinel that its "error" kind names.
func decodeAnswer(cmd string, status int, body []byte) (*Answer, []byte, error) {
	var a Answer
	jerr := json.Unmarshal(body, &a)
	if status == http.StatusOK {
		if jerr != nil {
			return nil, nil, fmt.Errorf("unable to %s: the observer answered %q: %v", verbOf(cmd), observerwire.Clip(string(body)), jerr)
		}
		return &a, body, nil
	}
	msg := a.Message
	if msg == "" {
		msg = http.StatusText(status)
	}
	sentinel := errorOfKind[a.Error]
	if sentinel == nil {
		return nil, nil, fmt.Errorf("observer answered %d: %s", status, msg)
	}
	msg = strings.TrimSuffix(msg, ": "+sentinel.Error())
	return nil, nil, fmt.Errorf("observer answered %d: %s: %w", status, msg, sentinel)
}

func verbOf(cmd string) string {
	if cmd == "" {
		return "ask the observer"
	}
	return cmd
}
