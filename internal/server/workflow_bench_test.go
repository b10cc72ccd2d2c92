package server_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"
)

// Step hand-off: in a chain of 200 steps, the time from posting a step's
// result to holding its dependent's task (the result post, which advances
// the run before it answers, and one dequeue), against the same result
// post and dequeue of plain tasks queued before, in the same run. The
// dependent is there at the first dequeue after the result's answer: the
// run advanced before the node heard back. Reported as p50/p99 in ms
// (go test -run '^$' -bench WorkflowHandoff -benchtime 1x ./internal/server/).
func BenchmarkWorkflowHandoff(b *testing.B) {
	for b.Loop() {
		chain, plain := workflowHandoff(b)
		b.ReportMetric(ms(quantile(chain, .5)), "step-p50-ms")
		b.ReportMetric(ms(quantile(chain, .99)), "step-p99-ms")
		b.ReportMetric(ms(quantile(plain, .5)), "plain-p50-ms")
		b.ReportMetric(ms(quantile(plain, .99)), "plain-p99-ms")
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func quantile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))]
}

func workflowHandoff(t testing.TB) (chain, plain []time.Duration) {
	_, alice, node := newWorkflowEnv(t)
	const n = 200
	steps := map[string]any{"s0": map[string]any{"task": "x"}}
	for i := 1; i < n; i++ {
		steps[fmt.Sprintf("s%d", i)] = map[string]any{"task": "x", "after": []string{fmt.Sprintf("s%d", i-1)}}
	}
	wf, _ := json.Marshal(map[string]any{"tasks": steps})
	putRun(t, alice, string(wf), map[string]any{"x": wfTask(alice, []string{"x"}, nil, nil)})
	measure := func(what string) []time.Duration {
		got := take(t, node)
		var times []time.Duration
		for i := 1; i < n; i++ {
			if len(got) != 1 {
				t.Fatalf("%s %d: %d tasks at the first dequeue after the result, want 1", what, i, len(got))
			}
			start := time.Now()
			mustOK(t, finish(t, node, got[0].key, "OK", nil))
			got = take(t, node)
			times = append(times, time.Since(start))
		}
		mustOK(t, finish(t, node, got[0].key, "OK", nil))
		return times
	}
	chain = measure("step")
	// The same with plain tasks: n queued first, taken one at a time.
	for range n {
		alice.submit(simpleTask(), nil)
	}
	plainTake := func() []taken {
		a := mustOK(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1, "limits": map[string]any{}, "tags": []string{}}))
		var out []taken
		for _, x := range a.json["tasks"].([]any) {
			out = append(out, taken{key: x.(map[string]any)["id"].(string)})
		}
		return out
	}
	got := plainTake()
	for i := 1; i < n; i++ {
		start := time.Now()
		mustOK(t, finish(t, node, got[0].key, "OK", nil))
		got = plainTake()
		plain = append(plain, time.Since(start))
	}
	return chain, plain
}

// A 1 000-item fan-out: put, every task taken and its result posted by one
// node (the run advanced at each result), against the same 1 000 tasks
// submitted on their own, taken and posted, in the same run (go test
// -run '^$' -bench WorkflowFanOut1000 -benchtime 1x ./internal/server/).
func BenchmarkWorkflowFanOut1000(b *testing.B) {
	for b.Loop() {
		put, run, plain := workflowFanOut1000(b)
		b.ReportMetric(put.Seconds(), "put-s")
		b.ReportMetric(run.Seconds(), "fanout-s")
		b.ReportMetric(plain.Seconds(), "plain-s")
	}
}

func workflowFanOut1000(t testing.TB) (put, run, plain time.Duration) {
	_, alice, node := newWorkflowEnv(t)
	items := make([]string, 1000)
	for i := range items {
		items[i] = fmt.Sprint(i)
	}
	wf, _ := json.Marshal(map[string]any{"tasks": map[string]any{"f": map[string]any{"task": "x", "items": items}}})
	drain := func() int {
		n := 0
		for {
			got := take(t, node)
			if len(got) == 0 {
				return n
			}
			for _, g := range got {
				mustOK(t, finish(t, node, g.key, "OK", nil))
				n++
			}
		}
	}
	start := time.Now()
	key := putRun(t, alice, string(wf), map[string]any{"x": wfTask(alice, []string{"x", "{item}"}, nil, nil)})
	put = time.Since(start)
	if n := drain(); n != 1000 {
		t.Fatalf("%d tasks ran, want 1000", n)
	}
	run = time.Since(start)
	if state, _ := runShow(t, alice, key); state != "ok" {
		t.Fatalf("run %s", state)
	}
	start = time.Now()
	for range 1000 {
		alice.submit(simpleTask(), nil)
	}
	if n := drain(); n != 1000 {
		t.Fatalf("%d plain tasks ran, want 1000", n)
	}
	plain = time.Since(start)
	return put, run, plain
}
