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
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/deadpeer"
)

// Proxy is a round-robin HTTP load balancer over server replicas, as an
// operator puts in front of them: each request goes to the next replica;
// one that refuses the connection (it is down) is skipped and the request
// sent to the next, which is safe because the refused one never saw it.
// A replica that dies while it holds a request answers 502: the client's
// own retries are what carry it on.
//
// A replica whose network is cut silently neither refuses nor resets:
// the proxy's connections to it time out instead. A dial gives up after
// dialTimeout; a request sent gets no answer and no ACK, and keepalive
// probes (an idle wait, such as a long poll's) or TCP_USER_TIMEOUT (data
// unacknowledged) end it in about deadPeer, with a 502. A backend that
// failed a dial is skipped for backendRest, as a real balancer's passive
// health check does, so that requests do not each wait for its dial.
type Proxy struct {
	*httptest.Server
	backends []*url.URL
	next     atomic.Uint64
	// rest[k] is when backend k, after a failed dial, is tried again (unix
	// nanoseconds).
	rest      []atomic.Int64
	transport http.RoundTripper
	// Served counts the answers each backend gave (not the proxy's 502s
	// for a backend that died holding a request).
	Served []atomic.Int64
	mu     sync.Mutex
	// sent[k] holds when the proxy sent each request backend k answered.
	sent [][]time.Time
}

// Answered counts backend k's answers to requests the proxy sent before
// t, and to those sent from t on. An answer read after a replica was cut
// off or killed may still be its last bytes received before that; one to
// a request sent afterwards may not.
func (p *Proxy) Answered(k int, t time.Time) (before, after int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.sent[k] {
		if s.Before(t) {
			before++
		} else {
			after++
		}
	}
	return before, after
}

// NewProxy starts a proxy on a free loopback port over backends
// ("host:port"). The caller closes it (after the processes that use it
// have stopped).
func NewProxy(t testing.TB, backends []string) *Proxy {
	p := &Proxy{Served: make([]atomic.Int64, len(backends)), rest: make([]atomic.Int64, len(backends)), sent: make([][]time.Time, len(backends))}
	p.transport = &http.Transport{
		DialContext:         deadPeerDialer().DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
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
	now := time.Now().UnixNano()
	for i := range n {
		k := (start + i) % n
		if i < n-1 && p.rest[k].Load() > now {
			continue // failed a dial a moment ago; the last one is tried regardless
		}
		refused, answered := false, false
		rp := &httputil.ReverseProxy{
			Transport: p.transport,
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
					p.rest[k].Store(time.Now().Add(backendRest).UnixNano())
					return
				}
				http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
			},
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		sent := time.Now()
		rp.ServeHTTP(w, r)
		if !refused {
			if answered {
				p.Served[k].Add(1)
				p.mu.Lock()
				p.sent[k] = append(p.sent[k], sent)
				p.mu.Unlock()
			}
			return
		}
	}
	http.Error(w, "proxy: every replica is down", http.StatusBadGateway)
}

const (
	dialTimeout = 2 * time.Second
	backendRest = 3 * time.Second
	// deadPeer is about how long a connection to a silent peer lasts:
	// keepalive probes from 1 s idle, 1 s apart, 3 unanswered; and as long
	// for data unacknowledged.
	deadPeer = 4 * time.Second
)

// deadPeerDialer dials with keepalives and TCP_USER_TIMEOUT that end a
// connection to a silent peer in about deadPeer: probes from 1 s idle,
// 1 s apart, 3 unanswered.
func deadPeerDialer() *net.Dialer {
	return deadpeer.Dialer(dialTimeout, time.Second, time.Second, int((deadPeer-time.Second)/time.Second))
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
