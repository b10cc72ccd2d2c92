package docker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/kolejka-go/kolejka/internal/dockerapi"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/docker"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// testImage is the image every example task names.
const testImage = "kolejka-test:latest"

var loadOnce sync.Once

// newRuntime connects to the engine and loads the test image into it (a
// `docker save` tar: no registry is reachable), once per test binary.
func newRuntime(t testing.TB) *docker.Runtime {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireDocker(t)
	img := testenv.TestImage(t)
	rt, err := docker.New(docker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	var loadErr error
	loadOnce.Do(func() {
		f, err := os.Open(filepath.Join(img, "docker-save.tar"))
		if err != nil {
			loadErr = err
			return
		}
		defer f.Close()
		if loadErr = docker.LoadArchive(context.Background(), rt.Client(), f); loadErr != nil {
			return
		}
	})
	if loadErr != nil {
		t.Fatalf("loading the test image: %v", loadErr)
	}
	if _, err := rt.Client().ImageInspect(context.Background(), testImage); err != nil {
		t.Fatalf("the engine has no %s after loading build/testimage/docker-save.tar: %v", testImage, err)
	}
	return rt
}

// labelled lists the containers carrying our run label.
func labelled(t testing.TB, rt *docker.Runtime) []string {
	t.Helper()
	list, err := rt.Client().ContainerList(context.Background(), dockerapi.ContainerListOptions{All: true, Labels: []string{docker.LabelRun}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range list {
		names = append(names, strings.Join(c.Names, ",")+" ("+string(c.State)+")")
	}
	return names
}

func assertNoContainers(t testing.TB, rt *docker.Runtime) {
	t.Helper()
	if left := labelled(t, rt); len(left) > 0 {
		t.Errorf("containers left: %v", left)
	}
}

// checked wraps the runtime so that every Destroy is followed by a check
// that the engine no longer has the container: per run, inside the
// conformance suite.
type checked struct {
	*docker.Runtime
	t       *testing.T
	mu      sync.Mutex
	started int
}

func (c *checked) Start(ctx context.Context, ct *worker.Container) (worker.Process, error) {
	p, err := c.Runtime.Start(ctx, ct)
	if err != nil {
		c.assertGone("kolejka-" + ct.RunID)
		return nil, err
	}
	c.mu.Lock()
	c.started++
	c.mu.Unlock()
	return &checkedProcess{Process: p, c: c, name: "kolejka-" + ct.RunID}, nil
}

func (c *checked) assertGone(name string) {
	_, err := c.Client().ContainerInspect(context.Background(), name)
	if !cerrdefs.IsNotFound(err) {
		c.t.Errorf("container %s is still there after Destroy (inspect: %v)", name, err)
	}
}

type checkedProcess struct {
	worker.Process
	c    *checked
	name string
}

func (p *checkedProcess) Destroy() error {
	err := p.Process.Destroy()
	p.c.assertGone(p.name)
	return err
}

func TestConformance(t *testing.T) {
	rt := newRuntime(t)
	c := &checked{Runtime: rt, t: t}
	workertest.Conformance(t, "docker", c)
	if c.started == 0 {
		t.Fatal("no container was started: the suite proved nothing")
	}
	assertNoContainers(t, rt)
}

func TestConformanceBesideObserver(t *testing.T) {
	rt := newRuntime(t)
	c := &checked{Runtime: rt, t: t}
	workertest.ConformanceBesideObserver(t, "docker", c)
	if c.started == 0 {
		t.Fatal("no container was started: the suite proved nothing")
	}
	assertNoContainers(t, rt)
}

func task(t *testing.T, taskJSON string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(taskJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMissingImageIsASystemError(t *testing.T) {
	rt := newRuntime(t)
	workertest.MissingImage(t, workertest.NewEnv(t, rt))
	assertNoContainers(t, rt)
}

// A storage limit needs a storage driver that caps a container's size.
// Here (fuse-overlayfs) it is refused, naming the driver; on an engine
// whose driver can, a task filling its writable layer must meet the cap.
func TestStorageLimit(t *testing.T) {
	rt := newRuntime(t)
	info, err := rt.Client().Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e := workertest.NewEnv(t, rt)
	resultDir, res, err := e.Run(t, task(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "dd if=/dev/zero of=/fill bs=1M count=64; echo $?"],
		"limits": {"storage": "8M", "memory": "128M", "time": "20s"}, "stdout": "out"}`), worker.Options{})
	backing := ""
	for _, kv := range info.DriverStatus {
		if kv[0] == "Backing Filesystem" {
			backing = kv[1]
		}
	}
	limited := func() {
		t.Helper()
		if err != nil {
			t.Fatalf("driver %s: %v", info.Driver, err)
		}
		if out, _ := os.ReadFile(filepath.Join(resultDir, "out")); string(out) == "0\n" {
			t.Fatalf("driver %s: 64M written under an 8M storage limit (%s)", info.Driver, res.Status)
		}
	}
	refused := func() {
		t.Helper()
		if !errors.Is(err, worker.ErrUnsupported) {
			t.Fatalf("driver %s on %s: err = %v, want ErrUnsupported", info.Driver, backing, err)
		}
		if !strings.Contains(err.Error(), "limits.storage") {
			t.Errorf("error %q does not name the limit", err)
		}
		if res == nil || res.Status != spec.StatusSE {
			t.Fatalf("res = %+v, want SE", res)
		}
		t.Logf("refused: %v", err)
	}
	switch d := info.Driver; {
	case d == "btrfs" || d == "zfs" || d == "devicemapper":
		limited()
	case d == "overlay2" && backing == "xfs":
		// Only with the pquota mount option, which the engine does not
		// report: the engine then refuses at create.
		if err != nil {
			refused()
		} else {
			limited()
		}
	default:
		refused()
		if !strings.Contains(err.Error(), d) {
			t.Errorf("error %q does not name the driver %s", err, d)
		}
	}
	e.AssertClean(t)
	assertNoContainers(t, rt)
}

// An interrupted run (the worker's context ends: SIGTERM to the command)
// ends the container and leaves nothing.
func TestInterruptedRunLeavesNothing(t *testing.T) {
	rt := newRuntime(t)
	e := workertest.NewEnv(t, rt)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type outcome struct {
		res *spec.Result
		err error
	}
	done := make(chan outcome, 1)
	begin := time.Now()
	go func() {
		res, err := e.W.Execute(ctx, task(t, `{"image": "kolejka-test:latest", "args": ["sleep", "60"], "limits": {"time": "30s"}}`),
			filepath.Join(t.TempDir(), "result"), worker.Options{})
		done <- outcome{res, err}
	}()
	// Cancel once the container runs.
	testenv.WaitFor(t, time.Minute, "the task's container runs", func() bool {
		for _, c := range labelled(t, rt) {
			if strings.HasSuffix(c, "(running)") {
				return true
			}
		}
		return false
	})
	cancel()
	o := <-done
	res, err := o.res, o.err
	if err == nil || res == nil || res.Status != spec.StatusSE {
		t.Fatalf("res %+v, err %v: want SE", res, err)
	}
	if took := time.Since(begin); took > 20*time.Second {
		t.Errorf("the interrupted task ran on for %s", took)
	}
	e.AssertClean(t)
	assertNoContainers(t, rt)
}

// direct is a container made for the runtime alone, without a worker (and
// without a gate: kolejka-init then runs the command at once).
type direct struct {
	c   *worker.Container
	out chan string // what came out of stdout+stderr, at EOF

	mu  sync.Mutex
	buf []byte // what came out so far
}

func newDirect(t *testing.T, limits spec.Limits, args ...string) *direct {
	t.Helper()
	base := t.TempDir()
	c := &worker.Container{
		RunID:     fmt.Sprintf("test%x", time.Now().UnixNano()),
		Image:     testImage,
		TaskDir:   filepath.Join(base, "task"),
		ResultDir: filepath.Join(base, "result"),
		Scratch:   filepath.Join(base, "runtime"),
		GateDir:   filepath.Join(base, "gate"),
		Limits:    limits,
		Env:       []string{"PATH=/bin:/usr/bin", "HOME=" + worker.ContainerTaskDir},
		InitPath:  testenv.InitBinary(t),
		InitArgs:  append([]string{"--"}, args...),
	}
	for _, d := range []string{c.TaskDir, c.ResultDir, c.Scratch, c.GateDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c.Stdout, c.Stderr = w, w
	d := &direct{c: c, out: make(chan string, 1)}
	go func() {
		chunk := make([]byte, 4096)
		for {
			n, err := r.Read(chunk)
			d.mu.Lock()
			d.buf = append(d.buf, chunk[:n]...)
			d.mu.Unlock()
			if err != nil {
				break
			}
		}
		r.Close()
		d.mu.Lock()
		d.out <- string(d.buf)
		d.mu.Unlock()
	}()
	return d
}

// waitFor waits until the output so far contains s.
func (d *direct) waitFor(t *testing.T, s string) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("%q in the output", s), func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return strings.Contains(string(d.buf), s)
	})
}

// output waits for EOF on the container's output.
func (d *direct) output(t *testing.T) string {
	t.Helper()
	select {
	case s := <-d.out:
		return s
	case <-time.After(30 * time.Second):
		t.Fatal("no EOF on the container's output")
		return ""
	}
}

func i64(v int64) *int64 { return &v }

// The container as Docker sees it: our shape, our labels, the limits
// mapped to the engine. Then Kill, Wait and a double Destroy.
func TestContainerShapeAndLifecycle(t *testing.T) {
	rt := newRuntime(t)
	no := false
	d := newDirect(t, spec.Limits{Memory: i64(100 << 20), Swap: i64(0), Pids: i64(64), Network: &no},
		"sh", "-c", `hostname; id -u; pwd; tr '\0' ' ' </proc/1/cmdline; echo; echo ready; exec sleep 60`)
	d.c.CPUSet = "0"
	p, err := rt.Start(context.Background(), d.c)
	if err != nil {
		t.Fatal(err)
	}
	d.c.Stdout.Close() // as the worker does
	defer p.Destroy()

	ct, err := rt.Client().ContainerInspect(context.Background(), "kolejka-"+d.c.RunID)
	if err != nil {
		t.Fatal(err)
	}
	h := ct.HostConfig
	if ct.Config.Labels[docker.LabelRun] != d.c.RunID || ct.Config.User != "0:0" || ct.Config.WorkingDir != worker.ContainerTaskDir ||
		ct.Config.Hostname != worker.ContainerHostname || ct.Config.Entrypoint[0] != worker.ContainerInit {
		t.Errorf("config %+v", ct.Config)
	}
	if h.Memory != 100<<20 || h.MemorySwap != 100<<20 || h.PidsLimit == nil || *h.PidsLimit != 64 || h.CpusetCpus != "0" ||
		h.NetworkMode != "none" || h.LogConfig.Type != "none" || h.Init == nil || *h.Init {
		t.Errorf("host config: memory %d swap %d pids %v cpuset %q network %q log %q init %v",
			h.Memory, h.MemorySwap, h.PidsLimit, h.CpusetCpus, h.NetworkMode, h.LogConfig.Type, h.Init)
	}
	ro := map[string]bool{}
	for _, m := range ct.Mounts {
		ro[m.Destination] = !m.RW
	}
	for dst, wantRO := range map[string]bool{worker.ContainerTaskDir: false, worker.ContainerResultDir: false,
		worker.ContainerInit: true, worker.ContainerGateDir: false, docker.ContainerStdioDir: true} {
		if got, ok := ro[dst]; !ok || got != wantRO {
			t.Errorf("mount %s: present %v, read-only %v (want %v)", dst, ok, got, wantRO)
		}
	}
	if pid := p.Pid(); pid <= 0 || ct.State == nil || pid != ct.State.Pid {
		t.Errorf("Pid() = %d, engine says %+v", pid, ct.State)
	}

	d.waitFor(t, "ready\n")
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait()
	if err != nil || st.Code != 137 || st.Signal != 9 {
		t.Errorf("Wait = %+v, %v; want 137, SIGKILL", st, err)
	}
	// EOF comes once the container has ended, before Destroy: the worker
	// waits for its captures first.
	out := d.output(t)
	want := "kolejka\n0\n" + worker.ContainerTaskDir + "\n" + worker.ContainerInit + " --env-file " + docker.ContainerStdioDir + "/env --stdin /dev/null --stdout " +
		docker.ContainerStdioDir + "/stdout --stderr " + docker.ContainerStdioDir + "/stdout -- sh -c"
	if !strings.HasPrefix(out, want) || !strings.Contains(out, "ready\n") {
		t.Errorf("output %q, want it to start with %q", out, want)
	}
	if err := p.Kill(); err != nil {
		t.Errorf("Kill after the end: %v", err)
	}
	if err := p.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := p.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if _, err := rt.Client().ContainerInspect(context.Background(), "kolejka-"+d.c.RunID); !cerrdefs.IsNotFound(err) {
		t.Errorf("container still there after Destroy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d.c.Scratch, "stdio")); !os.IsNotExist(err) {
		t.Errorf("FIFO folder left: %v", err)
	}
}

// kolejka-init that fails at once (here: no gate to reach) ends the
// container; Wait says so and the output reaches EOF.
func TestEarlyDeath(t *testing.T) {
	rt := newRuntime(t)
	d := newDirect(t, spec.Limits{}, "true")
	d.c.InitArgs = append([]string{"--gate", worker.ContainerGateDir + "/no-socket"}, d.c.InitArgs...)
	p, err := rt.Start(context.Background(), d.c)
	if err != nil {
		t.Fatal(err)
	}
	d.c.Stdout.Close()
	st, err := p.Wait()
	if err != nil || st.Code != 125 {
		t.Errorf("Wait = %+v, %v; want kolejka-init's 125", st, err)
	}
	d.output(t)
	if err := p.Destroy(); err != nil {
		t.Fatal(err)
	}
	assertNoContainers(t, rt)
}

// A Start that fails (here: kolejka-init missing on the host, so the
// engine refuses the bind mount) leaves no container, no FIFOs, and
// closes its copies of the worker's files.
func TestFailedStartLeavesNothing(t *testing.T) {
	rt := newRuntime(t)
	d := newDirect(t, spec.Limits{}, "true")
	d.c.InitPath = filepath.Join(t.TempDir(), "no-kolejka-init")
	_, err := rt.Start(context.Background(), d.c)
	if err == nil {
		t.Fatal("Start succeeded without kolejka-init")
	}
	t.Logf("Start: %v", err)
	d.c.Stdout.Close()
	if out := d.output(t); out != "" {
		t.Errorf("output %q", out)
	}
	if _, err := rt.Client().ContainerInspect(context.Background(), "kolejka-"+d.c.RunID); !cerrdefs.IsNotFound(err) {
		t.Errorf("container left after a failed Start: %v", err)
	}
	if entries, _ := os.ReadDir(d.c.Scratch); len(entries) > 0 {
		t.Errorf("left in scratch: %v", entries)
	}
	assertNoContainers(t, rt)
}

// With Pull, even an image the engine has is pulled first: here no
// registry answers, so the run is an SE naming the image, where without
// Pull the local image is used.
func TestPullAlwaysPulls(t *testing.T) {
	newRuntime(t) // the local image is there
	rt, err := docker.New(docker.Options{Pull: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	e := workertest.NewEnv(t, rt)
	_, res, err := e.Run(t, task(t, `{"image": "kolejka-test:latest", "args": ["true"]}`), worker.Options{})
	if !errors.Is(err, worker.ErrImage) || !strings.Contains(err.Error(), "kolejka-test:latest") {
		t.Fatalf("err = %v, want ErrImage naming the image (pull with no registry)", err)
	}
	if res == nil || res.Status != spec.StatusSE {
		t.Fatalf("res = %+v, want SE", res)
	}
	e.AssertClean(t)
	assertNoContainers(t, rt)
}

// Sweep removes the containers of dead runs, running or not, and keeps
// those of live runs.
func TestSweepRemovesDeadRunsOnly(t *testing.T) {
	rt := newRuntime(t)
	dead := newDirect(t, spec.Limits{}, "sleep", "60")
	live := newDirect(t, spec.Limits{}, "sleep", "60")
	pDead, err := rt.Start(context.Background(), dead.c)
	if err != nil {
		t.Fatal(err)
	}
	defer pDead.Destroy()
	pLive, err := rt.Start(context.Background(), live.c)
	if err != nil {
		t.Fatal(err)
	}
	defer pLive.Destroy()
	dead.c.Stdout.Close()
	live.c.Stdout.Close()

	if err := rt.Sweep(context.Background(), func(run string) bool { return run != dead.c.RunID }); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() {
		st, err := pDead.Wait()
		if err == nil && st.Code != 137 {
			err = fmt.Errorf("exit %+v", st)
		}
		waited <- err
	}()
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("the dead run's container: %v; want killed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the dead run's container still runs")
	}
	testenv.WaitFor(t, 10*time.Second, "the dead run's container goes", func() bool {
		_, err := rt.Client().ContainerInspect(context.Background(), "kolejka-"+dead.c.RunID)
		return cerrdefs.IsNotFound(err)
	})
	in, err := rt.Client().ContainerInspect(context.Background(), "kolejka-"+live.c.RunID)
	if err != nil || in.State == nil || !in.State.Running {
		t.Errorf("the live run's container was touched: %v", err)
	}
	if err := pLive.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := pDead.Destroy(); err != nil {
		t.Fatal(err)
	}
	assertNoContainers(t, rt)
}
