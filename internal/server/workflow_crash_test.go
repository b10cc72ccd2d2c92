package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

// kill -9 of the server in the middle of a run: a fan-out of 40 items
// then a final step, a node posting results as fast as it can against a
// server in another process, killed while results arrive, restarted on the
// same folder; the node posts the results of the tasks it held, and the
// tasks of a dequeue whose answer the kill cut off come back when their
// (short) lease ends. The run ends ok with every instance run exactly once to a
// result: none lost (the startup's advance queues what the crash left
// undone), none doubled (each advance is one transaction).
func TestWorkflowKill9(t *testing.T) {
	dir, tokens := crashFolder(t)
	ch := startChildAs(t, "server-short-lease", dir)
	as := func(name string) *tokenClient {
		return &tokenClient{t: t, base: ch.base, token: tokens[name], hc: &http.Client{Timeout: 10 * time.Second}}
	}
	items := make([]string, 40)
	for i := range items {
		items[i] = fmt.Sprint(i)
	}
	list, _ := json.Marshal(items)
	wf := `{"tasks": {"fan": {"task": "x", "items": ` + string(list) + `}, "sum": {"task": "x", "after": ["fan"]}}}`
	alice := as("alice")
	key := putRun(t, alice, wf, map[string]any{"x": wfTask(alice, []string{"x", "{item}"}, nil, nil)})

	// The node: dequeue and post, quietly failing once the server is gone.
	// What it took and has not posted it keeps, and posts first once the
	// server is back, as a foreman keeps its jobs through an outage.
	var posted atomic.Int64
	var heldMu sync.Mutex
	held := map[string]bool{}
	post := func(node *tokenClient, id string) bool {
		rb, _ := json.Marshal(map[string]any{"id": id, "result": 0, "status": "OK"})
		resp, err := node.hc.Post(node.base+"task/result/", "application/json", strings.NewReader(string(rb)))
		if err != nil {
			return false
		}
		resp.Body.Close()
		heldMu.Lock()
		delete(held, id)
		heldMu.Unlock()
		posted.Add(1)
		return true
	}
	work := func(node *tokenClient, stop <-chan struct{}) {
		heldMu.Lock()
		var before []string
		for id := range held {
			before = append(before, id)
		}
		heldMu.Unlock()
		for _, id := range before {
			if !post(node, id) {
				return
			}
		}
		for {
			select {
			case <-stop:
				return
			default:
			}
			body, _ := json.Marshal(map[string]any{"concurency": 5, "limits": map[string]any{}, "tags": []string{}})
			resp, err := node.hc.Post(node.base+"queue/dequeue/", "application/json", strings.NewReader(string(body)))
			if err != nil {
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var a struct {
				Tasks []struct {
					ID string `json:"id"`
				} `json:"tasks"`
			}
			if json.Unmarshal(b, &a) != nil {
				return
			}
			heldMu.Lock()
			for _, task := range a.Tasks {
				held[task.ID] = true
			}
			heldMu.Unlock()
			for _, task := range a.Tasks {
				if !post(node, task.ID) {
					return
				}
			}
		}
	}
	// Dequeue needs a bearer header: wrap the client's transport.
	nodeClient := func() *tokenClient {
		c := as("node")
		c.hc.Transport = bearer{token: tokens["node"]}
		return c
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); work(nodeClient(), stop) }()
	testenv.WaitFor(t, 30*time.Second, "15 results posted", func() bool { return posted.Load() >= 15 })
	ch.kill(t)
	close(stop)
	<-done
	t.Logf("killed after %d results posted", posted.Load())

	ch = startChildAs(t, "server-short-lease", dir)
	alice = as("alice")
	stop2 := make(chan struct{})
	done2 := make(chan struct{})
	// After the restart the node keeps at it until the run ends: a request
	// that fails on a loaded machine (a timeout) ends one round of work,
	// not the node.
	go func() {
		defer close(done2)
		for {
			work(nodeClient(), stop2)
			select {
			case <-stop2:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	testenv.WaitFor(t, 60*time.Second, "the run's end after the restart", func() bool {
		state, _ := runShow(t, alice, key)
		return state != "running"
	})
	close(stop2)
	<-done2
	state, inst := runShow(t, alice, key)
	if state != "ok" {
		t.Fatalf("run %s: %v", state, inst)
	}
	ch.kill(t)
	db := folderDB(t, dir, "mode=ro")
	defer db.Close()
	var tasks, distinct, ok int
	db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT step || ':' || item_index), SUM(CASE WHEN state = 2 THEN 1 ELSE 0 END) FROM tasks`).Scan(&tasks, &distinct, &ok)
	if tasks != 41 || distinct != 41 || ok != 41 {
		t.Errorf("%d tasks for %d instances, %d done: want 41 each (no instance lost or run twice)", tasks, distinct, ok)
	}
}

// bearer adds a bearer token to every request.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}
