package docker_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
)

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkTrivialTaskDocker: `kolejka-worker --runtime docker execute` of
// a task running /bin/true (the whole command: process start, sweep, image
// check, container, gate, FIFOs, result, removal) against a bare `docker
// run --rm` of /bin/true in the same image with the same limits, in
// alternating pairs (at least 20), medians.
func BenchmarkTrivialTaskDocker(b *testing.B) {
	newRuntime(b) // the engine, the test image
	bin := filepath.Join(testenv.Binaries(b), "kolejka-worker")
	dockerBin, err := exec.LookPath("docker")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	conf := filepath.Join(dir, "kolejka.conf")
	os.WriteFile(conf, []byte("[worker]\ntemp = "+filepath.Join(dir, "tmp")+"\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "tmp"), 0o755)
	task := filepath.Join(dir, "task")
	os.Mkdir(task, 0o755)
	os.WriteFile(filepath.Join(task, spec.TaskFile), []byte(`{"image": "kolejka-test:latest", "args": ["/bin/true"],
		"limits": {"memory": "256M", "swap": 0, "pids": 64, "network": false}}`), 0o644)
	baseline := []string{"run", "--rm", "--memory", "256m", "--memory-swap", "256m", "--pids-limit", "64", "--network", "none",
		testImage, "/bin/true"}

	n := max(b.N, 20)
	var ours, theirs []float64
	b.ResetTimer()
	for i := 0; i < n; i++ {
		res := filepath.Join(dir, "result"+strconv.Itoa(i))
		t0 := time.Now()
		if out, err := exec.Command(bin, "--config-file", conf, "execute", "--runtime", "docker", task, res).CombinedOutput(); err != nil {
			b.Fatalf("execute: %v\n%s", err, out)
		}
		ours = append(ours, float64(time.Since(t0).Microseconds())/1000)
		os.RemoveAll(res)

		t0 = time.Now()
		if out, err := exec.Command(dockerBin, baseline...).CombinedOutput(); err != nil {
			b.Fatalf("docker run: %v\n%s", err, out)
		}
		theirs = append(theirs, float64(time.Since(t0).Microseconds())/1000)
	}
	b.StopTimer()
	b.ReportMetric(median(ours), "worker-ms")
	b.ReportMetric(median(theirs), "docker-run-ms")
	b.ReportMetric(median(ours)/median(theirs), "ratio")
}
