package server_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
)

func task(fields map[string]any) map[string]any {
	t := simpleTask()
	for k, v := range fields {
		t[k] = v
	}
	return t
}

func dequeue(t testing.TB, c *tokenClient, body map[string]any) []map[string]any {
	t.Helper()
	a := mustOK(t, c.postJSON("/queue/dequeue/", body))
	var out []map[string]any
	for _, x := range a.json["tasks"].([]any) {
		out = append(out, x.(map[string]any))
	}
	return out
}

func ids(ts []map[string]any) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t["id"].(string))
	}
	return out
}

func TestDequeueRules(t *testing.T) {
	t.Run("oldest first, requires ⊆ tags", func(t *testing.T) {
		e := newEnv(t)
		e.standardUsers()
		a, n := e.tok("alice"), e.tok("node")
		k1 := a.submit(task(map[string]any{"requires": []string{"gpu:nvidia"}}), nil)
		k2 := a.submit(task(nil), nil)
		k3 := a.submit(task(map[string]any{"requires": []string{"cpu:intel", "big"}}), nil)
		k4 := a.submit(task(map[string]any{"requires": []string{"cpu:intel"}}), nil)
		got := ids(dequeue(t, n, map[string]any{"concurency": 10, "tags": []string{"cpu:intel"}}))
		if !slices.Equal(got, []string{k2, k4}) {
			t.Errorf("got %v, want [%s %s]", got, k2, k4)
		}
		got = ids(dequeue(t, n, map[string]any{"concurency": 10, "tags": []string{"cpu:intel", "big", "gpu:nvidia"}}))
		if !slices.Equal(got, []string{k1, k3}) {
			t.Errorf("got %v, want [%s %s]", got, k1, k3)
		}
	})
	t.Run("never more than concurency", func(t *testing.T) {
		e := newEnv(t)
		e.standardUsers()
		a, n := e.tok("alice"), e.tok("node")
		for range 5 {
			a.submit(task(nil), nil)
		}
		if got := dequeue(t, n, map[string]any{"concurency": 2}); len(got) != 2 {
			t.Errorf("concurency 2 gave %d tasks (Kolejka gives 3)", len(got))
		}
		if got := dequeue(t, n, map[string]any{}); len(got) != 1 {
			t.Errorf("default concurency gave %d tasks", len(got))
		}
		if a := n.postJSON("/queue/dequeue/", map[string]any{"concurency": 0}); a.status() != "FAIL" {
			t.Errorf("concurency 0: %v", a)
		}
	})
	t.Run("fit and consume across one dequeue", func(t *testing.T) {
		e := newEnv(t)
		e.standardUsers()
		a, n := e.tok("alice"), e.tok("node")
		k1 := a.submit(task(map[string]any{"limits": map[string]any{"cpus": 2, "memory": "3G"}}), nil)
		k2 := a.submit(task(map[string]any{"limits": map[string]any{"cpus": 2, "memory": "3G"}}), nil)
		k3 := a.submit(task(map[string]any{"limits": map[string]any{"cpus": 1, "memory": "3G"}}), nil)
		k4 := a.submit(task(map[string]any{"limits": map[string]any{"cpus": 1, "memory": "1G"}}), nil)
		// 4 cores, 7G: k1 (2, 3G), k2 (2, 3G) → 0 cores left; k3, k4 do not fit.
		got := ids(dequeue(t, n, map[string]any{"concurency": 10, "limits": map[string]any{"cpus": 4, "memory": "7G"}}))
		if !slices.Equal(got, []string{k1, k2}) {
			t.Errorf("got %v, want [%s %s]", got, k1, k2)
		}
		// 3 cores, 3.5G: k3 takes 3G, k4 (1G) no longer fits memory.
		got = ids(dequeue(t, n, map[string]any{"concurency": 10, "limits": map[string]any{"cpus": 3, "memory": "3584M"}}))
		if !slices.Equal(got, []string{k3}) {
			t.Errorf("got %v, want [%s]", got, k3)
		}
		got = ids(dequeue(t, n, map[string]any{"concurency": 10, "limits": map[string]any{"cpus": 1, "memory": "1G"}}))
		if !slices.Equal(got, []string{k4}) {
			t.Errorf("got %v, want [%s]", got, k4)
		}
	})
	t.Run("exclusive", func(t *testing.T) {
		e := newEnv(t)
		e.standardUsers()
		a, n, n2 := e.tok("alice"), e.tok("node"), e.tok("node2")
		k1 := a.submit(task(nil), nil)
		kx := a.submit(task(map[string]any{"exclusive": true}), nil)
		k3 := a.submit(task(nil), nil)
		// One dequeue: k1, then the exclusive task is skipped (not alone), k3.
		got := ids(dequeue(t, n, map[string]any{"concurency": 5}))
		if !slices.Equal(got, []string{k1, k3}) {
			t.Fatalf("got %v, want [%s %s]", got, k1, k3)
		}
		// node holds tasks: no exclusive task for it, even alone.
		if got := dequeue(t, n, map[string]any{"concurency": 5}); len(got) != 0 {
			t.Errorf("busy node got %v", ids(got))
		}
		k4 := a.submit(task(nil), nil)
		// node2 holds nothing: the exclusive task, alone, though more was asked.
		got = ids(dequeue(t, n2, map[string]any{"concurency": 5}))
		if !slices.Equal(got, []string{kx}) {
			t.Fatalf("idle node got %v, want [%s]", got, kx)
		}
		// node2 holds an exclusive task: nothing more for it.
		if got := dequeue(t, n2, map[string]any{"concurency": 5}); len(got) != 0 {
			t.Errorf("node holding an exclusive task got %v", ids(got))
		}
		if got := ids(dequeue(t, n, map[string]any{"concurency": 5})); !slices.Equal(got, []string{k4}) {
			t.Errorf("got %v, want [%s]", got, k4)
		}
	})
	t.Run("omitted limits get the node's defaults", func(t *testing.T) {
		e := newEnv(t)
		e.standardUsers()
		a, n := e.tok("alice"), e.tok("node")
		k1 := a.submit(task(nil), nil) // no limits at all
		k2 := a.submit(task(map[string]any{"limits": map[string]any{"memory": "1G"}}), nil)
		got := dequeue(t, n, map[string]any{"concurency": 5,
			"limits":   map[string]any{"cpus": 4, "memory": "4G", "time": "60s"},
			"defaults": map[string]any{"cpus": 1, "memory": "512M"}})
		if !slices.Equal(ids(got), []string{k1, k2}) {
			t.Fatalf("got %v (Kolejka schedules neither: the node declares limits they omit)", ids(got))
		}
		l := got[0]["limits"].(map[string]any)
		if l["cpus"] != float64(1) || l["memory"] != "536870912b" || l["time"] != "60.0s" {
			t.Errorf("limits handed out = %v, want the defaults and the node's time", l)
		}
		// Without the node's defaults, the server's shipped ones apply (an
		// omitted memory no longer takes all that is free), and a node that
		// declares nothing still gets cpus, memory and time: Kolejka's
		// foreman reboots its node on a task without time.
		k3 := a.submit(task(nil), nil)
		k4 := a.submit(task(map[string]any{"limits": map[string]any{"memory": "3G"}}), nil)
		got = dequeue(t, n, map[string]any{"concurency": 5, "limits": map[string]any{"memory": "4G"}})
		if !slices.Equal(ids(got), []string{k3, k4}) {
			t.Fatalf("got %v, want [%s %s]", ids(got), k3, k4)
		}
		l = got[0]["limits"].(map[string]any)
		if l["memory"] != "1073741824b" || l["cpus"] != float64(1) || l["time"] != "3600.0s" {
			t.Errorf("limits handed out = %v, want the server's defaults cpus 1, memory 1G, time 1H", l)
		}
		k5 := a.submit(task(nil), nil)
		got = dequeue(t, n, map[string]any{"concurency": 5})
		if !slices.Equal(ids(got), []string{k5}) {
			t.Fatalf("got %v, want [%s]", ids(got), k5)
		}
		if l := got[0]["limits"].(map[string]any); l["memory"] != "1073741824b" || l["cpus"] != float64(1) || l["time"] != "3600.0s" {
			t.Errorf("a node that declares nothing got %v, want cpus, memory and time", l)
		}
		// A time default above the node's own maximum is lowered to it,
		// rather than keeping the task off the node for ever.
		k6 := a.submit(task(nil), nil)
		got = dequeue(t, n, map[string]any{"concurency": 5, "limits": map[string]any{"time": "10M"}})
		if !slices.Equal(ids(got), []string{k6}) || got[0]["limits"].(map[string]any)["time"] != "600.0s" {
			t.Errorf("got %v, want [%s] with time 600.0s", got, k6)
		}
	})
	t.Run("gpus like every other limit", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) { _ = spec.ParseLimit(&c.Limits, "memory", "2G") })
		e.standardUsers()
		a, n := e.tok("alice"), e.tok("node")
		kg := a.submit(task(map[string]any{"limits": map[string]any{"gpus": 1}}), nil)
		// The server has no GPU cap: the request is kept (Kolejka drops it).
		st := mustOK(t, a.do("GET", "/task/task/"+kg+"/", nil)).json["task"].(map[string]any)["limits"].(map[string]any)
		if st["gpus"] != float64(1) || st["memory"] != "2147483648b" {
			t.Fatalf("stored limits %v, want gpus 1 and the server's memory cap", st)
		}
		kc := a.submit(task(nil), nil)
		// A node with no GPU (Kolejka's foreman sends gpus: 0) gets only the CPU task.
		got := ids(dequeue(t, n, map[string]any{"concurency": 5, "limits": map[string]any{"gpus": 0}}))
		if !slices.Equal(got, []string{kc}) {
			t.Errorf("GPU-less node got %v, want [%s]", got, kc)
		}
		kc2 := a.submit(task(nil), nil)
		got2 := dequeue(t, n, map[string]any{"concurency": 5, "limits": map[string]any{"gpus": 2}})
		if !slices.Equal(ids(got2), []string{kg, kc2}) {
			t.Fatalf("GPU node got %v", ids(got2))
		}
		if g := got2[1]["limits"].(map[string]any)["gpus"]; g != float64(0) {
			t.Errorf("a task that asks for no GPU got gpus=%v", g)
		}
	})
	t.Run("network", func(t *testing.T) {
		e := newEnv(t)
		e.standardUsers()
		a, n := e.tok("alice"), e.tok("node")
		kn := a.submit(task(map[string]any{"limits": map[string]any{"network": true}}), nil)
		k := a.submit(task(nil), nil)
		got := dequeue(t, n, map[string]any{"concurency": 5, "limits": map[string]any{"network": false}})
		if !slices.Equal(ids(got), []string{k}) || got[0]["limits"].(map[string]any)["network"] != false {
			t.Errorf("offline node got %v", got)
		}
		if got := ids(dequeue(t, n, map[string]any{"concurency": 5, "limits": map[string]any{"network": true}})); !slices.Equal(got, []string{kn}) {
			t.Errorf("online node got %v", got)
		}
	})
	t.Run("scan window and queue timeout", func(t *testing.T) {
		clk := newClock()
		e := newEnv(t, withClock(clk), func(c *server.Config) {
			c.ScanWindow = 3
			c.QueueTimeout = 400 * time.Millisecond
			c.ExpiryInterval = 20 * time.Millisecond
		})
		e.standardUsers()
		a, n := e.tok("alice"), e.tok("node")
		var never []string
		for range 3 {
			never = append(never, a.submit(task(map[string]any{"requires": []string{"unobtainium"}}), nil))
		}
		clk.Advance(150 * time.Millisecond) // k times out later than they do
		k := a.submit(task(nil), nil)
		// The three tasks no node can take fill the window: k is not seen.
		if got := dequeue(t, n, map[string]any{"concurency": 5}); len(got) != 0 {
			t.Fatalf("outside the window: got %v", ids(got))
		}
		// The queue timeout gives them an SE result (k's has not come);
		// then k is handed out to the node waiting.
		taken := make(chan []string, 1)
		e.polling(func() { taken <- ids(dequeue(t, n, map[string]any{"concurency": 5, "wait": 30})) })
		clk.Advance(300 * time.Millisecond)
		if got := <-taken; !slices.Equal(got, []string{k}) {
			t.Fatalf("after the timeout got %v, want [%s]", got, k)
		}
		for _, key := range never {
			r := mustOK(t, a.do("GET", "/task/result/"+key+"/?wait=3", nil)).json["result"].(map[string]any)
			if r["status"] != "SE" {
				t.Errorf("timed-out task result = %v", r)
			}
		}
	})
}

