package hardening_test

// Hostile tasks: the example tasks of testdata/tasks that attack the node
// (bombs, floods, fills, sleepers, spinners, killers, escapes, daemons, the
// network), run through the worker with the runc runtime, again on a warm
// runc node (each task in a container prepared for it, the lean init) and,
// where the task applies to it, the Docker runtime; and a flood of the
// observer's socket by a task of a worker that a real kolejka-observer
// serves. hostile_warm_test.go has the rows for what warm containers add.
//
// What each proves: the verdict and outputs of the task's expected.json,
// and a healthy node afterwards — no process of the run (none carries the
// run's mark in its environment, none is in a cgroup below the worker's
// root; the scan is shown to work by seeing the task's processes during
// the run), no cgroup below the worker's root, no mount below its scratch
// folder, no runc state or Docker container, no scratch or run record, and
// a trivial task right after runs normally. A warm node legitimately holds
// containers prepared for the next tasks: the check first finds that the
// only processes below the root are their waiting inits, one per prepared
// container, then closes the pool and checks the node as a cold one.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/dockerapi"
	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/tasktest"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/tests/hardening"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/docker"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// hostNode is a worker as a node runs it, with the check for what its
// runtime may leave behind.
type hostNode struct {
	name      string
	e         *workertest.Env
	w         *worker.Worker // the worker tasks run on (e.W unless an observer serves it)
	leftovers func(t testing.TB) []string
	// renew, on a warm node (see runcWarmNode), makes a fresh warm worker
	// on e: the health check closes the last one's pool first.
	renew func(t testing.TB) *worker.Worker
	// shapes are those of the tasks run on w: with warm = 1 the pool keeps
	// one container of each prepared.
	shapes map[worker.Shape]bool
}

func runcNode(t *testing.T) *hostNode {
	state := filepath.Join(t.TempDir(), "runc-state")
	e := workertest.NewEnv(t, runcRuntime(t, state))
	return &hostNode{name: "runc", e: e, w: e.W, leftovers: func(testing.TB) []string { return entries(state) }}
}

// runcWarmNode is a runc node as kolejka-foreman runs one with `warm = 1`
// and the lean init: each task takes a container prepared ahead of it
// (run prepares one of the task's shape first), and the pool prepares the
// next of the shape while the task runs.
func runcWarmNode(t *testing.T) *hostNode {
	state := filepath.Join(t.TempDir(), "runc-state")
	rt := runcRuntime(t, state)
	if err := rt.UseLeanInit(filepath.Join(bins(t), "kolejka-runc-init")); err != nil {
		t.Fatal(err)
	}
	e := workertest.NewEnv(t, rt)
	n := &hostNode{name: "runc-warm", e: e, leftovers: func(testing.TB) []string { return entries(state) }}
	// Each worker is closed when the table ends, not with the row that made it.
	n.renew = func(tb testing.TB) *worker.Worker { return warmWorker(tb, t, e, 1) }
	n.w, n.shapes = n.renew(t), map[worker.Shape]bool{}
	return n
}

// warmWorker is a worker on e's folders, cgroup root and runtime that keeps
// warm containers of each shape it has seen prepared; it is closed when
// the test owner ends.
func warmWorker(t, owner testing.TB, e *workertest.Env, warm int) *worker.Worker {
	t.Helper()
	w, err := worker.New(context.Background(), worker.Config{Temp: e.Temp, StateDir: e.State, CgroupRoot: e.CgroupRoot,
		OutputLimit: workertest.OutputLimit, InitPath: testenv.InitBinary(t), Observer: "none", Warm: warm, WarmIdle: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, e.W.Runtime())
	if err != nil {
		t.Fatal(err)
	}
	owner.Cleanup(func() { _ = w.Close() })
	return w
}

// prepareFor prepares a container of the shape of the task in dir on w and
// returns the shape and w's warm hits so far.
func prepareFor(t testing.TB, w *worker.Worker, dir string) (worker.Shape, int64) {
	t.Helper()
	task, err := spec.LoadTask(dir)
	if err != nil {
		t.Fatal(err)
	}
	sh := w.TaskShape(task, worker.Options{})
	if err := w.Prepare(context.Background(), sh); err != nil {
		t.Fatalf("preparing a container for the task: %v", err)
	}
	return sh, w.WarmStats().Hits
}

// waitingInits checks that the only processes below root are prepared
// containers' inits (kolejka-init) waiting at the gate: each alone in the "runtime"
// group of its run (<root>/<run>/runtime), at most max runs; it returns
// how many there are and what is wrong.
func waitingInits(root string, max int) (int, []string) {
	var problems []string
	runs := map[string]int{}
	for _, pid := range cgroupProcs(root) {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
		if err != nil {
			continue // ended meanwhile
		}
		run := ""
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			f := strings.SplitN(l, ":", 3)
			if len(f) != 3 || !strings.Contains(f[2], root) {
				continue
			}
			rel := strings.TrimPrefix(f[2], root+"/")
			if parts := strings.Split(rel, "/"); len(parts) == 2 && parts[1] == "runtime" && (run == "" || run == parts[0]) {
				run = parts[0]
				continue
			}
			run = ""
			problems = append(problems, fmt.Sprintf("process %d in %s: not a waiting container's init", pid, f[2]))
			break
		}
		if run != "" {
			runs[run]++
		}
	}
	for run, k := range runs {
		if k != 1 {
			problems = append(problems, fmt.Sprintf("%d processes in the runtime group of %s, want its init alone", k, run))
		}
	}
	if len(runs) > max {
		problems = append(problems, fmt.Sprintf("%d prepared containers, more than the bound %d", len(runs), max))
	}
	return len(runs), problems
}

