package e2e

// Benchmarks of the grid with real processes (results and commands in
// BENCHMARKS.md). Each measures its baseline in the same run: the same
// task run on this machine with no grid (`kolejka-worker execute`, or a
// worker in this process).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/runtimes"
)

const trivialTask = `{"image": "kolejka-test:latest", "args": ["true"], "limits": {"time": "10s"}}`

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// timed runs fn n times and returns the sorted durations.
func timed(b *testing.B, n int, fn func(i int)) []time.Duration {
	ds := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		fn(i)
		ds[i] = time.Since(start)
	}
	slices.Sort(ds)
	return ds
}

// workerExecute runs the task with kolejka-worker on this machine (the
// baseline: the same container, no grid).
func workerExecute(b *testing.B, g *grid, task, result string) {
	conf := filepath.Join(g.Dir, "worker.conf")
	if _, err := os.Stat(conf); err != nil {
		os.WriteFile(conf, []byte(fmt.Sprintf("[worker]\nimages = %s\ntemp = %s\noutput_limit = %d\n", gridtest.Images(b), b.TempDir(), OutputLimit)), 0o644)
	}
	cmd := exec.Command(filepath.Join(g.Bin, "kolejka-worker"), "--config-file", conf, "execute", task, result)
	cmd.Env = gridtest.ChildEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("kolejka-worker execute: %v: %s", err, out)
	}
}

// `kolejka-client execute` of a trivial task (true in the test image, runc)
// on an idle one-node grid, the whole command timed: p50 and p90 over at
// least 30 runs, with the node's containers made for each task (cold) and
// prepared ahead (warm = 2). Baselines: kolejka-worker execute of the same
// task (the container alone), and kolejka-client task put (the client's
// start, its settings request and the submission).
func BenchmarkGridExecuteTrivial(b *testing.B) {
	for _, v := range []struct{ name, warm string }{{"cold", "warm = 0"}, {"warm", "warm = 2"}} {
		b.Run(v.name, func(b *testing.B) { benchGridExecuteTrivial(b, v.warm) })
	}
}

func benchGridExecuteTrivial(b *testing.B, warm string) {
	g := newGrid(b)
	g.startForeman("a", "", warm)
	task := gridtest.WriteTask(b, trivialTask)
	ctx := context.Background()
	execute := func(int) { g.execute(b, task) }
	for i := range 3 { // warm: page cache, image, connections
		execute(i)
	}
	n := max(b.N, 30)
	b.ResetTimer()
	grid := timed(b, n, execute)
	b.StopTimer()
	local := timed(b, n, func(i int) { workerExecute(b, g, task, filepath.Join(b.TempDir(), fmt.Sprint("w", i))) })
	parked := gridtest.WriteTask(b, `{"image": "kolejka-test:latest", "args": ["true"], "requires": ["nowhere"]}`)
	submit := timed(b, n, func(int) {
		if _, errOut, code := g.KolejkaClient(ctx, "task", "put", parked); code != 0 {
			b.Fatalf("task put: exit %d: %s", code, errOut)
		}
	})
	// The same with a password: Kolejka's session login, argon2id on the server.
	withLogin := timed(b, 10, func(int) {
		if _, errOut, code := g.KolejkaClient(ctx, "--token", "", "--username", "alice", "--password", "alice-password", "task", "put", parked); code != 0 {
			b.Fatalf("task put with a password: exit %d: %s", code, errOut)
		}
	})
	node := nodeTimes(b, g.Nodes["a"].Log)
	b.ReportMetric(ms(percentile(grid, 0.5)), "p50-ms")
	b.ReportMetric(ms(percentile(grid, 0.9)), "p90-ms")
	b.ReportMetric(ms(percentile(node, 0.5)), "node-p50-ms")
	b.ReportMetric(ms(percentile(local, 0.5)), "worker-p50-ms")
	b.ReportMetric(ms(percentile(submit, 0.5)), "taskput-p50-ms")
	b.ReportMetric(ms(percentile(withLogin, 0.5)), "taskput-login-p50-ms")
	b.Logf("%d runs: grid execute p50 %.1f ms p90 %.1f ms max %.1f ms; on the node (taken → posted) p50 %.1f ms; "+
		"kolejka-worker execute p50 %.1f ms p90 %.1f ms; kolejka-client task put p50 %.1f ms (with a password login: %.1f ms)",
		n, ms(percentile(grid, 0.5)), ms(percentile(grid, 0.9)), ms(grid[len(grid)-1]), ms(percentile(node, 0.5)),
		ms(percentile(local, 0.5)), ms(percentile(local, 0.9)), ms(percentile(submit, 0.5)), ms(percentile(withLogin, 0.5)))
}

