package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
)

// target is a callback receiver that fails while failing is set.
type target struct {
	ts      *httptest.Server
	failing atomic.Bool
	mu      sync.Mutex
	calls   int
	bodies  [][]byte
	got     chan struct{}
}

func newTarget(t *testing.T) *target {
	tg := &target{got: make(chan struct{}, 100)}
	tg.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		tg.mu.Lock()
		tg.calls++
		tg.mu.Unlock()
		if tg.failing.Load() {
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		tg.mu.Lock()
		tg.bodies = append(tg.bodies, body)
		tg.mu.Unlock()
		tg.got <- struct{}{}
	}))
	t.Cleanup(tg.ts.Close)
	return tg
}

func (tg *target) wait(t *testing.T) []byte {
	t.Helper()
	select {
	case <-tg.got:
	case <-time.After(10 * time.Second):
		t.Fatal("callback not delivered")
	}
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.bodies[len(tg.bodies)-1]
}

func callbackConfig(c *server.Config) {
	c.CallbackHosts = []string{"127.0.0.1"}
	c.CallbackBackoff = 20 * time.Millisecond
	c.CallbackMaxBackoff = 50 * time.Millisecond
	c.CallbackAttempts = 1000
}

func TestCallbackRefusedWithoutAllowList(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	a := e.tok("alice").postJSON("/task/task/", task(map[string]any{"callback_url": "http://127.0.0.1:9/cb"}))
	if a.status() != "FAIL" || !strings.Contains(a.message(), "callback_url") || !strings.Contains(a.message(), "no callback hosts") {
		t.Errorf("got %v", a)
	}
	if n := e.count("tasks"); n != 0 {
		t.Errorf("%d tasks stored", n)
	}
	st := mustOK(t, e.tok("alice").do("GET", "/settings/", nil))
	if strings.Contains(string(st.body), `"callbacks"`) {
		t.Errorf("settings announce callbacks: %s", st.body)
	}
}

func TestCallbackRetries(t *testing.T) {
	tg := newTarget(t)
	e := newEnv(t, callbackConfig)
	e.standardUsers()
	a, n := e.tok("alice"), e.tok("node")
	if r := a.postJSON("/task/task/", task(map[string]any{"callback_url": "http://evil.example.com/cb"})); r.status() != "FAIL" ||
		!strings.Contains(r.message(), "evil.example.com") {
		t.Errorf("foreign host: %v", r)
	}
	tg.failing.Store(true)
	key := a.submit(task(map[string]any{"callback_url": tg.ts.URL + "/done?x=1"}), nil)
	dequeue(t, n, map[string]any{})
	start := time.Now()
	mustOK(t, n.postJSON("/task/result/", map[string]any{"id": key, "result": 0}))
	if d := time.Since(start); d > time.Second {
		t.Errorf("result upload took %v: the callback must not block it", d)
	}
	// Let it fail a few times, then recover.
	waitFor(t, "failed attempts", func() bool {
		tg.mu.Lock()
		defer tg.mu.Unlock()
		return tg.calls >= 3
	})
	tg.failing.Store(false)
	body := tg.wait(t)
	var got struct {
		Task   map[string]any `json:"task"`
		Result map[string]any `json:"result"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("callback body %s: %v", body, err)
	}
	if got.Task["id"] != key || got.Result["id"] != key || got.Result["result"] != float64(0) {
		t.Errorf("callback body %s", body)
	}
	waitFor(t, "the outbox to empty", func() bool { return e.count("callbacks") == 0 })
}

// A pending callback survives a restart of the server.
func TestCallbackSurvivesRestart(t *testing.T) {
	tg := newTarget(t)
	tg.failing.Store(true)
	e := newEnv(t, callbackConfig)
	e.standardUsers()
	a, n := e.tok("alice"), e.tok("node")
	key := a.submit(task(map[string]any{"callback_url": tg.ts.URL + "/done"}), nil)
	dequeue(t, n, map[string]any{})
	mustOK(t, n.postJSON("/task/result/", map[string]any{"id": key, "result": 7}))
	waitFor(t, "a failed attempt", func() bool {
		tg.mu.Lock()
		defer tg.mu.Unlock()
		return tg.calls >= 1
	})
	e.stop()
	if n := e.count("callbacks"); n != 1 {
		t.Fatalf("outbox holds %d rows while the server is down", n)
	}
	tg.failing.Store(false)
	e.start()
	body := tg.wait(t)
	if !strings.Contains(string(body), key) {
		t.Errorf("callback body %s", body)
	}
	waitFor(t, "the outbox to empty", func() bool { return e.count("callbacks") == 0 })
}

// A task given an SE result by the server (its node vanished) gets its
// callback too, and callbacks are announced in /settings/.
func TestCallbackOnServerSE(t *testing.T) {
	tg := newTarget(t)
	e := newEnv(t, callbackConfig, shortLeases(100*time.Millisecond, 1))
	e.standardUsers()
	a, n := e.tok("alice"), e.tok("node")
	if st := mustOK(t, a.do("GET", "/settings/", nil)); !strings.Contains(string(st.body), `"callbacks"`) {
		t.Errorf("settings do not announce callbacks: %s", st.body)
	}
	key := a.submit(task(map[string]any{"callback_url": tg.ts.URL + "/se"}), nil)
	dequeue(t, n, map[string]any{"heartbeat": true})
	body := tg.wait(t) // the node never answers: SE after its one attempt
	var got struct {
		Result map[string]any `json:"result"`
	}
	json.Unmarshal(body, &got)
	if got.Result["id"] != key || got.Result["status"] != "SE" {
		t.Errorf("callback body %s", body)
	}
}
