package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server/auth"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/spec"
)

// queueTasks puts n tasks straight into the store (the HTTP path would
// take minutes for 100k): one in ten requires a tag no node has, the rest
// ask for 1–2 cores, 64–512M and 10 s.
func queueTasks(b *testing.B, s *Server, owner int64, n int) {
	b.Helper()
	ctx := context.Background()
	for i := range n {
		var l spec.Limits
		spec.ParseLimit(&l, "cpus", fmt.Sprint(1+i%2))
		spec.ParseLimit(&l, "memory", fmt.Sprintf("%dM", 64<<(i%4)))
		spec.ParseLimit(&l, "time", "10s")
		t := &spec.Task{ID: auth.RandomKey(16), Image: "busybox", Args: []string{"true"}, Limits: l}
		if i%10 == 0 {
			t.Requires = []string{"gpu:nvidia"}
		}
		desc, err := t.Encode()
		if err != nil {
			b.Fatal(err)
		}
		lj, _ := l.MarshalJSON()
		if _, err := s.db.InsertTask(ctx, store.NewTask{Key: t.ID, Owner: owner, Description: desc, Limits: lj,
			Requires: t.Requires, Now: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDequeue100k: dequeue latency over loopback HTTP with 100k
// queued tasks, as p50/p99 custom metrics. "head-fits": the node can run
// every task and takes the oldest (the usual case), one or four at a time.
// "nothing-fits": the node fits no task, so the dequeue looks at the whole
// window (ScanWindow = 1000) and returns empty (the worst case).
// "head-fits-free-changes": head-fits whose free limits change at every
// dequeue, so that each writes the node's row too. Baseline in the same
// run: GET /settings/ (one authenticated request, no queue work); for
// scale, GET /queue/stats/ counts the 100k rows.
func BenchmarkDequeue100k(b *testing.B) {
	const queued = 100_000
	s, err := Open(Config{DataDir: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	s.AddUser(ctx, "client", "pw", Clients)
	s.AddUser(ctx, "node", "pw", Processors)
	tok, _ := s.NewToken(ctx, "node")
	owner, _ := s.db.UserByName(ctx, "client")
	start := time.Now()
	queueTasks(b, s, owner.ID, queued)
	b.Logf("queued %d tasks in %v", queued, time.Since(start))
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	hc := &http.Client{}
	post := func(path, body string) {
		req, _ := http.NewRequest("POST", ts.URL+path, bytes.NewReader([]byte(body)))
		if body == "" {
			req.Method = "GET"
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	measure := func(b *testing.B, path string, bodies ...string) {
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			t0 := time.Now()
			post(path, bodies[i%len(bodies)])
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	b.Run("baseline-settings", func(b *testing.B) { measure(b, "/settings/", "") })
	b.Run("stats", func(b *testing.B) { measure(b, "/queue/stats/", "") })
	b.Run("head-fits", func(b *testing.B) {
		measure(b, "/queue/dequeue/", `{"concurency": 1, "limits": {"cpus": 8, "memory": "16G"}, "tags": ["gpu:nvidia"]}`)
	})
	b.Run("head-fits-concurency-4", func(b *testing.B) {
		measure(b, "/queue/dequeue/", `{"concurency": 4, "limits": {"cpus": 8, "memory": "16G"}, "tags": ["gpu:nvidia"]}`)
	})
	// The node's free limits differ from its last dequeue's every time,
	// as a busy node's do: each dequeue also writes the node's row
	// (nodes.go), which head-fits (the same body again) writes only every
	// 5 s.
	b.Run("head-fits-free-changes", func(b *testing.B) {
		measure(b, "/queue/dequeue/", `{"concurency": 1, "limits": {"cpus": 8, "memory": "16G"}, "tags": ["gpu:nvidia"]}`,
			`{"concurency": 1, "limits": {"cpus": 7, "memory": "16G"}, "tags": ["gpu:nvidia"]}`)
	})
	b.Run("nothing-fits", func(b *testing.B) {
		measure(b, "/queue/dequeue/", `{"concurency": 1, "limits": {"memory": "1M"}, "tags": []}`)
	})
	st, _ := s.db.Stats(ctx)
	b.Logf("after: %d queued, %d assigned", st.Unassigned, st.Assigned)
}
