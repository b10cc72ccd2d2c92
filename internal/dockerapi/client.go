// Package dockerapi is Kolejka's client of the Docker Engine API: the
// calls the docker runtime (worker/docker) and the foreman's image cache
// (internal/foreman) make, and nothing more. It owns the connection to the
// engine (DOCKER_HOST), the API version spoken, the mapping of the
// engine's error replies to errors, and the reading of the engine's
// streamed progress; the messages are the types of
// github.com/moby/moby/api/types, so calls stay typed without linking the
// moby client and its dependencies (otel, distribution, go-connections),
// whose package initialisation every worker start would pay for.
//
// Lifecycle:
//
//  1. FromEnv finds the engine as the docker command does (DOCKER_HOST,
//     by default unix:///var/run/docker.sock) and makes a Client; nothing
//     is sent yet.
//  2. The first call (or Ping, which the worker makes at once to fail
//     early) negotiates the API version: GET /_ping, whose API-Version
//     header is the highest version the engine serves; the client speaks
//     that, capped at MaxAPIVersion, the version the types were written
//     for. An engine older than MinAPIVersion is refused. DOCKER_API_VERSION
//     pins the version instead, as for the docker command.
//  3. Every call is one HTTP request bound to its context: cancelling the
//     context aborts it, also while a response streams. A reply of 400 or
//     more is an *Error, which errors.Is matches against containerd's
//     errdefs (ErrNotFound for 404, ErrConflict for 409, ...), as the moby
//     client's errors are.
//  4. Close releases idle connections.
package dockerapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/errdefs/pkg/errhttp"
	"github.com/moby/moby/api/types/common"
)

// DefaultHost is the engine's address when DOCKER_HOST is not set.
const DefaultHost = "unix:///var/run/docker.sock"

// API versions. The version is negotiated rather than pinned because no
// one version serves every engine in use: Docker 20.10 serves up to 1.41,
// Docker 29 refuses anything under 1.44. MaxAPIVersion is the version of
// the API types this module links (github.com/moby/moby/api); newer
// engines are spoken to in it. MinAPIVersion, Docker 19.03's, is the
// lowest the moby client accepts too: older engines lack the wait
// conditions and mount options the runtime relies on.
const (
	MaxAPIVersion = "1.56"
	MinAPIVersion = "1.40"
)

// Client talks to one Docker engine. It is safe for concurrent use.
type Client struct {
	host string // as given: for messages
	base string // scheme and authority of request URLs
	hc   *http.Client

	mu      sync.Mutex
	version string // negotiated or pinned; "" until then
}

// FromEnv makes a client of the engine named by the environment as the
// docker command reads it: DOCKER_HOST (unix:// or tcp://; default
// DefaultHost) and DOCKER_API_VERSION (a pinned version, no negotiation).
// TLS (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) is not supported and refused
// rather than ignored.
func FromEnv() (*Client, error) {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = DefaultHost
	}
	if os.Getenv("DOCKER_TLS_VERIFY") != "" || os.Getenv("DOCKER_CERT_PATH") != "" {
		return nil, fmt.Errorf("unable to use the Docker engine at DOCKER_HOST=%s: TLS (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) is not supported", host)
	}
	c, err := New(host)
	if err != nil {
		return nil, fmt.Errorf("unable to use DOCKER_HOST=%s: %w", host, err)
	}
	if v := os.Getenv("DOCKER_API_VERSION"); v != "" {
		if _, _, err := parseVersion(v); err != nil {
			return nil, fmt.Errorf("unable to use DOCKER_API_VERSION=%s: %w", v, err)
		}
		c.version = v
	}
	return c, nil
}

// New makes a client of the engine at host: unix:///path/to/socket or
// tcp://host:port (plain HTTP).
func New(host string) (*Client, error) {
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("unable to parse the engine's address %q: %w", host, err)
	}
	t := &http.Transport{DisableCompression: true}
	c := &Client{host: host, hc: &http.Client{Transport: t}}
	switch u.Scheme {
	case "unix":
		path := u.Path
		if path == "" {
			return nil, fmt.Errorf("unable to use the engine's address %q: no socket path", host)
		}
		t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		// Any name does: the socket is dialled whatever the URL says.
		c.base = "http://docker"
	case "tcp":
		if u.Host == "" || u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("unable to use the engine's address %q: want tcp://host:port", host)
		}
		c.base = "http://" + u.Host
	default:
		return nil, fmt.Errorf("unable to use the engine's address %q: only unix:// and tcp:// are supported", host)
	}
	return c, nil
}

