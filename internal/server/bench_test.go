package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

// benchClient is a keep-alive bearer client that does not use testing.T
// helpers on the hot path.
type benchClient struct {
	base, token string
	hc          *http.Client
}

func (c *benchClient) do(method, path string, body []byte) (map[string]any, []byte, error) {
	req, _ := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != 200 {
		return nil, b, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	var m map[string]any
	if resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, b, err
		}
		if m["status"] != "OK" {
			return nil, b, fmt.Errorf("%s %s: %s", method, path, b)
		}
	}
	return m, b, nil
}

// cycle is one full Kolejka round: upload the task's file, submit, dequeue
// as the node, upload the result's file, post the result, get the result
// as the owner (6 requests; timedCycle times each).
func cycle(client, node *benchClient, tag string, n int) error {
	return timedCycle(client, node, tag, n, make([]time.Duration, len(cycleSteps)))
}

func benchServer(b *testing.B, clients int, dir, database, synchronous string) (*server.Server, *httptest.Server, []*benchClient) {
	b.Helper()
	srv, err := server.Open(server.Config{DataDir: dir, Database: database, Synchronous: synchronous, Logger: testLogger(nil)})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	var out []*benchClient
	ctx := context.Background()
	for i := range clients {
		for _, who := range []struct {
			name string
			role server.Role
		}{{fmt.Sprintf("c%d", i), server.Clients}, {fmt.Sprintf("n%d", i), server.Processors}} {
			srv.AddUser(ctx, who.name, "pw", who.role)
			tok, _ := srv.NewToken(ctx, who.name)
			out = append(out, &benchClient{base: ts.URL + "/", token: tok, hc: &http.Client{Transport: tr}})
		}
	}
	b.Cleanup(func() { ts.Close(); srv.Close() })
	return srv, ts, out
}

// BenchmarkCycle: full cycles per second over loopback, one client and
// eight concurrent clients (each with its own node), with the data folder
// on disk (the real thing: every blob is fsynced with its folder before it
// is acknowledged) and, where /dev/shm exists, on tmpfs (fsync is free
// there: what is left is the server's own cost). The baseline, in the same
// run: a bare HTTP POST round trip to a handler that does nothing, over
// the same kind of loopback connection (a cycle is 6 requests).
func BenchmarkCycle(b *testing.B) {
	b.Run("baseline-bare-http-request", func(b *testing.B) {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"status": "OK"}`))
		}))
		defer ts.Close()
		c := &benchClient{base: ts.URL + "/", hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			if _, _, err := c.do("POST", "x", []byte(`{"a": 1}`)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
	})
	type variant struct {
		name string
		dir  func(b *testing.B) string
		db   func(b *testing.B) string // "": SQLite in dir
		sync string                    // SQLite's synchronous mode; "": the default
	}
	sqlite := func(*testing.B) string { return "" }
	disk := func(b *testing.B) string { return b.TempDir() }
	// disk-full: synchronous=FULL, where every commit waits for an fsync
	// and concurrent writes are group committed (store.go).
	variants := []variant{{"disk", disk, sqlite, ""}, {"disk-full", disk, sqlite, "FULL"}}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		tmpfs := func(b *testing.B) string {
			d, err := os.MkdirTemp("/dev/shm", "kolejka-bench-")
			if err != nil {
				b.Skip(err)
			}
			b.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
		// tmpfs-postgres: the blobs on tmpfs, the metadata in PostgreSQL
		// on loopback (pgtest's cluster, fsync off): against "tmpfs", what
		// PostgreSQL costs where neither database waits for a disk.
		variants = append(variants, variant{"tmpfs", tmpfs, sqlite, ""},
			variant{"tmpfs-postgres", tmpfs, func(b *testing.B) string { return pgtest.Database(b) }, ""})
	}
	for _, v := range variants {
		for _, clients := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/clients=%d", v.name, clients), func(b *testing.B) {
				benchCycles(b, clients, v.dir(b), v.db(b), v.sync)
			})
		}
	}
}

func benchCycles(b *testing.B, clients int, dir, database, synchronous string) {
	_, _, cs := benchServer(b, clients, dir, database, synchronous)
	b.ResetTimer()
	start := time.Now()
	cpu0 := processCPU()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range clients {
		n := b.N / clients
		if i < b.N%clients {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range n {
				if err := cycle(cs[2*i], cs[2*i+1], fmt.Sprintf("t%d", i), j); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "cycles/s")
	b.ReportMetric(float64(b.N*6)/el.Seconds(), "requests/s")
	// The CPU of this process (server and clients, user and system) per
	// cycle: on two cores, 2 s / this bounds the cycles per second.
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/cycle")
}

// processCPU is the user and system CPU time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
