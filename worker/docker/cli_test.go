package docker_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// workerBinary is kolejka-worker with kolejka-init beside it: from
// $KOLEJKA_BIN (the Makefile's), else built once per test binary.
func workerBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("KOLEJKA_BIN"); bin != "" {
		if _, err := os.Stat(filepath.Join(bin, "kolejka-worker")); err == nil {
			return filepath.Join(bin, "kolejka-worker")
		}
	}
	initPath := testenv.InitBinary(t)
	root := testenv.RepoRoot(t)
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "kolejka-worker-"); buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir, "./cmd/kolejka-worker")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildFailure{string(out), err}
			return
		}
		data, err := os.ReadFile(initPath)
		if err == nil {
			err = os.WriteFile(filepath.Join(buildDir, "kolejka-init"), data, 0o755)
		}
		buildErr = err
	})
	if buildErr != nil {
		t.Fatalf("building kolejka-worker: %v", buildErr)
	}
	return filepath.Join(buildDir, "kolejka-worker")
}

type buildFailure struct {
	out string
	err error
}

func (b *buildFailure) Error() string { return b.err.Error() + ": " + b.out }

// A worker killed mid-task leaves its container running; the next worker
// (any command that makes one) removes it, and the task's processes die.
func TestKilledWorkerContainerIsSwept(t *testing.T) {
	rt := newRuntime(t)
	bin := workerBinary(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "kolejka.conf")
	temp := filepath.Join(dir, "tmp")
	os.Mkdir(temp, 0o755)
	os.WriteFile(conf, []byte("[worker]\nruntime = docker\ntemp = "+temp+"\n"), 0o644)

	const marker = "4323"
	// The task's pids once it runs: not while it is held, stopped, at the
	// gate (killing the worker then ends the task at once).
	sleeping := func() string {
		out, _ := exec.Command("pgrep", "-f", "^sleep "+marker+"$").Output()
		var running []string
		for _, pid := range strings.Fields(string(out)) {
			stat, _ := os.ReadFile("/proc/" + pid + "/stat")
			if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); len(f) > 0 && (f[0] == "S" || f[0] == "R") {
				running = append(running, pid)
			}
		}
		return strings.Join(running, " ")
	}
	cmd := exec.Command(bin, "--config-file", conf, "execute", task(t, `{"image": "kolejka-test:latest", "args": ["sleep", "`+marker+`"], "stdout": "out"}`), filepath.Join(dir, "result"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for sleeping() == "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if sleeping() == "" || len(labelled(t, rt)) == 0 {
		t.Fatalf("the killed worker left no running task or no container (%v): the test proves nothing", labelled(t, rt))
	}

	out, err := exec.Command(bin, "--config-file", conf, "execute", "--runtime", "docker",
		task(t, `{"image": "kolejka-test:latest", "args": ["true"]}`), filepath.Join(dir, "result2")).CombinedOutput()
	if err != nil {
		t.Fatalf("next run: %v\n%s", err, out)
	}
	assertNoContainers(t, rt)
	if pids := sleeping(); pids != "" {
		t.Errorf("the task survived: pids %s", pids)
	}
	if entries, _ := os.ReadDir(temp); len(entries) != 0 {
		t.Errorf("scratch left: %v", entries)
	}
}
