package docker_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

// A worker killed mid-task leaves its container running; the next worker
// (any command that makes one) removes it, and the task's processes die.
func TestKilledWorkerContainerIsSwept(t *testing.T) {
	rt := newRuntime(t)
	bin := filepath.Join(testenv.Binaries(t), "kolejka-worker")
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
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	testenv.WaitFor(t, 30*time.Second, "the task runs", func() bool { return sleeping() != "" })
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
