package runc_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// BenchmarkWarmExecute: one worker in this process (as a foreman holds
// one) running the trivial task (/bin/true) cold (its container made for
// it) and warm (in a container prepared beforehand, untimed), alternating;
// medians of the wall time from Execute's call to the published result
// (Options.Published: when a foreman posts it) and to Execute's return
// (the container torn down). The result folder is Transient, as a
// foreman's is; a third run per round, warm with a durable result folder
// (the command line's), shows what the fsyncs cost
// (warm-durable-published-ms).
func BenchmarkWarmExecute(b *testing.B) {
	e := workertest.NewEnv(b, newRuntime(b))
	b.Cleanup(func() { _ = e.W.Close() })
	dir := b.TempDir()
	task := filepath.Join(dir, "task")
	if err := os.Mkdir(task, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := spec.WriteTask(task, &spec.Task{Image: "kolejka-test:latest", Args: []string{"/bin/true"}}); err != nil {
		b.Fatal(err)
	}
	t, err := spec.LoadTask(task)
	if err != nil {
		b.Fatal(err)
	}
	sh := e.W.TaskShape(t, worker.Options{})
	ctx := context.Background()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	run := func(i int, transient bool) (published, returned float64) {
		t0 := time.Now()
		var pub time.Duration
		res, err := e.W.Execute(ctx, task, filepath.Join(dir, fmt.Sprint("r", i)), worker.Options{
			Transient: transient, Published: func(*spec.Result) { pub = time.Since(t0) }})
		if err != nil || res.Status != spec.StatusOK {
			b.Fatalf("execute: %v %+v", err, res)
		}
		return ms(pub), ms(time.Since(t0))
	}
	n := max(b.N, 20)
	prepare := func() {
		b.StopTimer()
		if err := e.W.Prepare(ctx, sh); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	var cold, warm, coldPub, warmPub, durablePub []float64
	b.ResetTimer()
	for i := range n {
		p, r := run(3*i, true)
		coldPub, cold = append(coldPub, p), append(cold, r)
		prepare()
		p, r = run(3*i+1, true)
		warmPub, warm = append(warmPub, p), append(warm, r)
		prepare()
		p, _ = run(3*i+2, false)
		durablePub = append(durablePub, p)
	}
	b.StopTimer()
	if st := e.W.WarmStats(); st.Hits != int64(2*n) {
		b.Fatalf("warm stats %+v, want %d hits", st, 2*n)
	}
	b.ReportMetric(median(cold), "cold-ms")
	b.ReportMetric(median(warm), "warm-ms")
	b.ReportMetric(median(coldPub), "cold-published-ms")
	b.ReportMetric(median(warmPub), "warm-published-ms")
	b.ReportMetric(median(durablePub), "warm-durable-published-ms")
	b.ReportMetric(median(coldPub)/median(warmPub), "speedup")
}
