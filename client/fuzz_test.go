package client_test

// A fuzz target for the client's decoders of the server's answers: a node
// (kolejka-foreman) and kolejka-client must survive a broken or hostile
// server, or a proxy in front of one. Whatever the answer, a call returns
// a result or an error that wraps one of the package's sentinels or is a
// *ServerError (the package's promise), and never panics.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/spec"
)

// answerServer answers /settings/ with a valid settings object (our
// extensions) and every other path with the answer set by the test.
type answerServer struct {
	mu     sync.Mutex
	code   int
	ctype  string
	body   []byte
	server *httptest.Server
}

func (a *answerServer) set(code int, ctype string, body []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.code, a.ctype, a.body = code, ctype, body
}

func (a *answerServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/settings/" {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"blob_hash_algorithm": "sha256", "limits": {}, "extensions": ["bearer", "heartbeat", "long_poll", "dequeue_defaults", "release"], "status": "OK"}`))
		return
	}
	a.mu.Lock()
	code, ctype, body := a.code, a.ctype, a.body
	a.mu.Unlock()
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(code)
	w.Write(body)
}

// wrapsSentinel reports whether err keeps the package's promise.
func wrapsSentinel(err error) bool {
	var se *client.ServerError
	if errors.As(err, &se) {
		return true
	}
	for _, s := range []error{client.ErrConnect, client.ErrLogin, client.ErrForbidden, client.ErrNotFound,
		client.ErrProtocol, client.ErrIntegrity, client.ErrUnsupported, client.ErrUnavailable, client.ErrLocal, context.DeadlineExceeded} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func FuzzServerAnswers(f *testing.F) {
	a := &answerServer{}
	a.server = httptest.NewServer(a)
	f.Cleanup(a.server.Close)
	c, err := client.New(context.Background(), client.Config{Server: a.server.URL, Token: "kt_fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []struct {
		call  uint8
		code  int
		ctype string
		body  string
	}{
		{0, 200, "application/json", `{"tasks": [{"id": "0123456789abcdef0123456789abcdef", "image": "x", "args": ["a"]}], "status": "OK"}`},
		{0, 200, "application/json", `{"tasks": [{"image": 5}], "status": "OK"}`},
		{0, 200, "application/json", `{"tasks": null, "status": "ok"}`},
		{1, 200, "application/json", `{"tasks": ["a"], "lost": ["b"], "lease": "60.0s", "status": "OK"}`},
		{2, 200, "application/json", `{"released": [1], "status": "OK"}`},
		{3, 200, "application/json", `{"result": {"id": "k", "result": 0, "status": "OK", "stats": {"time": "1s"}}, "status": "OK"}`},
		{3, 200, "application/json", `{"result": "", "status": "OK"}`},
		{4, 200, "application/json", `{"task": {"image": "x", "args": ["a"]}, "resolved": false, "attempts": 1, "assignee": "n", "status": "OK"}`},
		{5, 200, "application/json", `{"task_count": "x", "status": "OK"}`},
		{6, 200, "application/json", `{"task": {"image": "x", "args": ["a"]}, "resolved": "yes", "status": "OK"}`},
		{0, 200, "application/json", `{"status": "FAIL", "message": "no"}`},
		{0, 403, "text/plain", "not allowed"},
		{0, 502, "text/html", "<html>bad gateway</html>"},
		{0, 200, "text/html", "<html>a captive portal</html>"},
		{0, 302, "text/plain", ""},
	} {
		f.Add(seed.call, seed.code, seed.ctype, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, call uint8, code int, ctype string, body []byte) {
		if code < 200 || code > 599 || code == http.StatusSwitchingProtocols {
			code = 200 + (code%400+400)%400
		}
		a.set(code, ctype, body)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		const key = "0123456789abcdef0123456789abcdef"
		var err error
		switch call % 7 {
		case 0:
			var tasks []*spec.Task
			tasks, err = c.Dequeue(ctx, client.DequeueRequest{Concurrency: 2, Wait: time.Millisecond, Heartbeat: true})
			for _, x := range tasks {
				if x == nil {
					t.Fatal("Dequeue returned a nil task")
				}
			}
		case 1:
			_, _, err = c.Heartbeat(ctx, []string{key})
		case 2:
			_, _, err = c.Release(ctx, []string{key})
		case 3:
			var r *spec.Result
			r, err = c.Result(ctx, key, time.Millisecond)
			if err == nil && r == nil {
				t.Fatal("Result returned neither a result nor an error")
			}
		case 4:
			_, err = c.Task(ctx, key)
		case 5:
			_, err = c.Stats(ctx)
		case 6:
			_, err = c.TaskState(ctx, key)
		}
		if err != nil && !wrapsSentinel(err) {
			t.Fatalf("call %d, answer %d %q %q: error %v (%T) wraps none of the package's errors", call%7, code, ctype, body, err, err)
		}
	})
}
