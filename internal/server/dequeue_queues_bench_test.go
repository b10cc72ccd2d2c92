package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/queue"
	"github.com/kolejka-go/kolejka/internal/server/auth"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/spec"
)

// BenchmarkDequeue100kQueues: dequeue latency over loopback HTTP with 100k
// queued tasks spread over 10 named queues (10k each, submitted in turn,
// so every queue's tasks interleave), as p50/p99 custom metrics, against
// the one-queue figure measured in the same run (100k tasks in the default
// queue, a node asking for no queue: Kolejka's foreman). Tasks as
// BenchmarkDequeue100k's: one in ten requires a tag no node has.
//
//   - one-queue/*: the baseline, a second server with every task in the
//     default queue.
//   - ten-queues-all/*: a node serving all 10 queues, same priority: one
//     group, a k-way merge of 10 per-queue scans.
//   - ten-queues-one/*: a node serving one of the 10.
//   - ten-priorities-all/*: the 10 queues at 10 priorities, a node serving
//     all: 10 groups walked in turn.
//
// head-fits: the node can run every task and takes the oldest (concurency
// 1); nothing-fits: it fits no task, so the dequeue looks at the whole
// window (1000) and returns empty.
func BenchmarkDequeue100kQueues(b *testing.B) {
	const queued, nq = 100_000, 10
	names := make([]string, nq)
	for i := range names {
		names[i] = fmt.Sprintf("q%d", i)
	}
	one := benchServer(b, queued, nil, nil)
	ten := benchServer(b, queued, names, nil)
	prio := benchServer(b, queued, names, func(i int) int { return i })
	fits := func(queues []string) string {
		return dequeueBody(`{"concurency": 1, "limits": {"cpus": 8, "memory": "16G"}, "tags": ["gpu:nvidia"]`, queues)
	}
	nothing := func(queues []string) string {
		return dequeueBody(`{"concurency": 1, "limits": {"memory": "1M"}, "tags": []`, queues)
	}
	for _, c := range []struct {
		name   string
		bs     *benchGrid
		queues []string
	}{
		{"one-queue", one, nil},
		{"ten-queues-all", ten, names},
		{"ten-queues-one", ten, names[3:4]},
		{"ten-priorities-all", prio, names},
	} {
		b.Run(c.name+"/head-fits", func(b *testing.B) { c.bs.measure(b, fits(c.queues), 1) })
		b.Run(c.name+"/nothing-fits", func(b *testing.B) { c.bs.measure(b, nothing(c.queues), 0) })
	}
}

// dequeueBody is a dequeue request's JSON object (without its closing
// brace) with the queues key, if any, added and closed.
func dequeueBody(open string, queues []string) string {
	if len(queues) == 0 {
		return open + "}"
	}
	q, _ := json.Marshal(queues)
	return open + `, "queues": ` + string(q) + "}"
}

// benchGrid is a server over loopback HTTP with a node's token.
type benchGrid struct {
	ts  *httptest.Server
	tok string
	hc  *http.Client
}

// benchServer opens a server with n tasks queued straight into the store,
// in turn over queues (none: the default queue), each queue added with
// priority(i) (nil: 0).
func benchServer(b *testing.B, n int, queues []string, priority func(int) int) *benchGrid {
	b.Helper()
	s, err := Open(Config{DataDir: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	s.AddUser(ctx, "client", "pw", Clients)
	s.AddUser(ctx, "node", "pw", Processors)
	tok, _ := s.NewToken(ctx, "node")
	owner, _ := s.db.UserByName(ctx, "client")
	for i, q := range queues {
		p := 0
		if priority != nil {
			p = priority(i)
		}
		if err := s.AddQueue(ctx, queue.Queue{Name: q, Priority: p}); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	for i := range n {
		var l spec.Limits
		spec.ParseLimit(&l, "cpus", fmt.Sprint(1+i%2))
		spec.ParseLimit(&l, "memory", fmt.Sprintf("%dM", 64<<(i%4)))
		spec.ParseLimit(&l, "time", "10s")
		t := &spec.Task{ID: auth.RandomKey(16), Image: "busybox", Args: []string{"true"}, Limits: l}
		if i%10 == 0 {
			t.Requires = []string{"gpu:nvidia"}
		}
		q := spec.DefaultQueue
		if len(queues) > 0 {
			q = queues[i%len(queues)]
		}
		desc, err := t.Encode()
		if err != nil {
			b.Fatal(err)
		}
		lj, _ := l.MarshalJSON()
		if _, err := s.db.InsertTask(ctx, store.NewTask{Key: t.ID, Owner: owner.ID, Description: desc, Limits: lj,
			Requires: t.Requires, Queue: q, Now: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("queued %d tasks over %d queues in %v", n, max(len(queues), 1), time.Since(start))
	ts := httptest.NewServer(s.Handler())
	b.Cleanup(ts.Close)
	return &benchGrid{ts: ts, tok: tok, hc: &http.Client{}}
}

// measure posts body to /queue/dequeue/ b.N times, each answered with
// want tasks, and reports the latency's p50 and p99.
func (g *benchGrid) measure(b *testing.B, body string, want int) {
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		req, _ := http.NewRequest("POST", g.ts.URL+"/queue/dequeue/", bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer "+g.tok)
		resp, err := g.hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var a struct {
			Status  string            `json:"status"`
			Message string            `json:"message"`
			Tasks   []json.RawMessage `json:"tasks"`
		}
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if err != nil || a.Status != "OK" || len(a.Tasks) != want {
			b.Fatalf("dequeue: %v %s %s: %d tasks, want %d", err, a.Status, a.Message, len(a.Tasks), want)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
