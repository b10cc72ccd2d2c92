package e2e

import (
	"os/exec"
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
	m := gridAgainstRunc(b, `{"image": "kolejka-test:latest", "args": ["true"], "limits": {"time": "10s"}}`,
		120, 2, "concurency = 8") // the last value wins: kolejka-foreman's default
	b.Logf("%d tasks by %d clients on a node with concurrency 8 on %d cores: %.1f tasks/s; bare runc run two at a time %.1f runs/s: ratio %.2f; machine CPU per task %.1f ms, per runc run %.1f ms",
		m.total, m.clients, runtime.NumCPU(), m.rate, m.runcRate, m.rate/m.runcRate, m.cpu, m.runcCPU)
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
	m := gridAgainstRunc(b, `{"image": "kolejka-test:latest", "args": ["true"], "limits": {"time": "10s", "memory": "1200M"}}`,
		40, 1, "concurency = 8", "memory = 2G")
	b.Logf("%d tasks of 1200M by %d clients on a node offering 2G: %.1f tasks/s; bare runc run one at a time %.1f runs/s: ratio %.2f; machine CPU per task %.1f ms, per runc run %.1f ms",
		m.total, m.clients, m.rate, m.runcRate, m.rate/m.runcRate, m.cpu, m.runcCPU)
}

// gridRound is one round of gridAgainstRunc.
type gridRound struct {
	total, clients               int
	rate, runcRate, cpu, runcCPU float64
}

// gridAgainstRunc runs total tasks (task's JSON) through `kolejka-client
// execute`, 8 clients at a time, on a one-node grid whose foreman has the
// config lines given, then as many bare `runc run`s of /bin/true runcWidth
// at a time, and reports both rates, their ratio and the machine's CPU per
// task and per run.
func gridAgainstRunc(b *testing.B, taskJSON string, total, runcWidth int, foreman ...string) gridRound {
	runcBin, err := exec.LookPath("runc")
	if err != nil {
		testenv.Missing(b, "Debian's runc for the baseline (apt-get install runc)")
	}
	g := newGrid(b)
	g.startForeman("a", "", foreman...)
	task := gridtest.WriteTask(b, taskJSON)
	execute := func(int) { g.execute(b, task) }
	for i := range 3 { // page cache, image, connections
		execute(i)
	}
	bundle := runcBundle(b)
	m := gridRound{total: total, clients: 8}
	b.ResetTimer()
	m.rate, m.cpu = parallelCPU(b, total, m.clients, func(i int) { execute(1000 + i) })
	m.runcRate, m.runcCPU = parallelCPU(b, total, runcWidth, func(i int) { bareRuncRun(b, runcBin, bundle, i) })
	b.StopTimer()
	b.ReportMetric(m.rate, "tasks/s")
	b.ReportMetric(m.runcRate, "runc-runs/s")
	b.ReportMetric(m.rate/m.runcRate, "ratio")
	b.ReportMetric(m.cpu, "cpu-ms/task")
	b.ReportMetric(m.runcCPU, "runc-cpu-ms/run")
	return m
}
