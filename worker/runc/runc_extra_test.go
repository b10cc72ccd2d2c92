package runc_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

func task(t *testing.T, taskJSON string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(taskJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMissingImageIsASystemError(t *testing.T) {
	workertest.MissingImage(t, workertest.NewEnv(t, newRuntime(t)))
}

func TestStorageLimitFillsTheWritableLayerNotTheDisk(t *testing.T) {
	e := workertest.NewEnv(t, newRuntime(t))
	_, res, err := e.Run(t, task(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "dd if=/dev/zero of=/tmp/fill bs=1M count=64; echo $?"],
		"limits": {"storage": "8M", "memory": "128M", "time": "20s"}, "stdout": "out"}`), worker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != spec.StatusOLE {
		t.Fatalf("status %s, want OLE", res.Status)
	}
	e.AssertClean(t)
}

func TestImageIsNotModifiedByTasks(t *testing.T) {
	rt := newRuntime(t)
	e := workertest.NewEnv(t, rt)
	// One task deletes a file of the image and writes another; the next
	// task must see the image as it was.
	if _, res, err := e.Run(t, task(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "rm /etc/passwd && echo x > /bin/new"]}`), worker.Options{}); err != nil || res.Status != spec.StatusOK {
		t.Fatalf("first task: %v %+v", err, res)
	}
	dir, res, err := e.Run(t, task(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "cat /etc/passwd | head -1; ls /bin/new 2>&1"], "stdout": "out"}`), worker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "out"))
	if res.Status != spec.StatusRE || !strings.HasPrefix(string(out), "root:") || !strings.Contains(string(out), "No such file") {
		t.Fatalf("second task saw a changed image: %s %q", res.Status, out)
	}
}

func TestContainerIsIsolated(t *testing.T) {
	e := workertest.NewEnv(t, newRuntime(t))
	dir, res, err := e.Run(t, task(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c",
		"hostname; echo pid=$$; ps -o pid | wc -l; ls /sys/fs/cgroup 2>&1 | head -1; cat /proc/self/status | grep CapEff; mount -t tmpfs x /mnt 2>&1 >/dev/null && echo mounted || echo mount-refused"],
		"stdout": "out"}`), worker.Options{})
	if err != nil || res.Status != spec.StatusOK {
		t.Fatalf("%v %+v", err, res)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "out"))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if lines[0] != worker.ContainerHostname {
		t.Errorf("hostname %q", lines[0])
	}
	// kolejka-init is PID 1; the task's shell is its child, never PID 1.
	if lines[1] == "pid=1" {
		t.Errorf("the task runs as PID 1")
	}
	if !strings.Contains(string(out), "mount-refused") {
		t.Errorf("a task could mount: %q", out)
	}
	if strings.Contains(string(out), "CapEff:\t000001ffffffffff") || strings.Contains(string(out), "CapEff:\t0000003fffffffff") {
		t.Errorf("the task has full capabilities: %q", out)
	}
}

// A worker killed mid-task leaves a running container, its mounts, state
// and cgroups; the next worker sweeps them all.
func TestKilledWorkerContainerIsSwept(t *testing.T) {
	testenv.RequireRoot(t)
	img := testenv.TestImage(t)
	bin := filepath.Join(testenv.Binaries(t), "kolejka-worker")
	dir := t.TempDir()
	conf := filepath.Join(dir, "kolejka.conf")
	temp := filepath.Join(dir, "tmp")
	os.Mkdir(temp, 0o755)
	os.WriteFile(conf, []byte("[worker]\nimages = "+filepath.Join(dir, "images")+"\ntemp = "+temp+"\n"), 0o644)
	if out, err := exec.Command(bin, "--config-file", conf, "image", "import", "kolejka-test:latest", filepath.Join(img, "rootfs.tar")).CombinedOutput(); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	taskDir := task(t, `{"image": "kolejka-test:latest", "args": ["sleep", "4321"], "limits": {"workspace": "4M", "storage": "4M"}}`)
	cmd := exec.Command(bin, "--config-file", conf, "execute", taskDir, filepath.Join(dir, "result"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "the task's sleep to run", func() bool { return running("sleep\x004321\x00") })
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	mountsBefore := countMounts(t, temp)
	if mountsBefore == 0 {
		t.Fatal("the killed worker left no mounts: the test proves nothing")
	}
	// The next worker run sweeps on start; it runs a trivial task.
	out, err := exec.Command(bin, "--config-file", conf, "execute", task(t, `{"image": "kolejka-test:latest", "args": ["true"]}`), filepath.Join(dir, "result2")).CombinedOutput()
	if err != nil {
		t.Fatalf("next run: %v\n%s", err, out)
	}
	if n := countMounts(t, temp); n != 0 {
		t.Errorf("%d mounts left after the sweep", n)
	}
	if entries, _ := os.ReadDir(temp); len(entries) != 0 {
		t.Errorf("scratch left: %v", entries)
	}
	if running("sleep\x004321\x00") {
		t.Error("the task's sleep survived the sweep")
	}
	if entries, _ := os.ReadDir("/run/kolejka/runc"); len(entries) > 0 {
		for _, e := range entries {
			if _, err := os.Stat(filepath.Join("/run/kolejka/worker/runs", strings.TrimPrefix(e.Name(), "kolejka-"))); err != nil {
				t.Errorf("container state left: %s", e.Name())
			}
		}
	}
}

func countMounts(t *testing.T, below string) int {
	data, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), " "+below+"/")
}

// Without capabilities a task still may create a user namespace, and in it
// every other kind, where it owns every capability over kernel code that
// has had bug after bug. The seccomp filter refuses them all, and is seen
// by the task as mode 2 (filter) in /proc/self/status.
func TestSeccompRefusesNewNamespaces(t *testing.T) {
	e := workertest.NewEnv(t, newRuntime(t))
	dir, res, err := e.Run(t, task(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c",
		"grep ^Seccomp: /proc/self/status; for f in -U '-U -n' '-U -m' '-U -p -f' '-U -i' '-U -u' '-r'; do unshare $f true 2>/dev/null && echo \"made $f\" || echo \"refused $f\"; done"],
		"stdout": "out"}`), worker.Options{})
	if err != nil || res.Status != spec.StatusOK {
		t.Fatalf("%v %+v", err, res)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "out"))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 8 {
		t.Fatalf("output %q", out)
	}
	if lines[0] != "Seccomp:\t2" {
		t.Errorf("the task runs without a seccomp filter: %q", lines[0])
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "refused ") {
			t.Errorf("the task could: %s", l)
		}
	}
}

// running reports whether a process with exactly this command line (NUL
// separated, as /proc/PID/cmdline holds it) exists. Read from /proc, not
// with pgrep, which not every machine the tests run on has.
func running(cmdline string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && string(b) == cmdline {
			return true
		}
	}
	return false
}
