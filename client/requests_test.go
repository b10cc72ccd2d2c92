package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
)

var update = flag.Bool("update", false, "rewrite ../api/testdata/requests/*.json from the client's current requests")

// requestsDir holds the golden requests: package api's tests marshal its
// message types against the same files.
var requestsDir = filepath.Join("..", "api", "testdata", "requests")

// recorder keeps the last JSON body the client sent to each path.
type recorder struct {
	mu     sync.Mutex
	bodies map[string][]byte
}

func (rc *recorder) wrap(hideExtensions bool) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Content-Type") == "application/json" {
				body, _ := io.ReadAll(r.Body)
				rc.mu.Lock()
				rc.bodies[r.URL.Path] = body
				rc.mu.Unlock()
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
			if !hideExtensions || !strings.HasSuffix(r.URL.Path, "/settings/") {
				h.ServeHTTP(w, r)
				return
			}
			// Kolejka's server announces no extensions.
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			var m map[string]any
			json.Unmarshal(rec.Body.Bytes(), &m)
			delete(m, "extensions")
			body, _ := json.Marshal(m)
			for k, v := range rec.Header() {
				if k != "Content-Length" {
					w.Header()[k] = v
				}
			}
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
}

func (rc *recorder) take(t *testing.T, path string) []byte {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	body, ok := rc.bodies[path]
	if !ok {
		t.Fatalf("no request to %s", path)
	}
	delete(rc.bodies, path)
	return body
}

// The queue's requests keep their bytes: each is sent once, to our
// server and to one that announces no extensions (as Kolejka's), and
// compared with its golden file.
func TestRequestsKeepTheirBytes(t *testing.T) {
	ctx := context.Background()
	got := map[string][]byte{}
	const unknown = "0123456789abcdef0123456789abcdef"
	cpus, mem, limit, all := int64(4), int64(2<<30), 10*time.Second, int64(8)

	rc := &recorder{bodies: map[string][]byte{}}
	g := startServer(t, rc.wrap(false))
	n := g.as(t, "node")
	if _, err := n.Dequeue(ctx, client.DequeueRequest{
		Concurrency: 2, Free: spec.Limits{CPUs: &cpus, Memory: &mem}, Tags: []string{"gpu", "fast"},
		Defaults: spec.Limits{Time: &limit}, Wait: 250 * time.Millisecond, Heartbeat: true, Capacity: spec.Limits{CPUs: &all},
	}); err != nil {
		t.Fatal(err)
	}
	got["dequeue"] = rc.take(t, "/queue/dequeue/")
	if _, _, err := n.Heartbeat(ctx, []string{unknown}); err != nil {
		t.Fatal(err)
	}
	got["heartbeat"] = rc.take(t, "/queue/heartbeat/")
	if _, _, err := n.Heartbeat(ctx, nil); err != nil {
		t.Fatal(err)
	}
	got["heartbeat-all"] = rc.take(t, "/queue/heartbeat/")
	if _, _, err := n.Release(ctx, []string{unknown}); err != nil {
		t.Fatal(err)
	}
	got["release"] = rc.take(t, "/queue/release/")

	plain := &recorder{bodies: map[string][]byte{}}
	k := startServer(t, plain.wrap(true))
	if _, err := k.as(t, "node").Dequeue(ctx, client.DequeueRequest{
		Concurrency: 1, Free: spec.Limits{CPUs: &cpus}, Defaults: spec.Limits{Time: &limit}, Wait: time.Second, Heartbeat: true,
		Capacity: spec.Limits{CPUs: &all},
	}); err != nil {
		t.Fatal(err)
	}
	got["dequeue-kolejka"] = plain.take(t, "/queue/dequeue/")

	testenv.Golden(t, requestsDir, got, *update, "request")
}
