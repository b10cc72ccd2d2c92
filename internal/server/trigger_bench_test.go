package server_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// A webhook against the submission it stands for: POST /trigger/hook/
// (the scoped token's check, the request's dry run, the firing recorded
// with its task in one transaction) and POST /type/build/task/ (the same
// type rendered and submitted), in the same run, on the same server
// (go test -run '^$' -bench TriggerWebhook ./internal/server/).
func BenchmarkTriggerWebhook(b *testing.B) {
	e, alice, _ := newWorkflowEnv(b)
	mustOK(b, alice.postJSON("/type/", map[string]any{"name": "build", "type": map[string]any{
		"image": "busybox:latest", "args": []string{"echo", "{rev}"}, "params": map[string]any{"rev": map[string]any{}}}}))
	mustOK(b, alice.postJSON("/trigger/", map[string]any{"name": "hook", "kind": "request", "target": map[string]any{"type": "build"}}))
	tok, _, err := e.srv.NewScopedToken(b.Context(), "alice", "hook", 0)
	if err != nil {
		b.Fatal(err)
	}
	hook := &tokenClient{t: b, base: e.base, token: tok, hc: &http.Client{}}
	b.Run("webhook", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			mustOK(b, hook.postJSON("/trigger/hook/", map[string]any{"rev": fmt.Sprint(i)}))
		}
	})
	b.Run("type-task", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			mustOK(b, alice.postJSON("/type/build/task/", map[string]any{"params": map[string]any{"rev": fmt.Sprint(i)}}))
		}
	})
}

// A result trigger's reaction: from posting a result that fires a result
// trigger to a node holding the task it started (the result post, the
// trigger loop woken, the firing, a long-polling dequeue woken), against
// posting a plain result and dequeuing a task queued before, in the same
// run. Reported as p50/p99 in ms
// (go test -run '^$' -bench TriggerReaction -benchtime 1x ./internal/server/).
func BenchmarkTriggerReaction(b *testing.B) {
	for b.Loop() {
		fired, plain := triggerReaction(b)
		b.ReportMetric(ms(quantile(fired, .5)), "fired-p50-ms")
		b.ReportMetric(ms(quantile(fired, .99)), "fired-p99-ms")
		b.ReportMetric(ms(quantile(plain, .5)), "plain-p50-ms")
		b.ReportMetric(ms(quantile(plain, .99)), "plain-p99-ms")
	}
}

func triggerReaction(t testing.TB) (fired, plain []time.Duration) {
	_, alice, node := newWorkflowEnv(t)
	mustOK(t, alice.postJSON("/type/", map[string]any{"name": "src", "type": simpleTask()}))
	mustOK(t, alice.postJSON("/type/", map[string]any{"name": "dst", "type": simpleTask()}))
	mustOK(t, alice.postJSON("/trigger/", map[string]any{"name": "next", "kind": "result",
		"on": map[string]any{"type": "src"}, "target": map[string]any{"type": "dst"}}))
	const n = 200
	wait := func() []taken {
		a := mustOK(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1, "limits": map[string]any{}, "tags": []string{}, "wait": 10}))
		var out []taken
		for _, x := range a.json["tasks"].([]any) {
			d := x.(map[string]any)
			out = append(out, taken{key: d["id"].(string), desc: d})
		}
		return out
	}
	for range n {
		alice.postJSON("/type/src/task/", map[string]any{})
		src := wait()
		start := time.Now()
		mustOK(t, finish(t, node, src[0].key, "OK", nil))
		got := wait()
		fired = append(fired, time.Since(start))
		if len(got) != 1 {
			t.Fatalf("no fired task within 10 s")
		}
		mustOK(t, finish(t, node, got[0].key, "OK", nil))
	}
	for range n {
		alice.submit(simpleTask(), nil)
		alice.submit(simpleTask(), nil)
		first := wait()
		start := time.Now()
		mustOK(t, finish(t, node, first[0].key, "OK", nil))
		got := wait()
		plain = append(plain, time.Since(start))
		mustOK(t, finish(t, node, got[0].key, "OK", nil))
	}
	return fired, plain
}
