package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/testenv"
)

// Warm containers (issue 22) on and off in the same run: two foremen on
// this machine, "cold" (node a) with `warm = 0` and "warm" (node b) with
// kolejka-foreman's default (`warm = 1`), each with concurrency 2 and both
// cores, each taking only
// tasks that require its tag. Measured, interleaved:
//
//   - latency: `kolejka-client execute` of the trivial task on each node in
//     turn, the whole command timed (p50, p90), with the other node idle;
//   - throughput: 120 trivial tasks through `kolejka-client execute`, 8
//     clients at a time, on one node then the other, against the baseline
//     of Debian's bare `runc run` of /bin/true in the same rootfs, two at a
//     time, 120 times (the ratio is the grid's rate over runc's).
func BenchmarkGridWarm(b *testing.B) {
	runcBin, err := exec.LookPath("runc")
	if err != nil {
		testenv.Missing(b, "Debian's runc for the baseline (apt-get install runc)")
	}
	g := newGrid(b)
	// The grid's processor accounts are "a" and "b": a runs cold, b warm
	// as kolejka-foreman does by default (DefaultWarm; containers made
	// only while none of the node's tasks runs).
	nodeOf := map[string]string{"cold": "a", "warm": "b"}
	g.startForeman(nodeOf["cold"], "", "warm = 0")
	g.startForeman(nodeOf["warm"], "")
	tasks := map[string]string{}
	for _, node := range []string{"cold", "warm"} {
		tasks[node] = gridtest.WriteTask(b, `{"image": "kolejka-test:latest", "args": ["true"], "limits": {"time": "10s"}, "requires": ["node:`+nodeOf[node]+`"]}`)
	}
	for range 3 { // page cache, image, connections; the warm node sees the shape
		g.execute(b, tasks["cold"])
		g.execute(b, tasks["warm"])
	}
	bundle := runcBundle(b)

	n := max(b.N, 30)
	lat := map[string][]time.Duration{}
	b.ResetTimer()
	for range n {
		for _, node := range []string{"cold", "warm"} {
			start := time.Now()
			g.execute(b, tasks[node])
			lat[node] = append(lat[node], time.Since(start))
		}
	}
	const total, clients = 120, 8
	rate, cpu := map[string]float64{}, map[string]float64{}
	for _, node := range []string{"cold", "warm"} {
		rate[node], cpu[node] = parallelCPU(b, total, clients, func(int) { g.execute(b, tasks[node]) })
	}
	rate["runc"], cpu["runc"] = parallelCPU(b, total, 2, func(i int) { bareRuncRun(b, runcBin, bundle, i) })
	b.StopTimer()
	// The nodes ran as configured: the worker's "task done" says whether
	// each run took a prepared container.
	hits := func(node string) (warm, all int) {
		lines := gridtest.LogLines(g.Nodes[nodeOf[node]].Log, `msg="task done"`)
		return len(gridtest.LogLines(g.Nodes[nodeOf[node]].Log, "warm=true")), len(lines)
	}
	if w, all := hits("cold"); w != 0 || all == 0 {
		b.Fatalf("the cold node ran %d of %d tasks warm", w, all)
	}
	w, all := hits("warm")
	if w == 0 {
		b.Fatalf("the warm node ran none of its %d tasks warm", all)
	}
	b.ReportMetric(float64(w)/float64(all), "warm-hit-share")
	for _, node := range []string{"cold", "warm"} {
		slices.Sort(lat[node])
		b.ReportMetric(ms(percentile(lat[node], 0.5)), node+"-p50-ms")
		b.ReportMetric(ms(percentile(lat[node], 0.9)), node+"-p90-ms")
		b.ReportMetric(rate[node], node+"-tasks/s")
		b.ReportMetric(rate[node]/rate["runc"], node+"-ratio")
		b.ReportMetric(cpu[node], node+"-cpu-ms/task")
	}
	b.ReportMetric(rate["runc"], "runc-runs/s")
	b.ReportMetric(cpu["runc"], "runc-cpu-ms/run")
	b.Logf("%d runs each: execute p50 cold %.1f ms, warm %.1f ms (p90 %.1f, %.1f); %d tasks by %d clients: cold %.1f tasks/s, warm %.1f tasks/s; bare runc run two at a time %.1f runs/s: ratios %.2f, %.2f; machine CPU per task cold %.1f ms, warm %.1f ms, per runc run %.1f ms",
		n, ms(percentile(lat["cold"], 0.5)), ms(percentile(lat["warm"], 0.5)), ms(percentile(lat["cold"], 0.9)), ms(percentile(lat["warm"], 0.9)),
		total, clients, rate["cold"], rate["warm"], rate["runc"], rate["cold"]/rate["runc"], rate["warm"]/rate["runc"], cpu["cold"], cpu["warm"], cpu["runc"])
}

// parallel runs fn for 0..total-1 on width goroutines and returns the rate
// per second.
func parallel(total, width int, fn func(i int)) float64 {
	next := make(chan int, total)
	for i := range total {
		next <- i
	}
	close(next)
	start := time.Now()
	var wg sync.WaitGroup
	for range width {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

// parallelCPU is parallel, and also returns the CPU time the whole machine
// spent per call meanwhile, in ms (/proc/stat: every process's user and
// system time, interrupts included): on the grid a task's CPU is spread
// over the client, the server, the foreman and the container's processes,
// and the machine's total is what bounds the rate on saturated cores. The
// machine must be otherwise idle for it to mean that.
func parallelCPU(b *testing.B, total, width int, fn func(i int)) (rate, cpuMs float64) {
	b.Helper()
	c0 := machineCPU(b)
	rate = parallel(total, width, fn)
	return rate, float64((machineCPU(b) - c0).Microseconds()) / 1000 / float64(total)
}

// machineCPU is the busy time of all the machine's CPUs since boot: the
// first line of /proc/stat, all but idle and iowait, in clock ticks
// (USER_HZ, 100 on Linux).
func machineCPU(b *testing.B) time.Duration {
	b.Helper()
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		b.Fatalf("/proc/stat: unexpected first line %q", line)
	}
	var ticks int64
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("/proc/stat: %q: %v", line, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100)
}

// bareRuncRun is the grid benchmarks' baseline: Debian's `runc run` of
// bundle (runcBundle) as container i of this process.
func bareRuncRun(b *testing.B, runcBin, bundle string, i int) {
	name := fmt.Sprintf("kolejka-bench-%d-%d", os.Getpid(), i)
	if out, err := exec.Command(runcBin, "run", "--bundle", bundle, name).CombinedOutput(); err != nil {
		b.Fatalf("runc run: %v\n%s", err, out)
	}
}

// runcBundle is an OCI bundle running /bin/true in the test image's
// rootfs (read-only), runc's default spec otherwise: bare `runc run`.
func runcBundle(b *testing.B) string {
	img := testenv.TestImage(b)
	bundle := filepath.Join(b.TempDir(), "bundle")
	if err := os.Mkdir(bundle, 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("runc", "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		b.Fatalf("runc spec: %v\n%s", err, out)
	}
	var cfg map[string]any
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		b.Fatal(err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		b.Fatal(err)
	}
	cfg["root"] = map[string]any{"path": filepath.Join(img, "rootfs"), "readonly": true}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/true"}
	data, _ = json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	return bundle
}
