package runc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/runc"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// Benchmarks of the runc runtime against baselines measured in the same
// run. Each reports medians as custom metrics; BENCHMARKS.md records them
// with the command.

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// timed runs a command to its end and returns its wall time in ms; a
// failing command fails the benchmark.
func timed(b *testing.B, name string, args ...string) float64 {
	b.Helper()
	wall, _ := timedCPU(b, name, args...)
	return wall
}

// timedCPU is timed, and also returns the CPU time (user and system) of
// the command and of every process below it that was waited for, in ms:
// wait4's rusage, which sums each process's reaped descendants into it. A
// container's processes are all reaped inside the command (runc's init
// stages and the container's PID 1 by the command, the task by its PID 1),
// so this is the CPU a task costs, wherever it went.
func timedCPU(b *testing.B, name string, args ...string) (wall, cpu float64) {
	b.Helper()
	cmd := exec.Command(name, args...)
	t0 := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	wall = float64(time.Since(t0).Microseconds()) / 1000
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e6
	return wall, cpu
}

func maxOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		if x > m {
			m = x
		}
	}
	return m
}

// BenchmarkTrivialTask: `kolejka-worker execute` of a task running
// /bin/true (the whole command: process start, sweep, container, gate,
// result) against Debian's bare `runc run` of /bin/true in the same rootfs,
// alternating, medians; wall time and the CPU time of all the processes of
// each (worker-cpu-ms, runc-run-cpu-ms). With KOLEJKA_BENCH_BEFORE set to a
// folder with another build's kolejka-worker (and its kolejka-init), that
// binary runs in the same rotation too (before-ms, before-cpu-ms): a
// before-and-after in one run on a loaded machine.
func BenchmarkTrivialTask(b *testing.B) {
	testenv.RequireRoot(b)
	img := testenv.TestImage(b)
	runcBin, err := exec.LookPath("runc")
	if err != nil {
		testenv.Missing(b, "Debian's runc for the baseline (apt-get install runc)")
	}
	bin := filepath.Join(testenv.Binaries(b), "kolejka-worker")
	dir := b.TempDir()

	// Our side: a private image store and config file.
	conf := filepath.Join(dir, "kolejka.conf")
	os.WriteFile(conf, []byte("[worker]\nimages = "+filepath.Join(dir, "images")+"\ntemp = "+filepath.Join(dir, "tmp")+"\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "tmp"), 0o755)
	if out, err := exec.Command(bin, "--config-file", conf, "image", "import", "kolejka-test:latest", filepath.Join(img, "rootfs.tar")).CombinedOutput(); err != nil {
		b.Fatalf("import: %v\n%s", err, out)
	}
	task := filepath.Join(dir, "task")
	os.Mkdir(task, 0o755)
	os.WriteFile(filepath.Join(task, spec.TaskFile), []byte(`{"image": "kolejka-test:latest", "args": ["/bin/true"]}`), 0o644)

	// The baseline: an OCI bundle of the same rootfs.
	bundle := filepath.Join(dir, "bundle")
	os.Mkdir(bundle, 0o755)
	if out, err := exec.Command(runcBin, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		b.Fatalf("runc spec: %v\n%s", err, out)
	}
	var cfg map[string]any
	data, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	json.Unmarshal(data, &cfg)
	cfg["root"] = map[string]any{"path": filepath.Join(img, "rootfs"), "readonly": true}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/true"}
	data, _ = json.Marshal(cfg)
	os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644)
	// A second baseline with our seccomp filter, when this build has one:
	// libseccomp compiles it in runc init for every container, which is a
	// cost of the filter, not of the rest of our work.
	sbundle := filepath.Join(dir, "bundle-seccomp")
	if runc.SeccompBuilt {
		os.Mkdir(sbundle, 0o755)
		linux := cfg["linux"].(map[string]any)
		linux["seccomp"] = runc.TaskSeccomp()
		data, _ = json.Marshal(cfg)
		os.WriteFile(filepath.Join(sbundle, "config.json"), data, 0o644)
	}

	before := os.Getenv("KOLEJKA_BENCH_BEFORE")
	if before != "" {
		before = filepath.Join(before, "kolejka-worker")
	}

	n := b.N
	if n < 20 {
		n = 20
	}
	var ours, oursCPU, theirs, theirsCPU, theirsFiltered, old, oldCPU []float64
	b.ResetTimer()
	for i := 0; i < n; i++ {
		res := filepath.Join(dir, "result"+strconv.Itoa(i))
		w, c := timedCPU(b, bin, "--config-file", conf, "execute", task, res)
		ours, oursCPU = append(ours, w), append(oursCPU, c)
		os.RemoveAll(res)
		w, c = timedCPU(b, runcBin, "run", "--bundle", bundle, fmt.Sprintf("kolejka-bench-%d-%d", os.Getpid(), i))
		theirs, theirsCPU = append(theirs, w), append(theirsCPU, c)
		if runc.SeccompBuilt {
			theirsFiltered = append(theirsFiltered, timed(b, runcBin, "run", "--bundle", sbundle, fmt.Sprintf("kolejka-bench-s-%d-%d", os.Getpid(), i)))
		}
		if before != "" {
			w, c = timedCPU(b, before, "--config-file", conf, "execute", task, res)
			old, oldCPU = append(old, w), append(oldCPU, c)
			os.RemoveAll(res)
		}
	}
	b.StopTimer()
	b.ReportMetric(median(ours), "worker-ms")
	b.ReportMetric(median(theirs), "runc-run-ms")
	b.ReportMetric(median(ours)/median(theirs), "ratio")
	b.ReportMetric(median(oursCPU), "worker-cpu-ms")
	b.ReportMetric(median(theirsCPU), "runc-run-cpu-ms")
	b.ReportMetric(median(oursCPU)/median(theirsCPU), "cpu-ratio")
	if len(old) > 0 {
		b.ReportMetric(median(old), "before-ms")
		b.ReportMetric(median(oldCPU), "before-cpu-ms")
	}
	if len(theirsFiltered) > 0 {
		b.ReportMetric(median(theirsFiltered), "runc-run-seccomp-ms")
		b.ReportMetric(median(ours)/median(theirsFiltered), "ratio-seccomp")
	}
}

// benchTask runs a task n times through the library and returns results.
func benchTask(b *testing.B, e *workertest.Env, taskJSON string, n int) []*spec.Result {
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(taskJSON), 0o644)
	var out []*spec.Result
	for i := 0; i < n; i++ {
		resDir := filepath.Join(b.TempDir(), "r")
		res, err := e.W.Execute(context.Background(), dir, resDir, worker.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if res.Stdout != "" {
			data, _ := os.ReadFile(filepath.Join(resDir, res.Stdout))
			res.Files["_stdout"] = spec.File{Path: string(data)}
		}
		out = append(out, res)
	}
	return out
}

// BenchmarkCPUAccuracy: the task's CPU time as measured from its cgroup vs
// what the task itself reports from getrusage, for a 0.5 s spin. The
// difference is kolejka-init's share before the exec (counted by rusage,
// not by us) and exec itself.
func BenchmarkCPUAccuracy(b *testing.B) {
	e := workertest.NewEnv(b, newRuntime(b))
	runs := benchTask(b, e, `{"image": "kolejka-test:latest", "args": ["kolejka-spin", "0.5"], "stdout": "out", "limits": {"cpus": 1}}`, max(b.N, 5))
	var errs []float64
	for _, r := range runs {
		got := float64(r.Stats.CPU.Usage.Microseconds())
		line := strings.TrimSpace(r.Files["_stdout"].Path)
		self, err := strconv.ParseFloat(strings.TrimPrefix(line, "rusage_us="), 64)
		if err != nil {
			b.Fatalf("spin printed %q", line)
		}
		errs = append(errs, 100*(got-self)/self)
	}
	b.ReportMetric(median(errs), "median-err-%")
	b.ReportMetric(maxOf(absAll(errs)), "max-abs-err-%")
}

// BenchmarkMemoryAccuracy: the memory peak measured for a task that
// allocates and touches 100 MiB, vs 100 MiB.
func BenchmarkMemoryAccuracy(b *testing.B) {
	e := workertest.NewEnv(b, newRuntime(b))
	const mib = 100
	runs := benchTask(b, e, `{"image": "kolejka-test:latest", "args": ["kolejka-alloc", "100"], "stdout": "out"}`, max(b.N, 5))
	var errs []float64
	for _, r := range runs {
		got := float64(*r.Stats.Memory.MaxUsage)
		errs = append(errs, 100*(got-mib<<20)/(mib<<20))
	}
	b.ReportMetric(median(errs), "median-err-%")
	b.ReportMetric(maxOf(absAll(errs)), "max-abs-err-%")
}

// BenchmarkTimeLimitLateness: how long after its time limit a sleeping task
// is gone (wall time minus limit), target at most 50 ms.
func BenchmarkTimeLimitLateness(b *testing.B) {
	e := workertest.NewEnv(b, newRuntime(b))
	runs := benchTask(b, e, `{"image": "kolejka-test:latest", "args": ["sleep", "10"], "limits": {"time": "200m"}}`, max(b.N, 20))
	var late []float64
	for _, r := range runs {
		if r.Status != spec.StatusTLE {
			b.Fatalf("status %s", r.Status)
		}
		late = append(late, float64((*r.Stats.Time-200*time.Millisecond).Microseconds())/1000)
	}
	b.ReportMetric(median(late), "median-late-ms")
	b.ReportMetric(maxOf(late), "max-late-ms")
}

func absAll(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		if x < 0 {
			x = -x
		}
		out[i] = x
	}
	return out
}