func dockerNode(t *testing.T) *hostNode {
	rt := dockerRuntime(t)
	e := workertest.NewEnv(t, rt)
	return &hostNode{name: "docker", e: e, w: e.W, leftovers: func(t testing.TB) []string {
		list, err := rt.Client().ContainerList(context.Background(), dockerapi.ContainerListOptions{All: true, Labels: []string{docker.LabelRun}})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range list {
			out = append(out, strings.Join(c.Names, ",")+" ("+string(c.State)+")")
		}
		return out
	}}
}

// run executes a task folder on the node, scanning /proc for the run's
// processes meanwhile; it returns the result folder, the result, the most
// processes of the run seen at once, and Execute's error.
func (n *hostNode) run(t testing.TB, dir, mark string) (string, *spec.Result, int, error) {
	t.Helper()
	resultDir := filepath.Join(t.TempDir(), "result")
	done := make(chan struct{})
	seen := 0
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if k := len(markedProcs(mark)); k > seen {
				seen = k
			}
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	var hits int64
	if n.renew != nil {
		var sh worker.Shape
		sh, hits = prepareFor(t, n.w, dir)
		n.shapes[sh] = true
	}
	res, err := n.w.Execute(context.Background(), dir, resultDir, worker.Options{})
	close(done)
	wg.Wait()
	if n.renew != nil {
		if now := n.w.WarmStats().Hits; now != hits+1 {
			t.Errorf("the task did not run in the container prepared for it (warm hits %d, then %d)", hits, now)
		}
	}
	return resultDir, res, seen, err
}

