package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

// cycleSteps are the six requests of a cycle, timed one by one.
var cycleSteps = []string{"upload", "submit", "dequeue", "upload-result", "post-result", "get-result"}

// timedCycle is cycle with each request's time added to spent.
func timedCycle(client, node *benchClient, tag string, n int, spent []time.Duration) error {
	t := time.Now()
	lap := func(i int) {
		now := time.Now()
		spent[i] += now.Sub(t)
		t = now
	}
	m, _, err := client.do("POST", "blob/reference/", []byte(fmt.Sprintf("input %s %d", tag, n)))
	if err != nil {
		return err
	}
	lap(0)
	ref := m["reference"].(map[string]any)["key"].(string)
	body, _ := json.Marshal(map[string]any{"image": "busybox", "args": []string{"cat", "in"}, "requires": []string{tag},
		"limits": map[string]any{"memory": "64M", "time": "10s"}, "files": map[string]any{"in": map[string]any{"reference": ref}}})
	m, _, err = client.do("POST", "task/task/", body)
	if err != nil {
		return err
	}
	lap(1)
	key := m["task"].(map[string]any)["id"].(string)
	m, _, err = node.do("POST", "queue/dequeue/", []byte(`{"concurency": 1, "tags": ["`+tag+`"], "limits": {"memory": "8G"}}`))
	if err != nil {
		return err
	}
	lap(2)
	if ts := m["tasks"].([]any); len(ts) != 1 || ts[0].(map[string]any)["id"] != key {
		return fmt.Errorf("dequeue got %v, want %s", ts, key)
	}
	m, _, err = node.do("POST", "blob/reference/", []byte(fmt.Sprintf("output %s %d", tag, n)))
	if err != nil {
		return err
	}
	lap(3)
	out := m["reference"].(map[string]any)["key"].(string)
	body, _ = json.Marshal(map[string]any{"id": key, "result": 0, "status": "OK", "stdout": "out",
		"files": map[string]any{"out": map[string]any{"reference": out}}})
	if _, _, err = node.do("POST", "task/result/", body); err != nil {
		return err
	}
	lap(4)
	_, _, err = client.do("GET", "task/result/"+key+"/", nil)
	lap(5)
	return err
}

// BenchmarkReplicaCycle: full cycles per second with eight concurrent
// clients (each with its own node) on the scale-out backends, against the
// default (SQLite and the blob folder, one server) in the same run, with
// each request's mean time. The data folders are on disk; PostgreSQL
// (pgtest) runs without fsync and SeaweedFS (s3test) on loopback, so the
// figures are the servers' and backends' work, not a disk's. With three
// replicas client i and its node talk to replica i mod 3, as a round-robin
// balancer spreads connections.
func BenchmarkReplicaCycle(b *testing.B) {
	type backend struct {
		name     string
		replicas int
		cfg      func(b *testing.B) server.Config
	}
	pg := func(b *testing.B) server.Config { return server.Config{Database: pgtest.Database(b)} }
	pgS3 := func(b *testing.B) server.Config {
		bk := s3test.Start(b).Bucket(b)
		return server.Config{Database: pgtest.Database(b), Blobs: s3test.URL(bk), BlobsAccessKey: bk.AccessKey, BlobsSecretKey: bk.SecretKey}
	}
	for _, be := range []backend{
		{"sqlite+folder", 1, func(*testing.B) server.Config { return server.Config{} }},
		{"postgres+folder", 1, pg},
		{"postgres+s3", 1, pgS3},
		{"postgres+s3", 3, pgS3},
	} {
		b.Run(fmt.Sprintf("%s/replicas=%d", be.name, be.replicas), func(b *testing.B) {
			const clients = 8
			base := be.cfg(b)
			var urls []string
			var first *server.Server
			for range be.replicas {
				cfg := base
				cfg.DataDir = b.TempDir()
				cfg.Logger = testLogger(nil)
				srv, err := server.Open(cfg)
				if err != nil {
					b.Fatal(err)
				}
				ts := httptest.NewServer(srv.Handler())
				b.Cleanup(func() { ts.Close(); srv.Close() })
				urls = append(urls, ts.URL+"/")
				if first == nil {
					first = srv
				}
			}
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			ctx := context.Background()
			var cs []*benchClient
			for i := range clients {
				for _, who := range []struct {
					name string
					role server.Role
				}{{fmt.Sprintf("c%d", i), server.Clients}, {fmt.Sprintf("n%d", i), server.Processors}} {
					if err := first.AddUser(ctx, who.name, "pw", who.role); err != nil {
						b.Fatal(err)
					}
					tok, err := first.NewToken(ctx, who.name)
					if err != nil {
						b.Fatal(err)
					}
					cs = append(cs, &benchClient{base: urls[i%len(urls)], token: tok, hc: &http.Client{Transport: tr}})
				}
			}
			spent := make([][]time.Duration, clients)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i := range clients {
				spent[i] = make([]time.Duration, len(cycleSteps))
				n := b.N / clients
				if i < b.N%clients {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range n {
						if err := timedCycle(cs[2*i], cs[2*i+1], fmt.Sprintf("t%d", i), j, spent[i]); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			select {
			case err := <-errs:
				b.Fatal(err)
			default:
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "cycles/s")
			for k, step := range cycleSteps {
				var sum time.Duration
				for i := range clients {
					sum += spent[i][k]
				}
				b.ReportMetric(float64(sum.Microseconds())/1000/float64(b.N), step+"-ms")
			}
		})
	}
}