// Server caps merge into every task: the field-wise minimum.
func TestServerCaps(t *testing.T) {
	e := newEnv(t, func(c *server.Config) {
		_ = spec.ParseLimit(&c.Limits, "memory", "1G")
		_ = spec.ParseLimit(&c.Limits, "time", "30s")
		_ = spec.ParseLimit(&c.Limits, "network", "false")
	})
	e.standardUsers()
	a := e.tok("alice")
	st := mustOK(t, a.do("GET", "/settings/", nil))
	if l := st.json["limits"].(map[string]any); l["memory"] != "1073741824b" || l["time"] != "30.0s" || l["network"] != false {
		t.Errorf("settings limits = %v", l)
	}
	for _, c := range []struct {
		limits map[string]any
		want   map[string]any
	}{
		{map[string]any{"memory": "2G", "time": "10s", "network": true}, map[string]any{"memory": "1073741824b", "time": "10.0s", "network": false}},
		{map[string]any{}, map[string]any{"memory": "1073741824b", "time": "30.0s", "network": false}},
		{map[string]any{"memory": "100M", "cpus": 2}, map[string]any{"memory": "104857600b", "time": "30.0s", "network": false, "cpus": float64(2)}},
	} {
		key := a.submit(task(map[string]any{"limits": c.limits}), nil)
		got := mustOK(t, a.do("GET", "/task/task/"+key+"/", nil)).json["task"].(map[string]any)["limits"].(map[string]any)
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("task %v: limits.%s = %v, want %v", c.limits, k, got[k], v)
			}
		}
	}
}

