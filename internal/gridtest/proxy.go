package gridtest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"syscall"
	"testing"
)

// Proxy is a round-robin HTTP load balancer over server replicas, as an
// operator puts in front of them: each request goes to the next replica;
// one that refuses the connection (it is down) is skipped and the request
// sent to the next, which is safe because the refused one never saw it.
// A replica that dies while it holds a request answers 502: the client's
// own retries are what carry it on.
type Proxy struct {
	*httptest.Server
	backends []*url.URL
	next     atomic.Uint64
	// Served counts the answers each backend gave (not the proxy's 502s
	// for a backend that died holding a request).
	Served []atomic.Int64
}

// NewProxy starts a proxy on a free loopback port over backends
// ("host:port"). The caller closes it (after the processes that use it
// have stopped).
func NewProxy(t testing.TB, backends []string) *Proxy {
	p := &Proxy{Served: make([]atomic.Int64, len(backends))}
	for _, b := range backends {
		p.backends = append(p.backends, &url.URL{Scheme: "http", Host: b})
	}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.Listener.Addr().String() }

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	// The body is read once so that a request a down replica refused can
	// be sent again (test uploads are small).
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "proxy: unable to read the request", http.StatusBadGateway)
		return
	}
	n := len(p.backends)
	start := int(p.next.Add(1))
	for i := range n {
		k := (start + i) % n
		refused, answered := false, false
		rp := &httputil.ReverseProxy{
			ModifyResponse: func(*http.Response) error {
				answered = true
				return nil
			},
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(p.backends[k])
				pr.Out.Host = pr.In.Host
			},
			FlushInterval: -1, // server-sent events pass at once
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				if errors.Is(err, syscall.ECONNREFUSED) || isDialError(err) {
					refused = true
					return
				}
				http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
			},
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		rp.ServeHTTP(w, r)
		if !refused {
			if answered {
				p.Served[k].Add(1)
			}
			return
		}
	}
	http.Error(w, "proxy: every replica is down", http.StatusBadGateway)
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
