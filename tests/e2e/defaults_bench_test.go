package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/testenv"
)

// BenchmarkGridDefaultNode: a node as kolejka-foreman's defaults make it
// on this machine — concurrency 8, more slots than its two cores, and
// warm = 1 — where the other grid benchmarks pin concurrency to 2. 120
// trivial tasks through `kolejka-client execute`, 8 clients at a time,
// against Debian's bare `runc run` of /bin/true two at a time, with the
// machine's CPU per task (parallelCPU). One round whatever b.N
// (-benchtime 1x).
func BenchmarkGridDefaultNode(b *testing.B) {
	runcBin, err := exec.LookPath("runc")
	if err != nil {
		testenv.Missing(b, "Debian's runc for the baseline (apt-get install runc)")
	}
	g := newGrid(b)
	g.startForeman("a", "", "concurency = 8") // the last value wins: kolejka-foreman's default
	task := gridtest.WriteTask(b, `{"image": "kolejka-test:latest", "args": ["true"], "limits": {"time": "10s"}}`)
	ctx := context.Background()
	execute := func(i int) {
		dir := filepath.Join(b.TempDir(), fmt.Sprint("r", i))
		if _, errOut, code := g.KolejkaClient(ctx, "execute", task, dir); code != 0 {
			b.Fatalf("execute: exit %d: %s", code, errOut)
		}
	}
	for i := range 3 { // page cache, image, connections
		execute(i)
	}
	bundle := runcBundle(b)
	const total, clients = 120, 8
	b.ResetTimer()
	rate, cpu := parallelCPU(b, total, clients, func(i int) { execute(1000 + i) })
	runcRate, runcCPU := parallelCPU(b, total, 2, func(i int) { bareRuncRun(b, runcBin, bundle, i) })
	b.StopTimer()
	b.ReportMetric(rate, "tasks/s")
	b.ReportMetric(runcRate, "runc-runs/s")
	b.ReportMetric(rate/runcRate, "ratio")
	b.ReportMetric(cpu, "cpu-ms/task")
	b.ReportMetric(runcCPU, "runc-cpu-ms/run")
	b.Logf("%d tasks by %d clients on a node with concurrency 8 on %d cores: %.1f tasks/s; bare runc run two at a time %.1f runs/s: ratio %.2f; machine CPU per task %.1f ms, per runc run %.1f ms",
		total, clients, runtime.NumCPU(), rate, runcRate, rate/runcRate, cpu, runcCPU)
}

// BenchmarkGridLargeTasks: tasks so large that one fits on the node at a
// time (1200M of memory each on a node offering 2G), the node otherwise
// as kolejka-foreman's defaults make it (concurrency 8). While one runs,
// the node's free room fits no queued task, so its dequeue waits at the
// server; what ends that wait as the task ends (extension "room_wake") is
// what this measures. 40 trivial tasks through `kolejka-client execute`,
// 8 clients at a time, against Debian's bare `runc run` of /bin/true one
// at a time. One round whatever b.N (-benchtime 1x).
func BenchmarkGridLargeTasks(b *testing.B) {
	runcBin, err := exec.LookPath("runc")
	if err != nil {
		testenv.Missing(b, "Debian's runc for the baseline (apt-get install runc)")
	}
	g := newGrid(b)
	g.startForeman("a", "", "concurency = 8", "memory = 2G")
	task := gridtest.WriteTask(b, `{"image": "kolejka-test:latest", "args": ["true"], "limits": {"time": "10s", "memory": "1200M"}}`)
	ctx := context.Background()
	execute := func(i int) {
		dir := filepath.Join(b.TempDir(), fmt.Sprint("r", i))
		if _, errOut, code := g.KolejkaClient(ctx, "execute", task, dir); code != 0 {
			b.Fatalf("execute: exit %d: %s", code, errOut)
		}
	}
	for i := range 3 { // page cache, image, connections
		execute(i)
	}
	bundle := runcBundle(b)
	const total, clients = 40, 8
	b.ResetTimer()
	rate, cpu := parallelCPU(b, total, clients, func(i int) { execute(1000 + i) })
	runcRate, runcCPU := parallelCPU(b, total, 1, func(i int) { bareRuncRun(b, runcBin, bundle, i) })
	b.StopTimer()
	b.ReportMetric(rate, "tasks/s")
	b.ReportMetric(runcRate, "runc-runs/s")
	b.ReportMetric(rate/runcRate, "ratio")
	b.ReportMetric(cpu, "cpu-ms/task")
	b.ReportMetric(runcCPU, "runc-cpu-ms/run")
	b.Logf("%d tasks of 1200M by %d clients on a node offering 2G: %.1f tasks/s; bare runc run one at a time %.1f runs/s: ratio %.2f; machine CPU per task %.1f ms, per runc run %.1f ms",
		total, clients, rate, runcRate, rate/runcRate, cpu, runcCPU)
}