// BenchmarkExecuteInProcess: one trivial task through the worker library
// (as a foreman runs tasks), without the command's process start.
func BenchmarkExecuteInProcess(b *testing.B) {
	e := workertest.NewEnv(b, newRuntime(b))
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(`{"image": "kolejka-test:latest", "args": ["/bin/true"]}`), 0o644)
	var ms []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res := filepath.Join(b.TempDir(), "r")
		t0 := time.Now()
		if _, err := e.W.Execute(context.Background(), dir, res, worker.Options{}); err != nil {
			b.Fatal(err)
		}
		ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
	}
	b.ReportMetric(median(ms), "median-ms")
}

// BenchmarkProcessStart: what one start of the kolejka-worker binary costs
// before it does any work (`kolejka-worker --help`), against Debian's
// `runc --version` and /bin/true (the fork and exec alone), alternating,
// medians; and the same for kolejka-client (`--help`), which
// `kolejka-client execute` pays once per task. `kolejka-worker execute`
// pays the worker's start once for the command, and every container pays
// an exec of the calling binary (worker or foreman) for runc init, which
// hands over to kolejka-runc-init before Go starts (hop.go). The init-ms
// figures sum each binary's package initialisers (GODEBUG=inittrace=1).
func BenchmarkProcessStart(b *testing.B) {
	runcBin, err := exec.LookPath("runc")
	if err != nil {
		testenv.Missing(b, "Debian's runc for the baseline (apt-get install runc)")
	}
	bin := filepath.Join(testenv.Binaries(b), "kolejka-worker")
	n := b.N
	if n < 20 {
		n = 20
	}
	client := filepath.Join(testenv.Binaries(b), "kolejka-client")
	var ours, theirs, floor, inits, runcInits, clients []float64
	b.ResetTimer()
	for i := 0; i < n; i++ {
		ours = append(ours, timed(b, bin, "--help"))
		clients = append(clients, timed(b, client, "--help"))
		theirs = append(theirs, timed(b, runcBin, "--version"))
		floor = append(floor, timed(b, "/bin/true"))

		inits = append(inits, initClock(b, bin, "--help"))
		runcInits = append(runcInits, initClock(b, runcBin, "--version"))
	}
	b.StopTimer()
	b.ReportMetric(median(ours), "worker-ms")
	b.ReportMetric(median(theirs), "runc-ms")
	b.ReportMetric(median(floor), "true-ms")
	b.ReportMetric(median(inits), "worker-init-ms")
	b.ReportMetric(median(runcInits), "runc-init-ms")
	b.ReportMetric(median(clients), "client-ms")
}

// initClock runs a Go binary with GODEBUG=inittrace=1 and sums the "N ms
// clock" of its lines: "init pkg @T ms, N ms clock, B bytes, A allocs".
func initClock(b *testing.B, name string, args ...string) float64 {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%s %v with inittrace: %v", name, args, err)
	}
	var sum float64
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 7 && f[0] == "init" && f[6] == "clock," {
			if v, err := strconv.ParseFloat(f[4], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
}
