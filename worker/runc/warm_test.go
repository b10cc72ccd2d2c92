package runc_test

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/image"
	"github.com/kolejka-go/kolejka/worker/runc"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// Two tasks of one shape in two containers prepared before the first ran:
// the second sees nothing the first left (files in its folders and /tmp,
// a daemon, its environment), and each one's measurements are its own.
// The first burns CPU and memory; the second's figures stay those of a
// trivial task, so neither the first's cgroup nor the waiting containers'
// runtime init is charged to it.
func TestWarmTasksSeeNothingOfEachOther(t *testing.T) {
	e := workertest.NewWarmEnv(t, newRuntime(t), 0, time.Hour)
	first := task(t, `{"image": "kolejka-test:latest", "environment": {"SECRET_OF_A": "a"},
		"args": ["sh", "-c", "echo a > /tmp/mark-of-a; echo a > /var/lib/kolejka/task/left-by-a; echo a > /var/lib/kolejka/result/result-of-a; (sleep 300 &); i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; dd if=/dev/zero of=/dev/null bs=96M count=1 2>/dev/null"],
		"limits": {"memory": "256M", "time": "60s"}}`)
	second := task(t, `{"image": "kolejka-test:latest",
		"args": ["sh", "-c", "ls -a /tmp /var/lib/kolejka/task /var/lib/kolejka/result; ps -o pid,args; env"],
		"limits": {"memory": "256M", "time": "60s"}, "stdout": "out"}`)
	ta, err := spec.LoadTask(first)
	if err != nil {
		t.Fatal(err)
	}
	sh := e.W.TaskShape(ta, worker.Options{})
	for range 2 {
		if err := e.W.Prepare(context.Background(), sh); err != nil {
			t.Fatal(err)
		}
	}
	_, resA, err := e.Run(t, first, worker.Options{})
	if err != nil || resA.Status != spec.StatusOK {
		t.Fatalf("first task: %v %+v", err, resA)
	}
	dir, resB, err := e.Run(t, second, worker.Options{})
	if err != nil || resB.Status != spec.StatusOK {
		t.Fatalf("second task: %v %+v", err, resB)
	}
	if st := e.W.WarmStats(); st.Hits != 2 || st.Misses != 0 {
		t.Fatalf("warm stats %+v, want both tasks in prepared containers", st)
	}
	out, err := os.ReadFile(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	// The listing worked: the second task's own task file is there.
	if !strings.Contains(string(out), spec.TaskFile) {
		t.Fatalf("the second task's listing lacks its own task file: %q", out)
	}
	for _, trace := range []string{"mark-of-a", "left-by-a", "result-of-a", "sleep 300", "SECRET_OF_A"} {
		if strings.Contains(string(out), trace) {
			t.Errorf("the second task saw %q of the first:\n%s", trace, out)
		}
	}
	cpu := func(r *spec.Result) time.Duration { return *r.Stats.CPU.Usage }
	mem := func(r *spec.Result) int64 { return *r.Stats.Memory.MaxUsage }
	t.Logf("first: cpu %v, memory peak %d; second: cpu %v, memory peak %d", cpu(resA), mem(resA), cpu(resB), mem(resB))
	if cpu(resA) < 100*time.Millisecond || mem(resA) < 96<<20 {
		t.Fatalf("the first task's figures (cpu %v, memory peak %d) do not show its work", cpu(resA), mem(resA))
	}
	if cpu(resB) > cpu(resA)/2 || mem(resB) > 32<<20 {
		t.Errorf("the second task's figures (cpu %v, memory peak %d) are not its own (the first's: cpu %v, memory peak %d)",
			cpu(resB), mem(resB), cpu(resA), mem(resA))
	}
	if err := e.W.Close(); err != nil {
		t.Fatal(err)
	}
	e.AssertClean(t)
}

// With Config.Warm, a task of a shape not seen before runs cold and has a
// container of its shape prepared for the next, which runs in it; one left
// unused is destroyed when it has waited WarmIdle, leaving nothing.
func TestWarmPoolRefillsAndExpires(t *testing.T) {
	const idle = 2 * time.Second
	e := workertest.NewWarmEnv(t, newRuntime(t), 1, idle)
	trivial := `{"image": "kolejka-test:latest", "args": ["true"]}`
	if _, res, err := e.Run(t, task(t, trivial), worker.Options{}); err != nil || res.Status != spec.StatusOK {
		t.Fatalf("first task: %v %+v", err, res)
	}
	if st := e.W.WarmStats(); st.Misses != 1 || st.Hits != 0 {
		t.Fatalf("warm stats %+v after the first task, want one miss", st)
	}
	testenv.WaitFor(t, time.Minute, "a container prepared for the shape", func() bool { return e.W.WarmStats().Ready == 1 })
	if _, res, err := e.Run(t, task(t, trivial), worker.Options{}); err != nil || res.Status != spec.StatusOK {
		t.Fatalf("second task: %v %+v", err, res)
	}
	if st := e.W.WarmStats(); st.Hits != 1 {
		t.Fatalf("warm stats %+v after the second task, want one hit", st)
	}
	// The second task's run, once its result was out, prepared another,
	// which no task takes: it goes after idle (the wait here is the
	// behaviour under test).
	testenv.WaitFor(t, time.Minute, "the unused container prepared", func() bool { return e.W.WarmStats().Ready == 1 })
	testenv.WaitFor(t, time.Minute, "the unused container destroyed", func() bool {
		entries, _ := os.ReadDir(e.Temp)
		return e.W.WarmStats().Ready == 0 && len(entries) == 0
	})
	e.AssertClean(t)
}

// No container is prepared beside a running task: the one a miss asks for
// is made once the node's runs are all done, and a task that arrives while
// it is being made waits for it rather than starting cold.
func TestWarmPoolPreparesOnlyBetweenTasks(t *testing.T) {
	e := workertest.NewWarmEnv(t, newRuntime(t), 1, time.Hour)
	// A task that runs for a second: long enough for dozens of
	// preparations, which the pool must not start meanwhile.
	slow := `{"image": "kolejka-test:latest", "args": ["sleep", "1"]}`
	done := make(chan error, 1)
	go func() {
		_, res, err := e.Run(t, task(t, slow), worker.Options{})
		if err == nil && res.Status != spec.StatusOK {
			err = fmt.Errorf("status %s", res.Status)
		}
		done <- err
	}()
	// Watched throughout the task's run (a preparation takes tens of
	// milliseconds: one made meanwhile would show).
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var err error
watch:
	for {
		if st := e.W.WarmStats(); st.Ready != 0 {
			t.Fatalf("a container was prepared while the first task ran: %+v", st)
		}
		select {
		case err = <-done:
			break watch
		case <-tick.C:
		}
	}
	if err != nil {
		t.Fatalf("first task: %v", err)
	}
	if st := e.W.WarmStats(); st.Misses != 1 || st.Hits != 0 {
		t.Fatalf("warm stats %+v after the first task, want one miss", st)
	}
	// At once: the container the miss asked for is being made now, and
	// this task of the same shape takes it when it is ready.
	if _, res, err := e.Run(t, task(t, slow), worker.Options{}); err != nil || res.Status != spec.StatusOK {
		t.Fatalf("second task: %v %+v", err, res)
	}
	if st := e.W.WarmStats(); st.Hits != 1 || st.Misses != 1 {
		t.Fatalf("warm stats %+v after the second task, want it to have waited for the container being made", st)
	}
	if err := e.W.Close(); err != nil {
		t.Fatal(err)
	}
	e.AssertClean(t)
}

// warmHelper is a worker process that prepares one container and waits to
// be killed: arg is "runtime dir|temp|state|cgroup root|init".
func warmHelper(arg string) int {
	p := strings.Split(arg, "|")
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	store, err := image.Open(filepath.Join(p[0], "images"))
	if err != nil {
		return fail(err)
	}
	rt, err := runc.New(filepath.Join(p[0], "state"), store)
	if err != nil {
		return fail(err)
	}
	w, err := worker.New(context.Background(), worker.Config{Temp: p[1], StateDir: p[2], CgroupRoot: p[3], InitPath: p[4],
		Observer: "none", Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}, rt)
	if err != nil {
		return fail(err)
	}
	if err := w.Prepare(context.Background(), worker.Shape{Image: "kolejka-test:latest"}); err != nil {
		return fail(err)
	}
	fmt.Println("prepared")
	_, _ = io.Copy(io.Discard, os.Stdin) // until killed
	return 0
}

// A worker killed (kill -9) with a prepared container leaves it behind:
// its runtime init waiting, cgroups, mounts, scratch, container state and
// registry entry. The next worker's sweep removes all of it.
func TestKilledWorkersPreparedContainerIsSwept(t *testing.T) {
	testenv.RequireRoot(t)
	requireSeccomp(t)
	dir := t.TempDir()
	rt := newRuntimeIn(t, dir, testenv.TestImage(t))
	e := workertest.NewEnv(t, rt)
	child := testenv.StartHelper(t, "warm", strings.Join([]string{dir, e.Temp, e.State, e.CgroupRoot, testenv.InitBinary(t)}, "|"), nil)
	if l := child.Line(); l != "prepared" {
		t.Fatalf("helper said %q", l)
	}
	state := filepath.Join(dir, "state")
	containers, _ := os.ReadDir(state)
	if len(containers) != 1 {
		t.Fatalf("container state folders %v after the preparation, want one (the test would prove nothing)", containers)
	}
	waiting := workertest.GroupPids(e.CgroupRoot, "runtime")
	if len(waiting) == 0 {
		t.Fatal("no process in the prepared container's runtime cgroup (the test would prove nothing)")
	}
	// While it waits, its runtime group has the least CPU share (it was
	// made beside running tasks).
	shares, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/cpu*", e.CgroupRoot, "*", "runtime", "cpu.shares"))
	want := "2"
	if len(shares) == 0 {
		shares, _ = filepath.Glob(filepath.Join("/sys/fs/cgroup", e.CgroupRoot, "*", "runtime", "cpu.weight"))
		want = "1"
	}
	if len(shares) != 1 {
		t.Fatalf("the prepared container's CPU share files: %v, want one", shares)
	}
	if data, _ := os.ReadFile(shares[0]); strings.TrimSpace(string(data)) != want {
		t.Errorf("%s = %q, want %s", shares[0], data, want)
	}
	child.Kill()
	if entries, _ := os.ReadDir(e.Temp); len(entries) == 0 {
		t.Fatal("expected the killed worker's scratch to remain (the test would prove nothing)")
	}
	if err := e.W.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.AssertClean(t)
	if containers, _ := os.ReadDir(state); len(containers) != 0 {
		t.Errorf("container state left: %v", containers)
	}
	for _, pid := range waiting {
		testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("the prepared container's init %d to die in the sweep", pid), func() bool {
			data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			return err != nil || strings.Contains(string(data), ") Z ")
		})
	}
}

