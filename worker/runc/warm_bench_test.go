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
// medians of Execute's wall time, from the call to the published result.
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
	run := func(i int) float64 {
		t0 := time.Now()
		res, err := e.W.Execute(ctx, task, filepath.Join(dir, fmt.Sprint("r", i)), worker.Options{})
		if err != nil || res.Status != spec.StatusOK {
			b.Fatalf("execute: %v %+v", err, res)
		}
		return float64(time.Since(t0).Microseconds()) / 1000
	}
	n := max(b.N, 20)
	var cold, warm []float64
	b.ResetTimer()
	for i := range n {
		cold = append(cold, run(2*i))
		b.StopTimer()
		if err := e.W.Prepare(ctx, sh); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		warm = append(warm, run(2*i+1))
	}
	b.StopTimer()
	if st := e.W.WarmStats(); st.Hits != int64(n) {
		b.Fatalf("warm stats %+v, want %d hits", st, n)
	}
	b.ReportMetric(median(cold), "cold-ms")
	b.ReportMetric(median(warm), "warm-ms")
	b.ReportMetric(median(cold)/median(warm), "speedup")
}