// Host is the engine's address, as given.
func (c *Client) Host() string { return c.host }

// Close releases the client's idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// Ping checks that the engine answers and negotiates the API version, if
// that is not done yet.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.apiVersion(ctx)
	return err
}

// apiVersion is the version to speak, negotiated on first use: a failed
// negotiation is tried again by the next call.
func (c *Client) apiVersion(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version != "" {
		return c.version, nil
	}
	resp, err := c.send(ctx, http.MethodGet, "/_ping", nil, nil, nil)
	if err != nil {
		return "", err
	}
	defer drain(resp)
	v, err := negotiate(resp.Header.Get("API-Version"))
	if err != nil {
		return "", fmt.Errorf("unable to agree on an API version with the Docker engine at %s: %w", c.host, err)
	}
	c.version = v
	return v, nil
}

// negotiate is the version to speak to an engine that serves up to server.
func negotiate(server string) (string, error) {
	if server == "" {
		return "", errors.New("the engine did not say its API version")
	}
	if _, _, err := parseVersion(server); err != nil {
		return "", fmt.Errorf("the engine's API version: %w", err)
	}
	if versionLess(server, MinAPIVersion) {
		return "", fmt.Errorf("the engine serves API %s, older than %s (Docker 19.03)", server, MinAPIVersion)
	}
	if versionLess(MaxAPIVersion, server) {
		return MaxAPIVersion, nil
	}
	return server, nil
}

func parseVersion(v string) (major, minor int, err error) {
	a, b, ok := strings.Cut(v, ".")
	if ok {
		major, err = strconv.Atoi(a)
	}
	if ok && err == nil {
		minor, err = strconv.Atoi(b)
	}
	if !ok || err != nil || major < 0 || minor < 0 {
		return 0, 0, fmt.Errorf("%q is no API version (want MAJOR.MINOR)", v)
	}
	return major, minor, nil
}

// versionLess compares two versions that parseVersion accepts.
func versionLess(a, b string) bool {
	am, an, _ := parseVersion(a)
	bm, bn, _ := parseVersion(b)
	return am < bm || am == bm && an < bn
}

// Error is the engine's reply to a call it refused: its HTTP status and
// its message. errors.Is matches it against the errdefs error its status
// means (cerrdefs.IsNotFound, cerrdefs.IsConflict, ...).
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("the Docker engine answered %d: %s", e.Status, e.Message)
}

// Is maps the status to containerd's errdefs, as the engine maps its
// errors to statuses (errhttp.ToNative: 404 not found, 409 conflict, …).
func (e *Error) Is(target error) bool {
	return errors.Is(errhttp.ToNative(e.Status), target)
}

// maxErrorBody bounds the error reply read.
const maxErrorBody = 64 << 10

// call sends one versioned request and returns the response of a call
// the engine accepted; its body is the caller's to close. in is the body,
// JSON-encoded unless it is an io.Reader (then sent as a tar).
func (c *Client) call(ctx context.Context, method, path string, query url.Values, in any) (*http.Response, error) {
	v, err := c.apiVersion(ctx)
	if err != nil {
		return nil, err
	}
	var body io.Reader
	hdr := http.Header{}
	switch in := in.(type) {
	case nil:
	case io.Reader:
		body = in
		hdr.Set("Content-Type", "application/x-tar")
	default:
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("unable to encode the request to %s: %w", path, err)
		}
		body = bytes.NewReader(b)
		hdr.Set("Content-Type", "application/json")
	}
	return c.send(ctx, method, "/v"+v+path, query, hdr, body)
}

// send is one request; a refusal (status 400 or more) is an *Error.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, hdr http.Header, body io.Reader) (*http.Response, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("unable to make the request %s %s: %w", method, path, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("unable to %s %s: %w", method, path, ctx.Err())
		}
		return nil, fmt.Errorf("unable to reach the Docker engine at %s: %w", c.host, err)
	}
	if resp.StatusCode < 400 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{Status: resp.StatusCode}
	var er common.ErrorResponse
	if json.Unmarshal(b, &er) == nil && er.Message != "" {
		e.Message = er.Message
	} else {
		e.Message = strings.TrimSpace(string(b))
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return nil, e
}

// do is call whose JSON reply, if out is not nil, is decoded into out.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	resp, err := c.call(ctx, method, path, query, in)
	if err != nil {
		return err
	}
	defer drain(resp)
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("unable to decode the engine's reply to %s %s: %w", method, path, err)
	}
	return nil
}

// drain reads what is left of a body, so that its connection is reused,
// and closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	_ = resp.Body.Close()
}
