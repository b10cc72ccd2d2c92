package hardening_test

// Hostile tasks against what warm containers add to a node: containers
// prepared ahead of their tasks (made through the sealed lean init,
// kolejka-runc-init, their kolejka-init then waiting at the gate), on a node that
// keeps them as kolejka-foreman does with `warm = 1` (runcWarmNode).

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/tests/hardening"
	"github.com/kolejka-go/kolejka/worker"
)

// neighbourLimits are the limits of every task of TestHostileWarmNeighbour:
// one shape, so that each may take any of the containers prepared.
const neighbourLimits = `{"network": false, "workspace": "4M", "storage": "4M", "pids": 32, "memory": "64M", "time": "20s"}`

// neighbourAttack plants a file in every folder it may write to, then for
// 3 s scans /proc over and over: every process it sees that is not its own
// shell or timer is sent SIGKILL and SIGSTOP, and its /proc/<pid>/exe is
// opened for writing. The loop forks nothing (builtins only), so what it
// sees is what else lives in its pid namespace. It reports what it saw.
const neighbourAttack = `p=plant-$KOLEJKA_HARDENING_MARK
planted=""
for d in /tmp /dev/shm /dev/mqueue /dev /var/tmp /root /run /var/lib/kolejka/task /var/lib/kolejka/result /var/lib/kolejka/gate /var/lib/kolejka / /proc/1/root/tmp; do
  if { echo planted > $d/$p; } 2>/dev/null; then planted="$planted $d"; fi
done
echo "planted:$planted"
sleep 3 &
timer=$!
rounds=0; seen=""; signalled=0; exewrites=0
while read st < /proc/$timer/stat 2>/dev/null; do
  case "$st" in *") Z "*) break;; esac
  rounds=$((rounds+1))
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [ "$pid" = "$$" ] && continue
    [ "$pid" = "$timer" ] && continue
    read comm < $d/comm 2>/dev/null || continue
    case " $seen " in *" $pid:$comm "*) ;; *) seen="$seen $pid:$comm";; esac
    kill -KILL $pid 2>/dev/null && signalled=$((signalled+1))
    kill -STOP $pid 2>/dev/null
    if { echo x > $d/exe; } 2>/dev/null; then exewrites=$((exewrites+1)); fi
  done
done
echo "rounds: $rounds"
echo "seen:$seen"
echo "signalled: $signalled"
echo "exe writes: $exewrites"
echo "init fds: $(ls -l /proc/[0-9]*/fd/ 2>/dev/null | grep -c -e runc-init -e memfd)"
`

// neighbourLook is the task run after the attack in a container prepared
// before or during it: it lists where the attack planted (and its own file,
// so that the listing is seen to work) and what runs beside it.
const neighbourLook = `echo own > /tmp/own-$KOLEJKA_HARDENING_MARK
ls -a /tmp /dev/shm /dev /var/tmp /root /run /var/lib/kolejka/task /var/lib/kolejka/result /var/lib/kolejka / 2>&1
echo "pid1: $(cat /proc/1/comm)"
echo "procs: $(ls -d /proc/[0-9]* | wc -l)"
`