// A prepared container whose image name was imported again since (new
// content under the same name) is not used: the task runs cold, in the
// image its name names now.
func TestWarmContainerOfAReplacedImageIsNotUsed(t *testing.T) {
	testenv.RequireRoot(t)
	requireSeccomp(t)
	dir := t.TempDir()
	img := testenv.TestImage(t)
	e := workertest.NewWarmEnv(t, newRuntimeIn(t, dir, img), 0, time.Hour)
	if err := e.W.Prepare(context.Background(), worker.Shape{Image: "kolejka-test:latest", Network: true}); err != nil {
		t.Fatal(err)
	}
	// The same root file system with one file more, under the same name.
	marked := filepath.Join(t.TempDir(), "marked.tar")
	if err := appendToTar(filepath.Join(img, "rootfs.tar"), marked, "marker", "new image\n"); err != nil {
		t.Fatal(err)
	}
	store, err := image.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Import(context.Background(), "kolejka-test:latest", marked); err != nil {
		t.Fatal(err)
	}
	out, res, err := e.Run(t, task(t, `{"image": "kolejka-test:latest", "args": ["cat", "/marker"], "stdout": "out"}`), worker.Options{})
	if err != nil || res.Status != spec.StatusOK {
		t.Fatalf("%v %+v", err, res)
	}
	if data, _ := os.ReadFile(filepath.Join(out, "out")); string(data) != "new image\n" {
		t.Errorf("the task saw %q in /marker, want the new image's", data)
	}
	if st := e.W.WarmStats(); st.Hits != 0 || st.Misses != 1 {
		t.Errorf("warm stats %+v, want the stale container refused (a miss)", st)
	}
	if err := e.W.Close(); err != nil {
		t.Fatal(err)
	}
	e.AssertClean(t)
}