// nodeTimes reads, from a foreman's log, how long each task spent on the
// node: from "task taken" to "result posted" (inputs, container, upload).
func nodeTimes(b *testing.B, log string) []time.Duration {
	taken := map[string]time.Time{}
	var out []time.Duration
	for _, line := range gridtest.LogLines(log, "task=") {
		var at time.Time
		var key string
		for _, f := range strings.Fields(line) {
			// The first time= and task= fields are the record's (limits
			// quote a time= of their own further on).
			if v, ok := strings.CutPrefix(f, "time="); ok && at.IsZero() {
				at, _ = time.Parse(time.RFC3339Nano, v)
			}
			if v, ok := strings.CutPrefix(f, "task="); ok && key == "" {
				key = v
			}
		}
		switch {
		case strings.Contains(line, `msg="task taken"`):
			taken[key] = at
		case strings.Contains(line, `msg="result posted"`):
			if t0, ok := taken[key]; ok {
				out = append(out, at.Sub(t0))
			}
		}
	}
	if len(out) == 0 {
		b.Fatalf("no task timings in %s", log)
	}
	slices.Sort(out)
	return out
}

// 500 trivial tasks submitted at once (16 submitters through the client
// library) to two nodes (each offering both cores, 2 tasks at a time),
// timed from the first submission to the last result: tasks/s. Baseline:
// the same task run by one worker (package worker, in this process, as a
// foreman runs it) 4 at a time: the containers alone.
func BenchmarkGridThroughput500(b *testing.B) {
	const tasks, submitters = 500, 16
	g := newGrid(b)
	g.startForeman("a", "")
	g.startForeman("b", "")
	task := gridtest.WriteTask(b, trivialTask)
	ctx := context.Background()
	var rates []float64
	for range b.N {
		keys := make(chan string, tasks)
		errs := make(chan error, 2*submitters)
		todo := make(chan struct{}, tasks)
		for range tasks {
			todo <- struct{}{}
		}
		close(todo)
		var wg sync.WaitGroup
		start := time.Now()
		for range submitters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl, err := client.New(ctx, client.Config{Server: "http://" + g.Addr, Token: g.Tokens["alice"]})
				if err != nil {
					errs <- err
					return
				}
				for range todo {
					st, err := cl.TaskPut(ctx, task, spec.Limits{})
					if err != nil {
						errs <- err
						return
					}
					keys <- st.ID
				}
			}()
		}
		go func() { wg.Wait(); close(keys) }()
		var rg sync.WaitGroup
		var mu sync.Mutex
		done := 0
		for range submitters {
			rg.Add(1)
			go func() {
				defer rg.Done()
				for k := range keys {
					r, err := g.Alice.Result(ctx, k, time.Minute)
					for errors.Is(err, client.ErrNotFound) {
						r, err = g.Alice.Result(ctx, k, time.Minute)
					}
					if err != nil {
						errs <- err
						return
					}
					if r.Status != spec.StatusOK {
						errs <- fmt.Errorf("task %s: %s", k, r.Status)
						return
					}
					mu.Lock()
					done++
					mu.Unlock()
				}
			}()
		}
		rg.Wait()
		elapsed := time.Since(start)
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		if done != tasks {
			b.Fatalf("%d results of %d tasks", done, tasks)
		}
		rates = append(rates, float64(done)/elapsed.Seconds())
		b.Logf("%d tasks in %v: %.1f tasks/s", done, elapsed.Round(time.Millisecond), float64(done)/elapsed.Seconds())
	}
	b.StopTimer()
	// Baseline: the container alone — one worker in this process (as a
	// foreman holds one), 4 tasks at a time, 200 tasks.
	const local = 200
	rt, err := runtimes.Open("runc", runtimes.Options{ImageRoot: gridtest.Images(b)})
	if err != nil {
		b.Fatal(err)
	}
	w, err := worker.New(ctx, worker.Config{Temp: b.TempDir(), OutputLimit: OutputLimit,
		InitPath: filepath.Join(g.Bin, "kolejka-init"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, rt)
	if err != nil {
		b.Fatal(err)
	}
	localRate := parallel(local, 4, func(i int) {
		r, err := w.Execute(ctx, task, filepath.Join(b.TempDir(), fmt.Sprint("w", i)), worker.Options{})
		if err != nil || r.Status != spec.StatusOK {
			b.Errorf("worker: %v %v", r, err)
		}
	})
	slices.Sort(rates)
	b.ReportMetric(rates[len(rates)/2], "tasks/s")
	b.ReportMetric(localRate, "worker-tasks/s")
	w.Sweep(ctx)
	b.Logf("grid %.1f tasks/s (median of %d); one worker, 4 at a time: %.1f tasks/s", rates[len(rates)/2], len(rates), localRate)
}