// healthy checks that nothing of the run marked mark is left on the node
// and that a trivial task runs normally next; it returns what it saw.
func (n *hostNode) healthy(t testing.TB, mark string) string {
	t.Helper()
	var problems []string
	if p := markedProcs(mark); len(p) > 0 {
		problems = append(problems, fmt.Sprintf("processes of the run left (by mark): %v", p))
	}
	waiting := 0
	if n.renew != nil {
		// The pool prepares the next container of the task's shape while
		// the task runs: once it is ready, the only processes below the
		// root must be waiting inits. Closing the pool destroys them; then
		// the node must hold nothing, as a cold one.
		if !waitFor(time.Minute, func() bool { return n.w.WarmStats().Ready == len(n.shapes) }) {
			problems = append(problems, fmt.Sprintf("the pool holds %d prepared containers, want one for each of the %d shapes run",
				n.w.WarmStats().Ready, len(n.shapes)))
		}
		var p []string
		waiting, p = waitingInits(n.e.CgroupRoot, worker.WarmShapes)
		problems = append(problems, p...)
		if err := n.w.Close(); err != nil {
			problems = append(problems, fmt.Sprintf("closing the pool: %v", err))
		}
	}
	if p := cgroupProcs(n.e.CgroupRoot); len(p) > 0 {
		problems = append(problems, fmt.Sprintf("processes left in cgroups below %s: %v", n.e.CgroupRoot, p))
	}
	if c := cgroupsBelow(n.e.CgroupRoot); len(c) > 0 {
		problems = append(problems, fmt.Sprintf("cgroups left: %v", c))
	}
	if m := mountsBelow(n.e.Temp); m > 0 {
		problems = append(problems, fmt.Sprintf("%d mounts left below %s", m, n.e.Temp))
	}
	if l := n.leftovers(t); len(l) > 0 {
		problems = append(problems, fmt.Sprintf("%s state left: %v", n.name, l))
	}
	if s := entries(n.e.Temp); len(s) > 0 {
		problems = append(problems, fmt.Sprintf("scratch left: %v", s))
	}
	if r := entries(filepath.Join(n.e.State, "runs")); len(r) > 0 {
		problems = append(problems, fmt.Sprintf("run records left: %v", r))
	}
	for _, p := range problems {
		t.Error(p)
	}
	if n.renew != nil {
		n.w, n.shapes = n.renew(t), map[worker.Shape]bool{}
	}
	next := markedCopy(t, gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "echo healthy"], "stdout": "out", "limits": {"time": "10s"}}`), mark+"-next")
	began := time.Now()
	resultDir, res, _, err := n.run(t, next, mark+"-next")
	took := time.Since(began)
	out, _ := os.ReadFile(filepath.Join(resultDir, "out"))
	if err != nil || res == nil || res.Status != spec.StatusOK || string(out) != "healthy\n" {
		t.Errorf("the next task: %+v %v, out %q", res, err, out)
		return "the next task failed"
	}
	if p := markedProcs(mark + "-next"); len(p) > 0 {
		t.Errorf("processes of the next task left: %v", p)
	}
	state := "no runc state"
	if n.name == "docker" {
		state = "no container"
	}
	if len(problems) > 0 {
		return fmt.Sprintf("NOT healthy: %s", strings.Join(problems, "; "))
	}
	if n.renew != nil {
		return fmt.Sprintf("%d prepared container(s) waiting after it, only their inits below the root; pool closed, then healthy: no process (by mark and cgroup), cgroup, mount, %s, scratch; next task OK warm in %v",
			waiting, state, took.Round(time.Millisecond))
	}
	return fmt.Sprintf("healthy: no process (by mark and cgroup), cgroup, mount, %s, scratch; next task OK in %v", state, took.Round(time.Millisecond))
}

// verdict sums a result up for the table.
func verdict(res *spec.Result) string {
	s := string(res.Status)
	if res.Result != nil {
		s += fmt.Sprintf(" exit %d", *res.Result)
	}
	if res.Stats.Time != nil {
		s += fmt.Sprintf(", %v wall", res.Stats.Time.Round(time.Millisecond))
	}
	if res.Stats.CPU.Usage != nil {
		s += fmt.Sprintf(", %v CPU", res.Stats.CPU.Usage.Round(time.Millisecond))
	}
	if res.Stats.Memory.MaxUsage != nil {
		s += fmt.Sprintf(", memory peak %.1f MiB", float64(*res.Stats.Memory.MaxUsage)/(1<<20))
	}
	if res.Stats.Pids.MaxUsage != nil {
		s += fmt.Sprintf(", pids peak %d", *res.Stats.Pids.MaxUsage)
	}
	return s
}

// hostileCase is an example task of testdata/tasks as a row.
type hostileCase struct {
	id, task, name, expect string
	busy                   bool // runs long enough that its processes must be seen during the run
}

func TestHostileTasks(t *testing.T) {
	testenv.RequireRoot(t)
	cases, err := tasktest.Cases()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]tasktest.Case{}
	for _, c := range cases {
		byName[c.Name] = c
	}
	hostile := []hostileCase{
		{"H01", "forkbomb", "fork bomb (`f() { f | f & }; f`) under pids 32", "PLE, pids peak ≤ 32", true},
		{"H02", "memorybomb", "memory bomb (512 MiB at once) under memory 64M, no swap", "MLE exit 247 (Kolejka's 256−9 for the kernel's SIGKILL), memory peak ≤ 64M", false},
		{"H03", "threadbomb", "thread bomb (100000 threads) under pids 64", "PLE, 60–63 threads made, pids peak ≤ 64", false},
		{"H04", "workspace_fill", "disk fill of the task folder (100 MiB into a 16M workspace)", "ENOSPC inside, OLE; the node's disk untouched (tmpfs)", false},
		{"H05", "storage_fill", "disk fill of the container's writable layer (100 MiB into storage 8M)", "ENOSPC inside, OLE", false},
		{"H06", "output_flood", "output flood (`yes` to stdout)", "OLE, stdout exactly the 1 MiB cap", false},
		{"H07", "sleeper", "sleeper (sleep 60) under time 1s", "TLE exit 137 within 1–1.5 s, CPU ≈ 0", true},
		{"H08", "spinner", "CPU spinner under time 1s on one core", "TLE exit 137 within 1–1.5 s, CPU 0.25–1.1 s", true},
		{"H09", "killer", "kills its parent's processes (kill -9 -1, PID 1, its group)", "only itself dies: RE exit 247 (256−9); init and the node unharmed", false},
		{"H10", "network_probe", "reaches for the network with network=false", "OK: only loopback, 192.0.2.1 unreachable", false},
		{"H11", "escape", "escape attempts: PID 1's environment and root, mount, sysrq, mknod, cgroupfs, a user namespace, writes above its folder", "OK: every attempt refused or contained", false},
		{"H12", "daemons", "leaves daemons behind (ignoring SIGTERM/SIGHUP, in a new session)", "OK at once (< 1 s); the daemons die with the task", false},
		{"H14", "inode_fill", "fills the task folder's inodes (empty files until none is left, 1M workspace)", "ENOSPC inside, OLE, more than 100 files made; the node's inodes untouched (tmpfs)", false},
		{"H15", "stderr_flood", "output flood on stderr (`yes >&2`) after a line of stdout", "OLE, stderr exactly the 1 MiB cap, stdout intact", false},
	}
	// One node per runtime for the whole table. Without a Docker engine
	// the Docker parts skip (fail under KOLEJKA_REQUIRE_PRIVILEGED=1).
	nodes := map[string]*hostNode{"runc": runcNode(t), "runc-warm": runcWarmNode(t)}
	if exec.Command("docker", "info").Run() == nil {
		nodes["docker"] = dockerNode(t)
	}
	for _, h := range hostile {
		c, ok := byName[h.task]
		if !ok {
			t.Fatalf("no example task %s in testdata/tasks", h.task)
		}
		t.Run(h.id, func(t *testing.T) {
			var runtimes []string
			for _, rt := range []string{"runc", "docker"} {
				if c.AppliesTo(rt) {
					runtimes = append(runtimes, rt)
				}
			}
			if c.AppliesTo("runc") {
				// The same runtime through containers prepared ahead.
				runtimes = append(runtimes, "runc-warm")
			}
			r := caseOf(t, hardening.Hostile, h.id, fmt.Sprintf("%s (testdata/tasks/%s; %s)", h.name, h.task, strings.Join(runtimes, ", ")),
				h.expect+"; the node healthy after it")
			for _, rt := range runtimes {
				t.Run(rt, func(t *testing.T) {
					n := nodes[rt]
					if n == nil {
						testenv.RequireDocker(t)
					}
					mark := h.id + "-" + rt + "-" + randomHex(6)
					resultDir, res, seen, err := n.run(t, markedCopy(t, c.Dir, mark), mark)
					if res == nil {
						t.Fatalf("no result: %v", err)
					}
					if err != nil {
						t.Errorf("system error: %v", err)
					}
					warm := ""
					if n.renew != nil {
						warm = " in the container prepared for it (a warm hit)" // run checks it
					}
					r.Observe("%s: %s%s; %d of its processes seen at once during the run", rt, verdict(res), warm, seen)
					for _, bad := range c.Check(resultDir, res, workertest.OutputLimit) {
						t.Error(bad)
					}
					if h.busy && seen == 0 {
						t.Errorf("the scan of /proc never saw the run's processes: it proves nothing")
					}
					r.Observe("%s", n.healthy(t, mark))
				})
			}
		})
	}
}

// serveObserver starts a real kolejka-observer on a socket and state folder
// of the test's, sweeping only below n's cgroup root, and makes n's worker
// one that the daemon serves; it returns the socket and the daemon.
func serveObserver(t *testing.T, n *hostNode, bin string) (string, *gridtest.Proc) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "observer.sock")
	daemon := gridtest.StartOwned(t, "kolejka-observer", filepath.Join(dir, "observer.log"), filepath.Join(bin, "kolejka-observer"),
		"--socket", sock, "--state", filepath.Join(dir, "state"), "--sweep", n.e.CgroupRoot, "-v")
	gridtest.WaitFor(t, "the observer's socket", 10*time.Second, func() bool {
		status, _, err := observerRequest(sock, "GET", "", nil)
		return err == nil && status == 200
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("observer log:\n%s", gridtest.Tail(daemon.Log))
		}
	})
	w, err := worker.New(context.Background(), worker.Config{Temp: n.e.Temp, StateDir: n.e.State, CgroupRoot: n.e.CgroupRoot,
		OutputLimit: workertest.OutputLimit, InitPath: filepath.Join(bin, "kolejka-init"), Observer: sock,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, n.e.W.Runtime())
	if err != nil {
		t.Fatal(err)
	}
	n.w = w
	return sock, daemon
}

// TestHostileObserverFlood: a task floods the observer's socket while a
// real kolejka-observer serves the worker: as many connections as it can
// open, a session asked for on each (kept, never closed), hundreds of idle
// connections held. The task's cgroup_descendants bounds the sessions it
// gets; the daemon answers the test within a bound all along; the task
// ends OK; no session is left and the node is healthy.
func TestHostileObserverFlood(t *testing.T) {
	bin := bins(t)
	r := caseOf(t, hardening.Hostile, "H13", "floods the observer's socket: a session asked for on every connection as fast as it can for 3 s, 300 idle connections held (cgroup_descendants 4, a real kolejka-observer serving the worker)",
		"OK with exactly 4 sessions granted and the rest refused (403); the daemon answers GET / within 1 s throughout; no session left; the node healthy after it")
	n := runcNode(t)

	sock, daemon := serveObserver(t, n, bin)
	sessions := func() int {
		status, body, err := observerRequest(sock, "GET", "", nil)
		if err != nil || status != 200 {
			return -1
		}
		m := regexp.MustCompile(`"sessions":\s*(\d+)`).FindSubmatch(body)
		if m == nil {
			return -1
		}
		k, _ := strconv.Atoi(string(m[1]))
		return k
	}
	before := sessions()

	// The test asks GET / every 50 ms while the task runs.
	stop := make(chan struct{})
	var probes, failures, most int
	var slowest time.Duration
	var pmu sync.Mutex
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			began := time.Now()
			c, err := net.DialTimeout("unix", sock, time.Second)
			ok := false
			if err == nil {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				buf := make([]byte, 256)
				k, _ := io.ReadAtLeast(c, buf, 12)
				ok = strings.HasPrefix(string(buf[:k]), "HTTP/1.1 200")
				if m := regexp.MustCompile(`"sessions":\s*(\d+)`).FindSubmatch(buf[:k]); m != nil {
					s, _ := strconv.Atoi(string(m[1]))
					pmu.Lock()
					most = max(most, s)
					pmu.Unlock()
				}
				c.Close()
			}
			d := time.Since(began)
			pmu.Lock()
			probes++
			if !ok {
				failures++
			}
			slowest = max(slowest, d)
			pmu.Unlock()
		}
	}()

	mark := "H13-" + randomHex(6)
	task := markedCopy(t, gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["kolejka-flood", "`+observer.DefaultSocket+`", "3", "300"],
		"limits": {"cgroup_descendants": 4, "pids": 64, "memory": "64M", "time": "20s"}, "stdout": "out"}`), mark)
	resultDir, res, seen, err := n.run(t, task, mark)
	close(stop)
	if res == nil {
		t.Fatalf("no result: %v", err)
	}
	out, _ := os.ReadFile(filepath.Join(resultDir, "out"))
	pmu.Lock()
	r.Observe("%s; the task says %s; %d of its processes seen during the run", verdict(res), strings.TrimSpace(string(out)), seen)
	r.Observe("GET / from the test: %d probes during the flood, %d failed, slowest %v, most sessions seen %d", probes, failures, slowest.Round(time.Millisecond), most)
	if failures > 0 || slowest > time.Second || probes < 20 {
		t.Errorf("the daemon did not answer within 1 s throughout: %d probes, %d failed, slowest %v", probes, failures, slowest)
	}
	if most > before+1+4 {
		t.Errorf("%d sessions open at once: more than the task's own and its 4", most)
	}
	pmu.Unlock()
	if err != nil || res.Status != spec.StatusOK {
		t.Errorf("verdict %s, error %v: want OK", res.Status, err)
	}
	var opened, refused, other, failed, idle int
	if _, serr := fmt.Sscanf(string(out), "opened=%d refused=%d other=%d failed=%d idle=%d", &opened, &refused, &other, &failed, &idle); serr != nil {
		t.Fatalf("the flood's report %q: %v", out, serr)
	}
	if opened != 4 || refused < 100 || idle < 100 {
		t.Errorf("opened %d (want exactly 4: cgroup_descendants), refused %d, idle %d: not the flood intended", opened, refused, idle)
	}
	gridtest.WaitFor(t, "the daemon to drop the task's sessions", 5*time.Second, func() bool { return sessions() == before })
	r.Observe("sessions open after the task: %d (before: %d)", sessions(), before)
	r.Observe("%s", n.healthy(t, mark))
	if k := sessions(); k != before {
		t.Errorf("%d sessions after the next task, %d before", k, before)
	}
	if !daemon.Running() {
		t.Errorf("the daemon died")
	}
}

// waitFor polls cond every 20 ms for up to d: whether it came true.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