// TestHostileWarmNeighbour: a task goes for the containers prepared for
// the tasks after it (one prepared before it started, waiting at the exec
// fifo throughout; one prepared while it runs): signals to every process
// it can see, writes to their executables, plants in every writable
// folder. Each next task runs in its prepared container, warm, and sees
// none of it; the lean init binary on the host is unchanged.
func TestHostileWarmNeighbour(t *testing.T) {
	bin := bins(t)
	r := caseOf(t, hardening.Hostile, "H26", "goes for the next tasks' prepared containers (runc-warm, lean init): for 3 s kills and stops every process it sees and opens its /proc/<pid>/exe for writing, plants files in /tmp, /dev/shm, /dev, /run, its task, result and gate folders…; one container prepared before it waits (its kolejka-init at the gate) throughout, one is prepared while it runs",
		"it sees only its own processes and its kolejka-init, no write to an executable succeeds, no descriptor of the init binary; both containers prepared survive (warm hits, no stale one) and their tasks run OK in them, seeing no plant; the lean init binary unchanged; the node healthy after it")
	leanPath := filepath.Join(bin, "kolejka-runc-init")
	leanBefore, err := os.ReadFile(leanPath)
	if err != nil {
		t.Fatal(err)
	}
	n := runcWarmNode(t)
	mark := "H26-" + randomHex(6)
	attack := markedCopy(t, gridtest.WriteTask(t, fmt.Sprintf(`{"image": "kolejka-test:latest", "args": ["sh", "-c", %q], "limits": %s, "stdout": "out"}`,
		neighbourAttack, neighbourLimits)), mark)
	task, err := spec.LoadTask(attack)
	if err != nil {
		t.Fatal(err)
	}
	sh := n.w.TaskShape(task, worker.Options{})
	n.shapes[sh] = true
	// The attacker's container, then the one that waits through the attack.
	for range 2 {
		if err := n.w.Prepare(context.Background(), sh); err != nil {
			t.Fatal(err)
		}
	}
	waitingBefore := cgroupProcs(n.e.CgroupRoot)
	if len(waitingBefore) != 2 {
		t.Fatalf("%d processes below the root with two containers prepared, want their two waiting inits", len(waitingBefore))
	}
	var inits []string
	for _, pid := range waitingBefore {
		exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
		inits = append(inits, filepath.Base(exe))
		if filepath.Base(exe) != "kolejka-init" {
			t.Errorf("the waiting init %d runs %q, not kolejka-init", pid, exe)
		}
	}

	var res *spec.Result
	var runErr error
	resultDir := filepath.Join(t.TempDir(), "result")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, runErr = n.w.Execute(context.Background(), attack, resultDir, worker.Options{})
	}()
	gridtest.WaitFor(t, "the attack running", 30*time.Second, func() bool { return len(markedProcs(mark)) > 0 })
	began := time.Now()
	if err := n.w.Prepare(context.Background(), sh); err != nil {
		t.Errorf("preparing a container while the attack runs: %v", err)
	}
	prepTook := time.Since(began)
	duringAttack := len(markedProcs(mark)) > 0
	wg.Wait()
	if res == nil {
		t.Fatalf("the attack: no result: %v", runErr)
	}
	if !duringAttack {
		t.Errorf("the attack ended before the third container was prepared (in %v): the row would prove nothing of it", prepTook)
	}
	out, _ := os.ReadFile(filepath.Join(resultDir, "out"))
	report := string(out)
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `:(.*)$`).FindStringSubmatch(report)
		if m == nil {
			t.Errorf("the attack's report lacks %q:\n%s", name, report)
			return ""
		}
		return strings.TrimSpace(m[1])
	}
	rounds, _ := strconv.Atoi(field("rounds"))
	seen := strings.Fields(field("seen"))
	r.Observe("attack: %s; prepared before it: %d waiting inits (%s); one more prepared during it in %v (the attack still running: %v)",
		verdict(res), len(waitingBefore), strings.Join(inits, ", "), prepTook.Round(time.Millisecond), duringAttack)
	r.Observe("its report: planted in [%s]; %d rounds of /proc; saw %v; signalled %s; exe writes %s; init descriptors %s",
		field("planted"), rounds, seen, field("signalled"), field("exe writes"), field("init fds"))
	if runErr != nil || res.Status != spec.StatusOK {
		t.Errorf("the attack: %s, %v; want OK (it only reports)", res.Status, runErr)
	}
	if rounds < 2 || len(seen) == 0 {
		t.Errorf("the attack scanned /proc %d times and saw %v: it proves nothing", rounds, seen)
	}
	for _, s := range seen {
		if s != "1:kolejka-init" {
			t.Errorf("the attack saw %s: a process that is neither its own nor its kolejka-init", s)
		}
	}
	if w := field("exe writes"); w != "0" {
		t.Errorf("%s writes to a process's executable succeeded", w)
	}
	if d := field("init fds"); d != "0" {
		t.Errorf("%s descriptors of an init binary reachable from the task", d)
	}
	// The container that waited through the attack, then the one prepared
	// during it.
	for i, which := range []string{"prepared before the attack", "prepared during it"} {
		nmark := fmt.Sprintf("%s-next%d", mark, i)
		look := markedCopy(t, gridtest.WriteTask(t, fmt.Sprintf(`{"image": "kolejka-test:latest", "args": ["sh", "-c", %q], "limits": %s, "stdout": "out"}`,
			neighbourLook, neighbourLimits)), nmark)
		hits := n.w.WarmStats().Hits
		dir := filepath.Join(t.TempDir(), "result")
		lres, err := n.w.Execute(context.Background(), look, dir, worker.Options{})
		if lres == nil {
			t.Fatalf("the task in the container %s: no result: %v", which, err)
		}
		warm := n.w.WarmStats().Hits == hits+1
		lout, _ := os.ReadFile(filepath.Join(dir, "out"))
		planted := regexp.MustCompile(`plant-\S+`).FindAllString(string(lout), -1)
		beside := regexp.MustCompile(`(?m)^(pid1|procs): .*$`).FindAllString(string(lout), -1)
		r.Observe("the task in the container %s: %s; warm: %v; its listing shows its own file: %v; plants seen: %d; %s",
			which, verdict(lres), warm, bytes.Contains(lout, []byte("own-"+nmark)), len(planted), strings.Join(beside, ", "))
		if !warm {
			t.Errorf("the task did not run in the container %s (warm hits %d, then %d)", which, hits, n.w.WarmStats().Hits)
		}
		if err != nil || lres.Status != spec.StatusOK || lres.Result == nil || *lres.Result != 0 {
			t.Errorf("the task in the container %s: %s, %v; want OK exit 0", which, lres.Status, err)
		}
		if !bytes.Contains(lout, []byte("own-"+nmark)) || !bytes.Contains(lout, []byte("pid1: kolejka-init")) {
			t.Errorf("the task in the container %s: its listing does not show its own file and init (it proves nothing):\n%s", which, lout)
		}
		if len(planted) > 0 {
			t.Errorf("the task in the container %s sees the attack's plants %v:\n%s", which, planted, lout)
		}
	}
	// A container whose init the attack had killed would have been found
	// stale and destroyed: a miss, and the task cold.
	if st := n.w.WarmStats(); st.Misses != 0 || st.Hits != 3 {
		t.Errorf("warm stats %+v: want 3 hits (the attack and the two next tasks) and no miss", st)
	}
	leanAfter, err := os.ReadFile(leanPath)
	if err != nil || !bytes.Equal(leanBefore, leanAfter) {
		t.Errorf("the lean init binary %s changed (%v)", leanPath, err)
	}
	r.Observe("lean init %s unchanged (%d bytes)", leanPath, len(leanAfter))
	r.Observe("%s", n.healthy(t, mark))
}