// appendToTar copies the tar archive src to dst with one more regular file,
// name, holding content.
func appendToTar(src, dst, name, content string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	tr, tw := tar.NewReader(in), tar.NewWriter(out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, content); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return out.Close()
}

// Tasks of ever new shapes (here workspace sizes) do not have the node
// hold a prepared container for each: at most WarmShapes × warm at once.
func TestWarmPoolIsBounded(t *testing.T) {
	e := workertest.NewWarmEnv(t, newRuntime(t), 1, time.Minute)
	for i := range worker.WarmShapes + 3 {
		tk := fmt.Sprintf(`{"image": "kolejka-test:latest", "args": ["true"], "limits": {"workspace": "%dM"}}`, 16+i)
		if _, res, err := e.Run(t, task(t, tk), worker.Options{}); err != nil || res.Status != spec.StatusOK {
			t.Fatalf("task %d: %v %+v", i, err, res)
		}
		if n := e.W.WarmStats().Ready; n > worker.WarmShapes {
			t.Fatalf("%d containers prepared after %d shapes, want at most %d", n, i+1, worker.WarmShapes)
		}
	}
	testenv.WaitFor(t, time.Minute, "the bound's containers prepared", func() bool { return e.W.WarmStats().Ready == worker.WarmShapes })
	e.W.Close()
	e.AssertClean(t)
}
