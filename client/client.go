// Package client speaks Kolejka's server API: sessions, blobs, tasks,
// results and the queue. kolejka-client and kolejka-foreman use it. It
// works against our server and against an original Kolejka (Django)
// server: it uses our extensions (bearer tokens, long polling, heartbeats)
// only when the server's /settings/ announces them.
//
// Lifecycle: New (signs in and reads the settings), then any number of
// calls from any number of goroutines.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/deadpeer"
	"github.com/kolejka-go/kolejka/spec"
)

// Sentinel errors; every error of this package wraps one of them or is a
// *ServerError.
var (
	ErrConnect   = errors.New("cannot connect to the server")
	ErrLogin     = errors.New("login failed")
	ErrForbidden = errors.New("not allowed")
	ErrNotFound  = errors.New("not found")
	ErrProtocol  = errors.New("unexpected answer from the server")
	ErrIntegrity = errors.New("downloaded data does not match")
	// ErrUnsupported: the server does not offer the extension a call needs.
	ErrUnsupported = errors.New("not supported by the server")
	// ErrUnavailable: the server cannot take the request now (out of disk
	// space, 507; overloaded, 503): nothing was stored; try again later.
	ErrUnavailable = errors.New("the server cannot take it now")
	// ErrLocal: the local side of a request is wrong (a folder in the
	// way); nothing was sent or changed.
	ErrLocal = errors.New("bad local input")
)

// ServerError is a {"status": "FAIL"} answer, or a 413: the server
// refused the request and said why.
type ServerError struct {
	Path    string
	Message string
	// Status is the HTTP status: 200 for a FAIL answer, 413 for a body
	// over the server's cap (also when this client saw, before sending,
	// that it would be).
	Status int
	// kind is a sentinel the refusal also means (ErrNotFound for
	// Kolejka's "Task X is unknown", ErrCancelled for a cancelled task's
	// result), for errors.Is; nil for most.
	kind error
}

func (e *ServerError) Error() string { return e.Path + ": the server says: " + e.Message }

// Unwrap lets errors.Is see what the refusal means: ErrNotFound when the
// server says the task asked about is unknown.
func (e *ServerError) Unwrap() error { return e.kind }

// TooLarge reports whether err is a refusal of a body over the server's
// cap (413), or one this client made before sending it.
func TooLarge(err error) bool {
	var se *ServerError
	return errors.As(err, &se) && se.Status == http.StatusRequestEntityTooLarge
}

// unknownTask is the FAIL message of Kolejka's result view for a task that
// does not exist (ours keeps it: Kolejka's client depends on it).
var unknownTask = regexp.MustCompile(`^Task \S+ is unknown$`)

// failure makes the error of a FAIL answer.
func failure(path string, f *api.Failure) *ServerError {
	msg := f.Message
	if msg == "" {
		msg = "request refused"
	}
	se := &ServerError{Path: path, Message: msg, Status: http.StatusOK}
	switch {
	case f.Cancelled:
		se.kind = ErrCancelled
	case unknownTask.MatchString(msg):
		se.kind = ErrNotFound
	}
	return se
}

// Config is how to reach a server.
type Config struct {
	// Server is the base URL, possibly with a path prefix; without
	// http(s):// it means https://, as in Kolejka.
	Server string
	// Username and Password sign in with a session; Token (our extension)
	// is sent as a bearer token instead.
	Username, Password string
	Token              string
	// Limits cap every task this client submits (the client section's caps).
	Limits spec.Limits
	// HTTPClient is used for requests; its Jar is replaced. Default: a
	// client with sensible timeouts.
	HTTPClient *http.Client
	// Progress, if set, receives upload and download progress bars.
	Progress ProgressFunc
}

// Settings is the server's /settings/. A Kolejka server's leaves our keys
// empty ("" MaxResultBody: it does not say) and announces no extensions.
type Settings = api.Settings

// Client talks to one server. Safe for concurrent use.
type Client struct {
	cfg  Config
	base *url.URL
	hc   *http.Client

	mu       sync.Mutex
	settings Settings
}