// TestHostileWarmShapes: tasks whose shape changes every run (workspace
// and storage sizes, network on and off) on a node keeping warm = 1 of
// each shape seen. Counted on the node itself all along (runc's container
// state, the runs' cgroups, scratch folders, the processes below the
// root), it never holds more than the bound (worker.WarmShapes) of
// prepared containers beside the task that runs.
func TestHostileWarmShapes(t *testing.T) {
	const tasks = 12
	bound := worker.WarmShapes + 1 // the prepared ones and the running task's
	r := caseOf(t, hardening.Hostile, "H27", fmt.Sprintf("%d tasks in a row, each of a shape not seen before (workspace 16M…27M, storage on every other, network on every third) on a node with warm = 1 (runc-warm)", tasks),
		fmt.Sprintf("the node never holds more than WarmShapes (%d) prepared containers beside the running task, counted in runc's state, the runs' cgroups, scratch folders and container inits; the bound is reached; every task OK; the node healthy after it", worker.WarmShapes))
	n := runcWarmNode(t)
	mark := "H27-" + randomHex(6)
	state := func() int { return len(n.leftovers(t)) }
	runCgroups := func() int {
		most := 0
		for _, d := range cgroupDirs(n.e.CgroupRoot) {
			list, _ := os.ReadDir(d)
			k := 0
			for _, e := range list {
				if e.IsDir() {
					k++
				}
			}
			most = max(most, k)
		}
		return most
	}
	scratch := func() int { return len(entries(n.e.Temp)) }
	// Runs with a process in their runtime group: a prepared container's
	// waiting init, or the running task's container init.
	inits := func() int { k, _ := waitingInits(n.e.CgroupRoot, 1<<20); return k }
	var mu sync.Mutex
	var most [4]int
	sample := func() {
		v := [4]int{state(), runCgroups(), scratch(), inits()}
		mu.Lock()
		for i := range v {
			most[i] = max(most[i], v[i])
		}
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	began := time.Now()
	for i := range tasks {
		limits := fmt.Sprintf(`"workspace": "%dM", "network": %v, "time": "10s"`, 16+i, i%3 == 0)
		if i%2 == 1 {
			limits += fmt.Sprintf(`, "storage": "%dM"`, 8+i)
		}
		dir := markedCopy(t, gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["true"], "limits": {`+limits+`}}`), fmt.Sprintf("%s-%d", mark, i))
		task, err := spec.LoadTask(dir)
		if err != nil {
			t.Fatal(err)
		}
		n.shapes[n.w.TaskShape(task, worker.Options{})] = true
		res, err := n.w.Execute(context.Background(), dir, filepath.Join(t.TempDir(), "result"), worker.Options{})
		if err != nil || res == nil || res.Status != spec.StatusOK {
			t.Fatalf("task %d: %+v %v", i, res, err)
		}
		if k := n.w.WarmStats().Ready; k > worker.WarmShapes {
			t.Errorf("%d containers prepared after %d shapes, want at most %d", k, i+1, worker.WarmShapes)
		}
	}
	burst := time.Since(began)
	// The last preparations run on after the last task: the bound must be
	// reached (or the row proves nothing) and held.
	full := waitFor(time.Minute, func() bool { return n.w.WarmStats().Ready == worker.WarmShapes })
	sample()
	close(stop)
	wg.Wait()
	if len(n.shapes) != tasks {
		t.Fatalf("%d shapes among %d tasks: the burst is not what it should be", len(n.shapes), tasks)
	}
	st := n.w.WarmStats()
	r.Observe("%d tasks of %d shapes in %v: all OK, warm hits %d, misses %d; prepared and waiting after the burst: %d (bound reached: %v)",
		tasks, len(n.shapes), burst.Round(time.Millisecond), st.Hits, st.Misses, st.Ready, full)
	r.Observe("most seen at once on the node: %d containers in runc's state, %d run cgroups, %d scratch folders, %d container inits (runtime groups with a process)", most[0], most[1], most[2], most[3])
	if !full {
		t.Errorf("%d containers prepared after the burst, want the bound's %d (fewer: the row proves nothing)", st.Ready, worker.WarmShapes)
	}
	for i, what := range []string{"containers in runc's state", "run cgroups", "scratch folders", "container inits"} {
		if most[i] > bound {
			t.Errorf("%d %s at once: more than the bound's %d prepared and the running task's", most[i], what, worker.WarmShapes)
		}
		if most[i] < worker.WarmShapes {
			t.Errorf("at most %d %s seen: the count does not see the prepared containers", most[i], what)
		}
	}
	// Only the first WarmShapes shapes have a container: the pool, not the
	// shapes seen, is what healthy expects.
	n.shapes = map[worker.Shape]bool{}
	for i := range worker.WarmShapes {
		n.shapes[worker.Shape{Image: fmt.Sprint(i)}] = true
	}
	r.Observe("%s", n.healthy(t, mark))
}

// TestHostileWarmForemanKilled: kill -9 of a real kolejka-foreman with
// warm = 1 while it holds a container prepared for the next task: the
// container outlives it (its waiting init, cgroups, mounts, runc state,
// scratch, run record); the foreman started again sweeps all of it before
// it takes work, and runs the next task.
func TestHostileWarmForemanKilled(t *testing.T) {
	r := caseOf(t, hardening.Hostile, "H28", "kill -9 of a kolejka-foreman (warm = 1, runc, the lean init) holding a container prepared for the next task, its kolejka-init waiting at the gate",
		"the waiting kolejka-init ends by itself when its gate drops with the foreman; the rest of the prepared container outlives it (cgroups, mounts, runc state, scratch, run record); the restarted foreman sweeps all of it before it takes work, says so, and runs the next task OK")
	g := newGrid(t, "", "")
	state := filepath.Join(t.TempDir(), "state")
	node := g.StartForeman("a", nil, "auto_tags = no", "warm = 1", "state = "+state)
	scratch := filepath.Join(node.Temp, "scratch")
	mark := "H28-" + randomHex(6)
	key := g.Put(markedCopy(t, gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "echo first"], "limits": {"time": "20s"}, "stdout": "out"}`), mark))
	if _, res, err := g.result(key, time.Minute); err != nil || res.Status != spec.StatusOK {
		t.Fatalf("the first task: %+v %v", res, err)
	}
	// The first task of its shape ran cold; the foreman prepares the next
	// container of the shape after it.
	var run string
	var inits []int
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("find", node.Temp, state, "-maxdepth", "3").CombinedOutput()
			t.Logf("the node's folders:\n%s", out)
		}
	})
	gridtest.WaitFor(t, "a container prepared, its init waiting", time.Minute, func() bool {
		runs := entries(scratch)
		if len(runs) != 1 {
			return false
		}
		run = strings.TrimPrefix(runs[0], "kolejka-run-")
		inits = cgroupProcs("/" + run + "/runtime")
		if len(inits) != 1 || !slices.Contains(entries(filepath.Join(state, "runc")), "kolejka-"+run) {
			return false
		}
		// Prepared, not being prepared: runc's init has become
		// kolejka-init, which waits at the gate.
		exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(inits[0]), "exe"))
		return filepath.Base(exe) == "kolejka-init"
	})
	// The run's cgroup, wherever the foreman's root is.
	var group string
	data, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(inits[0]), "cgroup"))
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) == 3 && strings.HasSuffix(f[2], "/"+run+"/runtime") {
			group = strings.TrimSuffix(f[2], "/runtime")
		}
	}
	if group == "" {
		t.Fatalf("the waiting init's cgroups name no group of run %s:\n%s", run, data)
	}
	exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(inits[0]), "exe"))
	node.P.Kill9()
	alive := func(pid int) bool {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		return err == nil && !strings.Contains(string(data), ") Z ")
	}
	left := func() []string {
		var out []string
		if alive(inits[0]) {
			out = append(out, fmt.Sprintf("its waiting init (pid %d)", inits[0]))
		}
		if m := mountsBelow(filepath.Join(scratch, "kolejka-run-"+run)); m > 0 {
			out = append(out, fmt.Sprintf("%d mounts", m))
		}
		if c := cgroupDirs(group); len(c) > 0 {
			out = append(out, fmt.Sprintf("cgroups in %d hierarchies", len(c)))
		}
		if slices.Contains(entries(filepath.Join(state, "runc")), "kolejka-"+run) {
			out = append(out, "runc state")
		}
		if fileExists(filepath.Join(scratch, "kolejka-run-"+run)) {
			out = append(out, "scratch")
		}
		if fileExists(filepath.Join(state, "worker", "runs", run)) {
			out = append(out, "run record")
		}
		return out
	}
	// Its gate went with the foreman: kolejka-init, waiting there for a
	// task, ends (as PID 1, taking the container's processes with it).
	gridtest.WaitFor(t, "the waiting init to end with its gate", 10*time.Second, func() bool { return !alive(inits[0]) })
	leftAtKill := left()
	r.Observe("prepared container %s (its init %s, waiting; cgroup %s) left by the killed foreman: %s", run, filepath.Base(exe), group, strings.Join(leftAtKill, ", "))
	if len(leftAtKill) < 5 || filepath.Base(exe) != "kolejka-init" {
		t.Errorf("the killed foreman left only %v of a container whose init runs %q: the sweep would prove little", leftAtKill, exe)
	}
	g.StartForeman("a", nil)
	swept := len(gridtest.LogLines(node.Log, "sweeping leftovers of a dead run")) > 0
	if l := left(); len(l) > 0 {
		t.Errorf("left after the restarted foreman's sweep: %v", l)
	}
	if !swept {
		t.Errorf("the restarted foreman did not say it swept the dead run")
	}
	next, took, err := g.executeNext(t, time.Minute)
	if err != nil {
		t.Fatalf("the next task: %v", err)
	}
	r.Observe("restarted: swept before taking work (said so: %v), nothing of %s left; the next task %s in %v", swept, run, next.Status, took.Round(time.Millisecond))
}

