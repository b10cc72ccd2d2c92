package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
)

// A node's Dequeue sends the queues it serves; against a server without
// named queues it refuses any but the default one rather than take the
// default queue's tasks unasked.
func TestDequeueQueues(t *testing.T) {
	hide := false
	g := startServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !hide || !strings.HasSuffix(r.URL.Path, "/settings/") {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			var m map[string]any
			json.Unmarshal(rec.Body.Bytes(), &m)
			delete(m, "extensions")
			body, _ := json.Marshal(m)
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		})
	})
	ctx := context.Background()
	if err := g.srv.AddQueue(ctx, server.Queue{Name: "batch"}); err != nil {
		t.Fatal(err)
	}
	alice := g.as(t, "alice")
	put := func(queue string) string {
		t.Helper()
		task, err := alice.TaskPut(ctx, writeTask(t, `{"image": "busybox", "args": ["true"], "queue": "`+queue+`"}`, nil), spec.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		return task.ID
	}
	def, batch := put("default"), put("batch")
	n := g.as(t, "node")
	tasks, err := n.Dequeue(ctx, client.DequeueRequest{Concurrency: 2, Queues: []string{"batch"}})
	if err != nil || len(tasks) != 1 || tasks[0].ID != batch || tasks[0].Queue != "batch" {
		t.Fatalf("dequeue from batch: %v %v; want %s", tasks, err, batch)
	}

	hide = true
	n = g.as(t, "node")
	if _, err := n.Dequeue(ctx, client.DequeueRequest{Concurrency: 2, Queues: []string{"batch"}}); !errors.Is(err, client.ErrUnsupported) {
		t.Errorf("named queue on a server without them: %v", err)
	}
	tasks, err = n.Dequeue(ctx, client.DequeueRequest{Concurrency: 2, Queues: []string{"default"}})
	if err != nil || len(tasks) != 1 || tasks[0].ID != def {
		t.Errorf("the default queue on a server without named queues: %v %v; want %s", tasks, err, def)
	}
}
