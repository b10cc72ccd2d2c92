package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// /metrics speaks Prometheus' text format with the series the operators
// need, counted from this server only.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	a, n := e.tok("alice"), e.tok("node")
	a.submit(task(nil), map[string][]byte{"in": []byte("12345")})
	a.submit(task(nil), nil)
	a.submit(task(nil), nil)
	dequeue(t, n, map[string]any{})
	resp, err := http.Get(e.base + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		"kolejka_queue_depth 2",
		`kolejka_tasks{state="unassigned"} 2`,
		`kolejka_tasks{state="assigned"} 1`,
		`kolejka_tasks{state="resolved"} 0`,
		"kolejka_blob_bytes 5",
		"kolejka_dequeue_duration_seconds_count 1",
		`kolejka_http_requests_total{code="200",route="/task/task/"} 3`,
		`kolejka_http_request_duration_seconds_bucket{route="/queue/dequeue/",le="+Inf"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Two servers in one process keep their own numbers.
	e2 := newEnv(t)
	resp, _ = http.Get(e2.base + "metrics")
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), `route="/task/task/"`) {
		t.Errorf("a fresh server reports another's requests")
	}
}