// 100 concurrent dequeuers never get the same task twice, and together
// get every task.
func TestConcurrentDequeue(t *testing.T) {
	e := newEnv(t)
	e.user("alice", server.Clients)
	const nodes, perNode, tasks = 10, 10, 300
	for i := range nodes {
		e.user(fmt.Sprintf("n%d", i), server.Processors)
	}
	a := e.tok("alice")
	want := map[string]bool{}
	for range tasks {
		want[a.submit(task(nil), nil)] = true
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for i := range nodes * perNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.tok(fmt.Sprintf("n%d", i%nodes))
			for {
				a := c.postJSON("/queue/dequeue/", map[string]any{"concurency": 1 + i%3})
				if a.code != 200 || a.status() != "OK" {
					t.Errorf("dequeue: %v", a)
					return
				}
				ts := a.json["tasks"].([]any)
				if len(ts) == 0 {
					return
				}
				mu.Lock()
				for _, x := range ts {
					seen[x.(map[string]any)["id"].(string)]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for k, n := range seen {
		if n != 1 {
			t.Errorf("task %s handed out %d times", k, n)
		}
		if !want[k] {
			t.Errorf("unknown task %s", k)
		}
	}
	if len(seen) != tasks {
		t.Errorf("%d of %d tasks handed out", len(seen), tasks)
	}
	st, _ := json.Marshal(mustOK(t, a.do("GET", "/queue/stats/", nil)).json)
	var stats struct {
		Assigned   int `json:"task_assigned_count"`
		Unassigned int `json:"task_unassigned_count"`
	}
	json.Unmarshal(st, &stats)
	if stats.Assigned != tasks || stats.Unassigned != 0 {
		t.Errorf("stats after: %s", st)
	}
}