// TestHostileWarmNoPreparationBeside: a CPU spinner on a warm node whose
// pool wants a container of the spinner's own, new shape. Containers are
// made only while no task runs (worker.warmPool): none may be made beside
// the spinner, which would take CPU from it; the one it asked for is made
// once its result is out.
func TestHostileWarmNoPreparationBeside(t *testing.T) {
	const before = worker.WarmShapes - 1
	r := caseOf(t, hardening.Hostile, "H29", fmt.Sprintf("a CPU spinner (time 2s, one core) of a shape not seen before, on a node with warm = 1 (runc-warm) holding %d containers prepared for the tasks before it", before),
		"no container is made while the spinner runs (runc's state and the scratch folders hold only the ones ready before it and its own run throughout); TLE; the container of its shape is made once its result is out; the node healthy after it")
	n := runcWarmNode(t)
	mark := "H29-" + randomHex(6)
	shapeTask := func(i int, args string, limits string) string {
		dir := markedCopy(t, gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": `+args+`, "limits": {`+limits+`}}`), fmt.Sprintf("%s-%d", mark, i))
		task, err := spec.LoadTask(dir)
		if err != nil {
			t.Fatal(err)
		}
		n.shapes[n.w.TaskShape(task, worker.Options{})] = true
		return dir
	}
	for i := range before {
		dir := shapeTask(i, `["true"]`, fmt.Sprintf(`"workspace": "%dM", "time": "10s"`, 16+i))
		if res, err := n.w.Execute(context.Background(), dir, filepath.Join(t.TempDir(), "result"), worker.Options{}); err != nil || res == nil || res.Status != spec.StatusOK {
			t.Fatalf("task %d: %+v %v", i, res, err)
		}
	}
	// The containers those tasks asked for, made between them and after
	// the last: the spinner starts with none being made.
	if !waitFor(time.Minute, func() bool { return n.w.WarmStats().Ready == before }) {
		t.Fatalf("%d containers prepared after %d tasks of new shapes, want %d", n.w.WarmStats().Ready, before, before)
	}
	spin := shapeTask(before, `["sh", "-c", "while :; do :; done"]`, `"workspace": "8M", "time": "2s", "cpus": 1`)
	counts := func() (runcState, scratch int) { return len(n.leftovers(t)), len(entries(n.e.Temp)) }
	var mostState, mostScratch int
	// Watched until its result is out: the container it asked for may be
	// made from then on, beside its tear-down.
	published, done := make(chan struct{}), make(chan struct{})
	var res *spec.Result
	var err error
	go func() {
		defer close(done)
		res, err = n.w.Execute(context.Background(), spin, filepath.Join(t.TempDir(), "result"),
			worker.Options{Published: func(*spec.Result) { close(published) }})
	}()
	readyDuring := 0
watch:
	for {
		s, c := counts()
		select {
		case <-published:
			break watch
		case <-done:
			break watch
		default:
		}
		mostState, mostScratch = max(mostState, s), max(mostScratch, c)
		readyDuring = max(readyDuring, n.w.WarmStats().Ready)
		select {
		case <-published:
			break watch
		case <-done:
			break watch
		case <-time.After(2 * time.Millisecond):
		}
	}
	<-done
	made := waitFor(time.Minute, func() bool { return n.w.WarmStats().Ready == before+1 })
	got := "no result"
	if res != nil {
		got = verdict(res)
		if res.Stats.CPU.Usage != nil {
			got += fmt.Sprintf(", CPU %v", res.Stats.CPU.Usage.Round(time.Millisecond))
		}
	}
	r.Observe("while the spinner ran: at most %d containers in runc's state, %d scratch folders, %d prepared and waiting (%d before it); the spinner: %s; the container of its shape made after it: %v",
		mostState, mostScratch, readyDuring, before, got, made)
	if err != nil || res == nil || res.Status != spec.StatusTLE {
		t.Errorf("the spinner: %+v %v; want TLE", res, err)
	}
	if mostState > before+1 || mostScratch > before+1 || readyDuring > before {
		t.Errorf("a container was made beside the spinner: %d in runc's state, %d scratch folders, %d ready (want at most %d, %d, %d)",
			mostState, mostScratch, readyDuring, before+1, before+1, before)
	}
	if mostState < before+1 || mostScratch < before+1 {
		t.Errorf("at most %d containers in runc's state and %d scratch folders seen: the count does not see the prepared ones and the spinner's", mostState, mostScratch)
	}
	if !made {
		t.Errorf("%d containers prepared after the spinner, want %d: the one of its shape was not made", n.w.WarmStats().Ready, before+1)
	}
	r.Observe("%s", n.healthy(t, mark))
}