// New signs in (when credentials are configured) and reads the settings.
func New(ctx context.Context, cfg Config) (*Client, error) {
	server := strings.TrimSpace(cfg.Server)
	if server == "" {
		return nil, fmt.Errorf("no server configured (set it in kolejka.conf, --server or KOLEJKA_SERVER): %w", ErrConnect)
	}
	if !strings.HasPrefix(server, "http://") && !strings.HasPrefix(server, "https://") {
		server = "https://" + server
	}
	base, err := url.Parse(strings.TrimRight(server, "/") + "/")
	if err != nil {
		return nil, fmt.Errorf("server %q: %v: %w", cfg.Server, err, ErrConnect)
	}
	hc := &http.Client{}
	if cfg.HTTPClient != nil {
		copy := *cfg.HTTPClient
		hc = &copy
	} else {
		hc.Transport = &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			// A server gone silent (its host lost, its network cut)
			// ends the request in about 30 s, to be retried, rather than
			// after the kernel's 15 min (data in flight) or 2 h (a long
			// poll waiting).
			DialContext:           deadpeer.Dialer(10*time.Second, 10*time.Second, 5*time.Second, 4).DialContext,
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	jar, _ := cookiejar.New(nil)
	hc.Jar = jar
	c := &Client{cfg: cfg, base: base, hc: hc}
	if cfg.Token == "" && cfg.Username != "" {
		if err := c.Login(ctx); err != nil {
			return nil, err
		}
	}
	if _, err := c.refreshSettings(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Settings returns the server's settings as read by New.
func (c *Client) Settings() Settings {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.settings
}

// URL is the server's base URL.
func (c *Client) URL() string { return c.base.String() }

func (c *Client) refreshSettings(ctx context.Context) (Settings, error) {
	var out api.SettingsAnswer
	if err := c.call(ctx, http.MethodGet, "settings/", nil, "", &out); err != nil {
		return out.Settings, err
	}
	c.mu.Lock()
	c.settings = out.Settings
	c.mu.Unlock()
	return out.Settings, nil
}

// Login signs in with the configured username and password, as Kolejka's
// client does: GET /logout/ for a csrftoken cookie, then POST /login/.
func (c *Client) Login(ctx context.Context) error {
	out, err := c.do(ctx, http.MethodGet, "logout/", nil, "")
	if err != nil {
		return err
	}
	// Only its csrftoken cookie matters. Read to the end, the answer gives
	// its connection back to the pool for the login; left open, it would
	// hold one connection per login for good.
	_, _ = io.Copy(io.Discard, io.LimitReader(out.Body, 64<<10))
	out.Body.Close()
	form := url.Values{"username": {c.cfg.Username}, "password": {c.cfg.Password}}
	resp, err := c.do(ctx, http.MethodPost, "login/", strings.NewReader(form.Encode()), "application/x-www-form-urlencoded")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := c.decode(resp, "login/", nil); err != nil {
		var se *ServerError
		if errors.As(err, &se) || errors.Is(err, ErrForbidden) {
			return fmt.Errorf("as %q: %v: %w", c.cfg.Username, err, ErrLogin)
		}
		return err
	}
	if c.cookie("sessionid") == "" {
		return fmt.Errorf("as %q: the server set no session: %w", c.cfg.Username, ErrLogin)
	}
	return nil
}

func (c *Client) cookie(name string) string {
	for _, ck := range c.hc.Jar.Cookies(c.base) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// do sends one request to path (relative to the base URL) with Kolejka's
// headers: Referer always, X-CSRFToken on mutating requests, or a bearer
// token when configured.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	return c.doHeader(ctx, method, path, body, contentType, nil)
}

// doHeader is do with header's fields added to the request (a webhook's
// Idempotency-Key).
func (c *Client) doHeader(ctx context.Context, method, path string, body io.Reader, contentType string, header http.Header) (*http.Response, error) {
	u := c.base.ResolveReference(&url.URL{Path: path})
	if i := strings.IndexByte(path, '?'); i >= 0 {
		u = c.base.ResolveReference(&url.URL{Path: path[:i], RawQuery: path[i+1:]})
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[http.CanonicalHeaderKey(k)] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if n, ok := body.(interface{ Len() int }); ok {
		req.ContentLength = int64(n.Len())
	}
	if sz, ok := body.(sizedReader); ok {
		req.ContentLength = sz.Size()
	}
	req.Header.Set("Referer", c.base.String())
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	} else if method != http.MethodGet && method != http.MethodHead {
		req.Header.Set("X-CSRFToken", c.cookie("csrftoken"))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s %s: %v: %w", method, u.Redacted(), err, ErrConnect)
	}
	return resp, nil
}

// sizedReader bodies know their length (uploads of files), so requests
// are not sent chunked.
type sizedReader interface {
	io.Reader
	Size() int64
}

// checkStatus maps an answer's HTTP status to this package's errors.
func checkStatus(resp *http.Response, path string) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	// Our server says why in a short plain-text body (Kolejka's says
	// nothing useful): keep it in the error.
	reason := ""
	if data, _ := io.ReadAll(io.LimitReader(resp.Body, 512)); len(data) > 0 && !bytes.HasPrefix(bytes.TrimSpace(data), []byte("<")) {
		reason = ": " + string(bytes.TrimSpace(data))
	}
	switch resp.StatusCode {
	case http.StatusForbidden:
		return fmt.Errorf("%s%s: %w", path, reason, ErrForbidden)
	case http.StatusNotFound:
		return fmt.Errorf("%s: %w", path, ErrNotFound)
	case http.StatusRequestEntityTooLarge:
		return &ServerError{Path: path, Message: "request too large" + reason, Status: resp.StatusCode}
	case http.StatusInsufficientStorage, http.StatusServiceUnavailable:
		return fmt.Errorf("%s%s: %w", path, reason, ErrUnavailable)
	}
	return fmt.Errorf("%s: HTTP %d%s: %w", path, resp.StatusCode, reason, ErrProtocol)
}

// call sends a request and decodes an OK answer into out (one of package
// api's answers, or nil).
func (c *Client) call(ctx context.Context, method, path string, body []byte, contentType string, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	return c.callReader(ctx, method, path, rd, contentType, out)
}

// callReader is call with a streamed body.
func (c *Client) callReader(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	resp, err := c.do(ctx, method, path, body, contentType)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return c.decode(resp, path, out)
}

// decode checks an answer and decodes it into out when it is OK.
func (c *Client) decode(resp *http.Response, path string, out any) error {
	if err := checkStatus(resp, path); err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s: %v: %w", path, err, ErrConnect)
	}
	var env api.Failure
	if err := json.Unmarshal(data, &env); err != nil {
		return fmt.Errorf("%s: %v: %w", path, err, ErrProtocol)
	}
	if !strings.EqualFold(env.Status, api.StatusOK) {
		return failure(path, &env)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s: %v: %w", path, err, ErrProtocol)
		}
	}
	return nil
}
