package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
)

// BenchmarkLongPollWake: how long after an event is sent a long poll
// waiting for it answers (the pause hook says when it waits): "dequeue",
// a node's dequeue after a submission; "result", a client's result
// request after the node's post. Baseline in the same run: the event's own
// request, sent and answered (send-µs); wake-µs is from the same start to
// the poll's answer.
func BenchmarkLongPollWake(b *testing.B) {
	cfg := server.Config{DataDir: b.TempDir(), Logger: testLogger(nil)}
	paused := make(chan struct{}, 1)
	server.SetPauseHook(&cfg, func() {
		select {
		case paused <- struct{}{}:
		default:
		}
	})
	srv, err := server.Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	b.Cleanup(func() { ts.Close(); srv.Close() })
	ctx := context.Background()
	srv.AddUser(ctx, "client", "pw", server.Clients)
	srv.AddUser(ctx, "node", "pw", server.Processors)
	ctok, _ := srv.NewToken(ctx, "client")
	ntok, _ := srv.NewToken(ctx, "node")
	client := &benchClient{base: ts.URL + "/", token: ctok, hc: &http.Client{}}
	node := &benchClient{base: ts.URL + "/", token: ntok, hc: &http.Client{}}
	task := []byte(`{"image": "busybox", "args": ["true"], "limits": {"memory": "64M", "time": "10s"}}`)
	submit := func() (string, error) {
		m, _, err := client.do("POST", "task/task/", task)
		if err != nil {
			return "", err
		}
		return m["task"].(map[string]any)["id"].(string), nil
	}
	// measure runs poll in the background, sends the event once the poll
	// waits, and reports the averages.
	measure := func(b *testing.B, poll, event func(i int) error) {
		var send, wake time.Duration
		for i := range b.N {
			done := make(chan error, 1)
			go func() { done <- poll(i) }()
			select {
			case <-paused:
			case <-time.After(30 * time.Second):
				b.Fatal("the long poll does not wait")
			}
			t0 := time.Now()
			if err := event(i); err != nil {
				b.Fatal(err)
			}
			sent := time.Now()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			send += sent.Sub(t0)
			wake += time.Since(t0)
		}
		b.ReportMetric(float64(send.Microseconds())/float64(b.N), "send-µs")
		b.ReportMetric(float64(wake.Microseconds())/float64(b.N), "wake-µs")
	}
	b.Run("dequeue", func(b *testing.B) {
		measure(b, func(int) error {
			m, _, err := node.do("POST", "queue/dequeue/", []byte(`{"concurency": 1, "wait": 30}`))
			if err == nil && len(m["tasks"].([]any)) != 1 {
				err = fmt.Errorf("dequeue answered %v", m)
			}
			return err
		}, func(int) error {
			_, err := submit()
			return err
		})
	})
	b.Run("result", func(b *testing.B) {
		keys := make([]string, b.N)
		for i := range keys {
			var err error
			if keys[i], err = submit(); err != nil {
				b.Fatal(err)
			}
			if _, _, err := node.do("POST", "queue/dequeue/", []byte(`{"concurency": 1}`)); err != nil {
				b.Fatal(err)
			}
		}
		measure(b, func(i int) error {
			_, _, err := client.do("GET", "task/result/"+keys[i]+"/?wait=30", nil)
			return err
		}, func(i int) error {
			body, _ := json.Marshal(map[string]any{"id": keys[i], "result": 0, "status": "OK"})
			_, _, err := node.do("POST", "task/result/", body)
			return err
		})
	})
}
