package hardening_test

// Faults, with real processes: kill -9 of kolejka-server (in a burst, and
// in the middle of an upload), of a kolejka-foreman, of a kolejka-worker
// and of kolejka-observer while they work; the server's disk full; a node
// cut off from the server by a network namespace. What each proves: nothing
// the system acknowledged is lost, no task gets two results, whatever the
// dead process left is swept, and the next task through the grid (or the
// worker) succeeds with no manual step.

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	kclient "github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/tests/hardening"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// randomFile writes n random bytes into a new file and returns its path.
func randomFile(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	crand.Read(b)
	p := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkBlobStore verifies a stopped or running server's blob folder: no
// temp file, every file's bytes hash to its name, and files and database
// rows name the same blobs.
func checkBlobStore(t testing.TB, data string) int {
	t.Helper()
	st := stateOf(t, data)
	if len(st.temp) > 0 {
		t.Errorf("upload temp files left: %v", st.temp)
	}
	for _, h := range st.blobs {
		f, err := os.Open(filepath.Join(data, server.BlobsDir, h[0:2], h[2:4], h))
		if err != nil {
			t.Errorf("blob %s: %v", h, err)
			continue
		}
		sum := sha256Hex(f)
		f.Close()
		if sum != h {
			t.Errorf("blob file %s holds bytes of %s: a partial or damaged blob", h, sum)
		}
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(data, server.DatabaseFile)+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT hash FROM blobs ORDER BY hash`)
	if err != nil {
		t.Fatal(err)
	}
	var known []string
	for rows.Next() {
		var h string
		rows.Scan(&h)
		known = append(known, h)
	}
	rows.Close()
	if strings.Join(known, ",") != strings.Join(st.blobs, ",") {
		t.Errorf("blob rows %d and blob files %d differ", len(known), len(st.blobs))
	}
	return len(st.blobs)
}

func sha256Hex(r io.Reader) string {
	h := sha256.New()
	io.Copy(h, r)
	return fmt.Sprintf("%x", h.Sum(nil))
}

// integrity runs SQLite's integrity check on the server's database.
func integrity(t testing.TB, data string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(data, server.DatabaseFile)+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil {
		t.Fatal(err)
	}
	return res
}

// resultsOf counts the results rows of the server's database.
func resultsOf(t testing.TB, data string) int {
	return stateOf(t, data).rows["results"]
}

// TestFaultServerKilled: kill -9 of the server in a burst of uploads,
// submissions, dequeues and result posts from several goroutines; then a
// restart on the same folder.
func TestFaultServerKilled(t *testing.T) {
	r := caseOf(t, hardening.Fault, "F01", "kill -9 of kolejka-server in a burst: 3 uploaders (8 KiB–2 MiB), 2 submitters, a node dequeuing and posting results",
		"after a restart on the same folder: every acknowledged blob (bytes by hash), task and result intact, no partial blob or temp file, rows and files agree; the node's replays of its results answered OK with no second result; the next task through the grid succeeds")
	g := newGrid(t, "", "", "--lease", "5s")
	alice, node := g.Alice, g.Client("a")

	type ackedBlob struct{ ref, sum string }
	type ackedResult struct {
		res *spec.Result
		dir string
		out []byte
	}
	var (
		mu      sync.Mutex
		blobs   []ackedBlob
		tasks   []string
		results = map[string]ackedResult{}
		tries   int
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				p := randomFile(t, 8<<10+rand.IntN(2<<20))
				ref, err := alice.BlobPut(ctx, p)
				mu.Lock()
				tries++
				if err == nil {
					blobs = append(blobs, ackedBlob{ref.Key, ref.Blob})
				}
				mu.Unlock()
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				dir := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["cat", "in"], "requires": ["burst"], "files": {"in": "in"}, "stdout": "out"}`,
					"in", randomHex(1024))
				task, err := alice.TaskPut(ctx, dir, spec.Limits{})
				mu.Lock()
				tries++
				if err == nil {
					tasks = append(tasks, task.ID)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			taken, err := node.Dequeue(ctx, kclient.DequeueRequest{Concurrency: 4, Tags: []string{"burst"}, Wait: 200 * time.Millisecond})
			if err != nil {
				time.Sleep(20 * time.Millisecond) // a failed dequeue's pause: the load stays a node's, not a spin
				continue
			}
			for _, tk := range taken {
				dir := t.TempDir()
				out := []byte("result of " + tk.ID + "\n")
				os.WriteFile(filepath.Join(dir, "out"), out, 0o644)
				zero := 0
				res := &spec.Result{ID: tk.ID, Tags: []string{"node:a"}, Result: &zero, Status: spec.StatusOK, Stdout: "out",
					Files: map[string]spec.File{"out": {Path: "out"}}}
				if _, err := node.ResultPost(ctx, dir, res); err == nil {
					mu.Lock()
					results[tk.ID] = ackedResult{res, dir, out}
					mu.Unlock()
				}
			}
		}
	}()
	time.Sleep(1500 * time.Millisecond) // the load under test: the burst runs this long, then the kill comes in its middle
	g.Server.Kill9()
	cancel()
	wg.Wait()
	mu.Lock()
	r.Observe("killed after 1.5 s of burst: %d requests, acknowledged %d blobs, %d tasks, %d results", tries, len(blobs), len(tasks), len(results))
	mu.Unlock()
	if len(blobs) == 0 || len(tasks) == 0 || len(results) == 0 {
		t.Fatalf("the burst acknowledged too little to prove anything: %d blobs, %d tasks, %d results", len(blobs), len(tasks), len(results))
	}
	tempAtKill := len(stateOf(t, g.Data).temp)

	g.StartServer()
	ctx = context.Background()
	files := checkBlobStore(t, g.Data)
	r.Observe("restarted: %d upload temp files at the kill, 0 after; %d blob files, each hashing to its name, matching the rows; database integrity %s",
		tempAtKill, files, integrity(t, g.Data))
	lost := 0
	for _, b := range blobs {
		p := filepath.Join(t.TempDir(), "blob")
		if err := alice.BlobGet(ctx, b.ref, p); err != nil {
			t.Errorf("acknowledged blob %s: %v", b.ref, err)
			lost++
			continue
		}
		f, _ := os.Open(p)
		if got := sha256Hex(f); got != b.sum {
			t.Errorf("acknowledged blob %s: bytes of %s, want %s", b.ref, got, b.sum)
			lost++
		}
		f.Close()
	}
	for _, k := range tasks {
		if _, err := alice.Task(ctx, k); err != nil {
			t.Errorf("acknowledged task %s: %v", k, err)
			lost++
		}
	}
	for k, want := range results {
		dir := filepath.Join(t.TempDir(), "result")
		res, err := alice.ResultGet(ctx, k, dir, 0)
		if err != nil {
			t.Errorf("acknowledged result of %s: %v", k, err)
			lost++
			continue
		}
		out, _ := os.ReadFile(filepath.Join(dir, "out"))
		if res.Status != spec.StatusOK || !bytes.Equal(out, want.out) {
			t.Errorf("result of %s: %s, out %q, want %q", k, res.Status, out, want.out)
			lost++
		}
	}
	r.Observe("acknowledged and found again: %d blobs (bytes checked), %d tasks, %d results (outputs checked); lost %d", len(blobs), len(tasks), len(results), lost)

	// The node retries every result it posted (as it would when an answer
	// was lost in the crash): each is a replay, no second result appears.
	before := resultsOf(t, g.Data)
	for k, a := range results {
		if _, err := node.ResultPost(ctx, a.dir, a.res); err != nil {
			t.Errorf("replaying the result of %s: %v", k, err)
		}
	}
	if after := resultsOf(t, g.Data); after != before {
		t.Errorf("results %d → %d after the replays", before, after)
	}
	st, err := alice.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TaskResolvedCount != before {
		t.Errorf("%d tasks resolved, %d results", st.TaskResolvedCount, before)
	}
	r.Observe("%d replays answered OK; results stay %d = tasks resolved %d", len(results), before, st.TaskResolvedCount)

	g.startForeman("a")
	res, took, err := g.executeNext(t, time.Minute)
	if err != nil {
		t.Fatalf("the next task: %v", err)
	}
	r.Observe("next task through the grid: %s in %v", res.Status, took.Round(time.Millisecond))
}

// TestFaultServerKilledMidUpload: kill -9 of the server while a large
// upload is half received.
func TestFaultServerKilledMidUpload(t *testing.T) {
	r := caseOf(t, hardening.Fault, "F02", "kill -9 of kolejka-server in the middle of a 64 MiB upload (32 MiB received)",
		"the half upload is a temp file, never a blob under its hash; after the restart it is gone, no row or file names it; the same upload then succeeds")
	g := newGrid(t, "", "")
	content := make([]byte, 64<<20)
	crand.Read(content)
	sum := fmt.Sprintf("%x", sha256.Sum256(content))
	conn, err := net.Dial("tcp", g.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /blob/reference/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", g.Tokens["alice"], len(content))
	if _, err := conn.Write(content[:32<<20]); err != nil {
		t.Fatal(err)
	}
	var partial int64
	gridtest.WaitFor(t, "the upload's temp file to hold what was sent", 20*time.Second, func() bool {
		partial = 0
		for _, name := range stateOf(t, g.Data).temp {
			if fi, err := os.Stat(filepath.Join(g.Data, server.BlobsDir, "tmp", name)); err == nil {
				partial = max(partial, fi.Size())
			}
		}
		return partial >= 30<<20
	})
	blobFile := filepath.Join(g.Data, server.BlobsDir, sum[0:2], sum[2:4], sum)
	g.Server.Kill9()
	r.Observe("at the kill: a temp file of %d MiB; a blob file under the hash: %v", partial>>20, fileExists(blobFile))
	if fileExists(blobFile) {
		t.Errorf("a partial upload is under its hash")
	}
	g.StartServer()
	if tmp := stateOf(t, g.Data).temp; len(tmp) > 0 {
		t.Errorf("temp files after the restart: %v", tmp)
	}
	checkBlobStore(t, g.Data)
	if fileExists(blobFile) {
		t.Errorf("the cut upload is in the store")
	}
	p := filepath.Join(t.TempDir(), "big")
	os.WriteFile(p, content, 0o644)
	ref, err := g.Alice.BlobPut(context.Background(), p)
	if err != nil || ref.Blob != sum {
		t.Fatalf("the upload again: %+v %v", ref, err)
	}
	back := filepath.Join(t.TempDir(), "back")
	if err := g.Alice.BlobGet(context.Background(), ref.Key, back); err != nil {
		t.Fatal(err)
	}
	r.Observe("after the restart: no temp file, no trace of it; uploaded again as %s (%d MiB, hash checked on download)", ref.Key, ref.Size>>20)
	g.startForeman("a")
	res, took, err := g.executeNext(t, time.Minute)
	if err != nil {
		t.Fatalf("the next task: %v", err)
	}
	r.Observe("next task through the grid: %s in %v", res.Status, took.Round(time.Millisecond))
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestFaultForemanKilled: kill -9 of the foreman running a task.
func TestFaultForemanKilled(t *testing.T) {
	r := caseOf(t, hardening.Fault, "F03", "kill -9 of the kolejka-foreman running a task (2 nodes, lease 1 s)",
		"the lease lapses, the other node runs the task: exactly one result, the other node's (attempts 2); the dead node's late result refused; restarted, the dead node sweeps its orphaned container and takes work again")
	g := newGrid(t, "", "", "--lease", "1s")
	g.startForeman("a")
	g.startForeman("b")
	mark := "F03-" + randomHex(6)
	key := g.Put(markedCopy(t, gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "sleep 3; echo done"], "limits": {"time": "20s"}, "stdout": "out"}`), mark))
	var holder string
	gridtest.WaitFor(t, "the task running", 30*time.Second, func() bool {
		holder = g.assignee(key)
		return holder != "" && len(markedProcs(mark)) > 0
	})
	other := map[string]string{"a": "b", "b": "a"}[holder]
	killed := g.Nodes[holder]
	killedAt := time.Now()
	killed.P.Kill9()
	orphans := len(markedProcs(mark))
	r.Observe("node %s ran it: killed; %d processes of its run outlive it", holder, orphans)

	dir, res, err := g.result(key, 40*time.Second)
	if err != nil {
		t.Fatalf("no result after node %s was killed: %v", holder, err)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "out"))
	info := g.TaskInfo(key)
	r.Observe("result %v after the kill: %s, out %q, tags %v, attempts %v", time.Since(killedAt).Round(time.Millisecond), res.Status, out, res.Tags, info["attempts"])
	if res.Status != spec.StatusOK || string(out) != "done\n" || !contains(res.Tags, "node:"+other) {
		t.Errorf("result %s %q from %v: want OK \"done\" from node %s", res.Status, out, res.Tags, other)
	}
	if info["resolved"] != true || info["attempts"] != float64(2) {
		t.Errorf("task: resolved %v, attempts %v; want resolved at the second attempt", info["resolved"], info["attempts"])
	}
	dead := g.Client(holder)
	late := t.TempDir()
	os.WriteFile(filepath.Join(late, "out"), []byte("late\n"), 0o644)
	zero := 0
	_, err = dead.ResultPost(context.Background(), late, &spec.Result{ID: key, Tags: []string{"node:" + holder}, Result: &zero,
		Status: spec.StatusOK, Stdout: "out", Files: map[string]spec.File{"out": {Path: "out"}}})
	var se *kclient.ServerError
	if !errors.As(err, &se) || !strings.Contains(se.Message, "already has a result") {
		t.Errorf("the dead node's late result: %v; want refused", err)
	}
	r.Observe("the dead node's late result: %v", err)
	if n := resultsOf(t, g.Data); n != 1 {
		t.Errorf("%d results", n)
	}

	g.startForeman(holder)
	if p := markedProcs(mark); len(p) > 0 {
		t.Errorf("processes of the dead run left after the restart: %v", p)
	}
	if j := entries(filepath.Join(killed.Temp, "jobs")); len(j) > 0 {
		t.Errorf("download folders of the dead foreman left: %v", j)
	}
	swept := len(gridtest.LogLines(killed.Log, "sweeping leftovers of a dead run")) > 0
	if orphans > 0 && !swept {
		t.Errorf("the restarted foreman did not say it swept the dead run")
	}
	r.Observe("restarted node %s: swept the dead run (%v), 0 of its processes left, jobs/ empty; results stored: 1", holder, swept)
	g.Nodes[other].P.Signal(syscall.SIGTERM) // drain the other: the next task must go to the restarted node
	if code, ok := g.Nodes[other].P.Wait(20 * time.Second); !ok || code != 0 {
		t.Fatalf("draining node %s: exit %d (ended %v)", other, code, ok)
	}
	next, took, err := g.executeNext(t, time.Minute)
	if err != nil {
		t.Fatalf("the next task: %v", err)
	}
	if !contains(next.Tags, "node:"+holder) {
		t.Errorf("the next task ran on %v", next.Tags)
	}
	r.Observe("next task: %s on the restarted node in %v", next.Status, took.Round(time.Millisecond))
}

// TestFaultWorkerKilled: kill -9 of kolejka-worker running a task.
func TestFaultWorkerKilled(t *testing.T) {
	r := caseOf(t, hardening.Fault, "F04", "kill -9 of kolejka-worker running a task (workspace and storage on tmpfs)",
		"the dead worker's container, mounts, cgroups, runc state and scratch stay behind; the next worker to start sweeps all of them and runs its task")
	bin := bins(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "kolejka.conf")
	temp := filepath.Join(dir, "scratch")
	os.Mkdir(temp, 0o755)
	os.WriteFile(conf, []byte("[worker]\nimages = "+gridtest.Images(t)+"\ntemp = "+temp+"\n"), 0o644)
	mark := "F04-" + randomHex(6)
	task := markedCopy(t, gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sleep", "1000"], "limits": {"workspace": "4M", "storage": "4M", "time": "60s"}}`), mark)
	w := gridtest.StartOwned(t, "kolejka-worker", filepath.Join(dir, "worker.log"), filepath.Join(bin, "kolejka-worker"), "--config-file", conf, "execute", task, filepath.Join(dir, "result"))
	gridtest.WaitFor(t, "the task running", 30*time.Second, func() bool { return len(markedProcs(mark)) > 0 })
	runs := entries(temp)
	if len(runs) != 1 {
		t.Fatalf("scratch holds %v, want one run", runs)
	}
	run := strings.TrimPrefix(runs[0], "kolejka-run-")
	w.Kill9()
	left := func() []string {
		var out []string
		if p := markedProcs(mark); len(p) > 0 {
			out = append(out, fmt.Sprintf("%d process(es)", len(p)))
		}
		if m := mountsBelow(temp); m > 0 {
			out = append(out, fmt.Sprintf("%d mounts", m))
		}
		if c := cgroupDirs("/kolejka/" + run); len(c) > 0 {
			out = append(out, fmt.Sprintf("cgroups in %d hierarchies", len(c)))
		}
		for _, s := range entries("/run/kolejka/runc") {
			if strings.Contains(s, run) {
				out = append(out, "runc state "+s)
			}
		}
		if fileExists(filepath.Join(temp, "kolejka-run-"+run)) {
			out = append(out, "scratch")
		}
		if fileExists(filepath.Join("/run/kolejka/worker/runs", run)) {
			out = append(out, "run record")
		}
		return out
	}
	leftAtKill := left()
	r.Observe("run %s killed with its worker; left: %s", run, strings.Join(leftAtKill, ", "))
	if len(leftAtKill) < 3 {
		t.Errorf("the killed worker left only %v: the sweep would prove little", leftAtKill)
	}
	next := markedCopy(t, gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "echo next task"], "stdout": "out"}`), mark+"-next")
	began := time.Now()
	_, errOut, code := gridtest.RunCommand(context.Background(), filepath.Join(bin, "kolejka-worker"), "--config-file", conf, "execute", next, filepath.Join(dir, "result2"))
	took := time.Since(began)
	if code != 0 {
		t.Fatalf("the next worker: exit %d: %s", code, errOut)
	}
	if out, _ := os.ReadFile(filepath.Join(dir, "result2", "out")); string(out) != "next task\n" {
		t.Errorf("the next task wrote %q", out)
	}
	if l := left(); len(l) > 0 {
		t.Errorf("left after the next worker's sweep: %v", l)
	}
	if s := entries(temp); len(s) > 0 {
		t.Errorf("scratch left: %v", s)
	}
	r.Observe("the next worker swept everything (nothing of run %s left) and ran its task: OK in %v", run, took.Round(time.Millisecond))
}

// observerDaemon is kolejka-observer run by a test, restartable on the
// same socket and state folder.
type observerDaemon struct {
	t      testing.TB
	bin    string
	socket string
	state  string
	sweep  string
	log    string
	p      *gridtest.Proc
}

func (d *observerDaemon) start() {
	d.t.Helper()
	d.p = gridtest.StartOwned(d.t, "kolejka-observer", d.log, filepath.Join(d.bin, "kolejka-observer"), "--socket", d.socket, "--state", d.state, "--sweep", d.sweep, "-v")
	gridtest.WaitFor(d.t, "the observer's socket", 10*time.Second, func() bool { return d.sessions() >= 0 })
}

// sessions is GET /, -1 when the daemon does not answer.
func (d *observerDaemon) sessions() int {
	status, body, err := observerRequest(d.socket, "GET", "", nil)
	if err != nil || status != 200 {
		return -1
	}
	var n int
	if _, err := fmt.Sscanf(string(body[bytes.Index(body, []byte(`"sessions":`))+len(`"sessions":`):]), "%d", &n); err != nil {
		return -1
	}
	return n
}

// TestFaultObserverKilled: kill -9 of kolejka-observer while it holds a
// running task's session.
func TestFaultObserverKilled(t *testing.T) {
	r := caseOf(t, hardening.Fault, "F05", "kill -9 of kolejka-observer holding a running task's session: (1) restarted while the task runs, (2) restarted after a task ended (a sleeper past its time limit)",
		"(1) the task finishes OK, the restarted daemon adopts its session and drops it when the task ends; (2) the time limit still acts: TLE; the restarted daemon keeps no session of it; no session cgroup left; the next task through the daemon runs normally")
	bin := bins(t)
	n := runcNode(t)
	dir := t.TempDir()
	d := &observerDaemon{t: t, bin: bin, socket: filepath.Join(dir, "observer.sock"), state: filepath.Join(dir, "state"), sweep: n.e.CgroupRoot, log: filepath.Join(dir, "observer.log")}
	d.start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("observer log:\n%s", gridtest.Tail(d.log))
		}
	})
	w, err := worker.New(context.Background(), worker.Config{Temp: n.e.Temp, StateDir: n.e.State, CgroupRoot: n.e.CgroupRoot,
		OutputLimit: workertest.OutputLimit, InitPath: filepath.Join(bin, "kolejka-init"), Observer: d.socket,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, n.e.W.Runtime())
	if err != nil {
		t.Fatal(err)
	}
	n.w = w
	type outcome struct {
		dir string
		res *spec.Result
		err error
	}
	runAsync := func(task, mark string) chan outcome {
		ch := make(chan outcome, 1)
		go func() {
			resultDir, res, _, err := n.run(t, markedCopy(t, task, mark), mark)
			ch <- outcome{resultDir, res, err}
		}()
		return ch
	}

	// (1) Restarted while the task runs.
	mark := "F05a-" + randomHex(6)
	done := runAsync(gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "sleep 3; echo done"], "limits": {"time": "20s"}, "stdout": "out"}`), mark)
	gridtest.WaitFor(t, "the task's session at the daemon", 20*time.Second, func() bool { return d.sessions() == 1 && len(markedProcs(mark)) > 0 })
	d.p.Kill9()
	d.start()
	adopted := d.sessions()
	o := <-done
	if o.res == nil {
		t.Fatalf("no result: %v", o.err)
	}
	out, _ := os.ReadFile(filepath.Join(o.dir, "out"))
	r.Observe("(1) killed with the task's session open; restarted: %d session adopted; the task: %s, out %q", adopted, verdict(o.res), out)
	if o.err != nil || o.res.Status != spec.StatusOK || string(out) != "done\n" {
		t.Errorf("the task: %s %v, out %q", o.res.Status, o.err, out)
	}
	if adopted != 1 {
		t.Errorf("the restarted daemon has %d sessions, want the running task's", adopted)
	}
	gridtest.WaitFor(t, "the daemon to drop the ended task's session", 10*time.Second, func() bool { return d.sessions() == 0 })
	r.Observe("(1) sessions after the task: 0")

	// (2) Restarted after the task ended.
	mark = "F05b-" + randomHex(6)
	done = runAsync(gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sleep", "60"], "limits": {"time": "2s"}}`), mark)
	gridtest.WaitFor(t, "the task's session at the daemon", 20*time.Second, func() bool { return d.sessions() == 1 && len(markedProcs(mark)) > 0 })
	d.p.Kill9()
	o = <-done
	if o.res == nil {
		t.Fatalf("no result: %v", o.err)
	}
	r.Observe("(2) killed with the sleeper's session open; the task without the daemon: %s", verdict(o.res))
	if o.res.Status != spec.StatusTLE || o.res.Stats.Time == nil || *o.res.Stats.Time > 3*time.Second {
		t.Errorf("the sleeper: %s (%v), want TLE at about 2 s", verdict(o.res), o.err)
	}
	d.start() // it adopts the recorded sessions before it answers
	gridtest.WaitFor(t, "the restarted daemon to drop the session of the task that ended", 10*time.Second, func() bool { return d.sessions() == 0 })
	if c := cgroupsBelow(n.e.CgroupRoot); len(c) > 0 {
		t.Errorf("cgroups left: %v", c)
	}
	r.Observe("(2) restarted after the task: %d sessions; no cgroup below the worker's root", d.sessions())
	r.Observe("%s; sessions after it: %d", n.healthy(t, mark), d.sessions())
	if d.sessions() != 0 {
		t.Errorf("sessions left after the next task")
	}
}

// TestFaultServerDiskFull: the server's data folder on a small tmpfs that
// fills up.
func TestFaultServerDiskFull(t *testing.T) {
	r := caseOf(t, hardening.Fault, "F06", "the server's disk full: its data folder on a 48 MiB tmpfs filled to the last byte",
		"an upload and a submission fail with an error that says the server is out of space; no partial blob, nothing stored; what was acknowledged before (blob, task, result) intact; once space is freed both succeed, the server never restarted; the next task through the grid succeeds")
	testenv.RequireRoot(t)
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=48m"); err != nil {
		testenv.Missing(t, "cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	g := newGrid(t, "", filepath.Join(mnt, "data"))
	ctx := context.Background()

	// Acknowledged before the disk fills: a blob, a task, its result.
	before := randomFile(t, 1<<20)
	ref, err := g.Alice.BlobPut(ctx, before)
	if err != nil {
		t.Fatal(err)
	}
	task, err := g.Alice.TaskPut(ctx, gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["true"], "requires": ["disk"], "files": {"in": "in"}}`, "in", "input\n"), spec.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	node := g.Client("a")
	if taken, err := node.Dequeue(ctx, kclient.DequeueRequest{Concurrency: 1, Tags: []string{"disk"}}); err != nil || len(taken) != 1 {
		t.Fatalf("dequeue: %v %v", taken, err)
	}
	rdir := t.TempDir()
	os.WriteFile(filepath.Join(rdir, "out"), []byte("the result\n"), 0o644)
	zero := 0
	if _, err := node.ResultPost(ctx, rdir, &spec.Result{ID: task.ID, Result: &zero, Status: spec.StatusOK, Stdout: "out", Files: map[string]spec.File{"out": {Path: "out"}}}); err != nil {
		t.Fatal(err)
	}

	// Fill the file system.
	ballast := filepath.Join(mnt, "ballast")
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	for {
		if _, err := f.Write(chunk[:512]); err != nil {
			break
		}
	}
	f.Close()
	var sfs unix.Statfs_t
	unix.Statfs(mnt, &sfs)
	full := stateOf(t, g.Data)
	r.Observe("filled: %d bytes free; server %s", sfs.Bavail*uint64(sfs.Bsize), full)

	big := randomFile(t, 2<<20)
	bigSum := func() string { f, _ := os.Open(big); defer f.Close(); return sha256Hex(f) }()
	_, upErr, upCode := g.KolejkaClient(ctx, "blob", "put", big)
	largeTask := gridtest.WriteTask(t, fmt.Sprintf(`{"image": "kolejka-test:latest", "args": ["true"], "requires": ["disk"], "environment": {"PAD": %q}}`, strings.Repeat("p", 900<<10)))
	_, subErr, subCode := g.KolejkaClient(ctx, "task", "put", largeTask)
	r.Observe("upload of 2 MiB: exit %d %s; submission of a 900 KiB task: exit %d %s", upCode, short(upErr, 200), subCode, short(subErr, 200))
	if upCode == 0 || subCode == 0 {
		t.Errorf("accepted on a full disk: upload exit %d, submission exit %d", upCode, subCode)
	}
	for what, msg := range map[string]string{"the upload": upErr, "the submission": subErr} {
		if !strings.Contains(strings.ToLower(msg), "space") {
			t.Errorf("%s's error does not say the server is out of space: %q", what, strings.TrimSpace(msg))
		}
	}
	after := stateOf(t, g.Data)
	if !after.equal(full) {
		t.Errorf("the server changed on a full disk: %v → %v", full, after)
	}
	if fileExists(filepath.Join(g.Data, server.BlobsDir, bigSum[0:2], bigSum[2:4], bigSum)) {
		t.Errorf("the refused upload is in the store")
	}
	r.Observe("nothing stored: server %s unchanged, no partial blob", after)
	if !g.Server.Running() {
		t.Fatalf("the server died on a full disk; log:\n%s", gridtest.Tail(g.Server.Log))
	}

	// Free the space: the same requests succeed, with no restart.
	os.Remove(ballast)
	if _, errOut, code := g.KolejkaClient(ctx, "blob", "put", big); code != 0 {
		t.Errorf("the upload once space is free: exit %d %s", code, errOut)
	}
	if _, errOut, code := g.KolejkaClient(ctx, "task", "put", largeTask); code != 0 {
		t.Errorf("the submission once space is free: exit %d %s", code, errOut)
	}
	back := filepath.Join(t.TempDir(), "back")
	if err := g.Alice.BlobGet(ctx, ref.Key, back); err != nil {
		t.Errorf("the blob acknowledged before: %v", err)
	}
	if res, err := g.Alice.ResultGet(ctx, task.ID, filepath.Join(t.TempDir(), "result"), 0); err != nil || res.Status != spec.StatusOK {
		t.Errorf("the result acknowledged before: %+v %v", res, err)
	}
	checkBlobStore(t, g.Data)
	r.Observe("space freed: the upload and the submission succeed; blob, task and result from before intact; blob store consistent, database integrity %s", integrity(t, g.Data))
	g.startForeman("a")
	res, took, err := g.executeNext(t, time.Minute)
	if err != nil {
		t.Fatalf("the next task: %v", err)
	}
	r.Observe("next task through the grid: %s in %v", res.Status, took.Round(time.Millisecond))
}

// netns is a network namespace joined to the host by a veth pair.
type netns struct {
	name, hostIf, nsIf string
	hostIP, nsIP       string
}

func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newNetns(t testing.TB) *netns {
	t.Helper()
	testenv.RequireRoot(t)
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "needs %s (iproute2, util-linux)", tool)
		}
	}
	id := randomHex(3)
	b := 16 + rand.IntN(200)
	n := &netns{name: "khard-" + id, hostIf: "kh" + id + "h", nsIf: "kh" + id + "n",
		hostIP: fmt.Sprintf("10.213.%d.1", b), nsIP: fmt.Sprintf("10.213.%d.2", b)}
	ipCmd(t, "netns", "add", n.name)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", n.name).Run() })
	ipCmd(t, "link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf)
	t.Cleanup(func() { exec.Command("ip", "link", "delete", n.hostIf).Run() })
	ipCmd(t, "link", "set", n.nsIf, "netns", n.name)
	ipCmd(t, "addr", "add", n.hostIP+"/30", "dev", n.hostIf)
	ipCmd(t, "link", "set", n.hostIf, "up")
	ipCmd(t, "-n", n.name, "addr", "add", n.nsIP+"/30", "dev", n.nsIf)
	ipCmd(t, "-n", n.name, "link", "set", n.nsIf, "up")
	ipCmd(t, "-n", n.name, "link", "set", "lo", "up")
	return n
}

// enter is the command prefix that runs a program in the namespace's
// network only (ip netns exec would also remount /sys, hiding cgroupfs).
func (n *netns) enter() []string {
	return []string{"nsenter", "--net=/var/run/netns/" + n.name}
}

// TestFaultNodeCutOff: a node in a network namespace loses its link to the
// server while it runs a task.
func TestFaultNodeCutOff(t *testing.T) {
	r := caseOf(t, hardening.Fault, "F07", "a node cut off from the server mid-task: its foreman in a network namespace behind a veth pair, `ip link set <veth> down` (lease 1 s)",
		"the lease lapses, the task is requeued and completed by the other node: exactly one result, the other node's; the link restored, the cut-off node's late result is refused (its tags and figures differ: not a replay), it drops it, recovers by itself and runs the next task")
	ns := newNetns(t)
	g := newGrid(t, net.JoinHostPort(ns.hostIP, fmt.Sprint(20000+rand.IntN(20000))), "", "--lease", "1s", "--max-wait", "2s")
	cut := g.startForeman("a", ns.enter()...)
	mark := "F07-" + randomHex(6)
	key := g.Put(markedCopy(t, gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "sleep 2; echo done"], "limits": {"time": "20s"}, "stdout": "out"}`), mark))
	gridtest.WaitFor(t, "node a running the task", 30*time.Second, func() bool { return g.assignee(key) == "a" && len(markedProcs(mark)) > 0 })
	ipCmd(t, "link", "set", ns.hostIf, "down")
	cutAt := time.Now()
	restored := false
	defer func() {
		if !restored {
			exec.Command("ip", "link", "set", ns.hostIf, "up").Run()
		}
	}()
	g.startForeman("b")
	dir, res, err := g.waitResult(key, 60*time.Second)
	if err != nil {
		t.Fatalf("no result while node a is cut off: %v", err)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "out"))
	r.Observe("link down; result %v later: %s, out %q, tags %v, attempts %v", time.Since(cutAt).Round(time.Millisecond), res.Status, out, res.Tags, g.TaskInfo(key)["attempts"])
	if res.Status != spec.StatusOK || !contains(res.Tags, "node:b") || string(out) != "done\n" {
		t.Errorf("result %s %q from %v: want node b's OK", res.Status, out, res.Tags)
	}
	lapses := 0
	for _, l := range gridtest.LogLines(g.Server.Log, "leases lapsed") {
		if strings.Contains(l, key) {
			lapses++
		}
	}
	if lapses > 1 {
		r.Observe("the server logs %d lease lapses of the task: a long poll of node a, answered while its link was down, took the requeued task again", lapses)
	} else {
		r.Observe("the server logs %d lease lapse of the task", lapses)
	}
	if lapses < 1 {
		t.Errorf("the server never saw node a's lease lapse")
	}
	gridtest.WaitFor(t, "the cut-off node's own run to end", 30*time.Second, func() bool { return len(markedProcs(mark)) == 0 })
	postsBefore := len(gridtest.LogLines(cut.Log, "already has another result"))

	ipCmd(t, "link", "set", ns.hostIf, "up")
	restored = true
	restoredAt := time.Now()
	gridtest.WaitFor(t, "the cut-off node to learn the task has another result", 60*time.Second, func() bool {
		return len(gridtest.LogLines(cut.Log, "already has another result")) > postsBefore
	})
	r.Observe("link up; %v later node a logs: %s", time.Since(restoredAt).Round(time.Millisecond),
		strings.TrimSpace(lastLine(gridtest.LogLines(cut.Log, "already has another result"))))
	again, err := g.Alice.Result(context.Background(), key, 0)
	if err != nil || !contains(again.Tags, "node:b") {
		t.Errorf("the stored result after node a's late post: %+v %v", again, err)
	}
	if k := resultsOf(t, g.Data); k != 1 {
		t.Errorf("%d results stored", k)
	}
	// A dequeue of node a's that the server answered while the link was
	// down (handing it the requeued task: an attempt) may reach it once
	// the link is back: the node then starts the task again, its heartbeat
	// learns the task is not its own, and it kills the run unposted.
	time.Sleep(5 * time.Second) // the window for such a stale answer to arrive: nothing announces one that may not come
	if taken := len(gridtest.LogLines(cut.Log, "task taken task="+key)); taken > 1 {
		gridtest.WaitFor(t, "node a to drop the task a stale answer gave it", 30*time.Second, func() bool {
			return len(gridtest.LogLines(cut.Log, "task killed: the server gave it to another node")) > 0 ||
				len(gridtest.LogLines(cut.Log, "the task already has another result")) > 1
		})
		r.Observe("a dequeue answer the server sent node a while the link was down reached it after: it took the task again (%d times in all), learnt it lost it and dropped it unposted", taken)
	}
	for _, l := range gridtest.LogLines(cut.Log, "result posted") {
		if strings.Contains(l, key) {
			t.Errorf("node a posted a result: %s", l)
		}
	}
	if k := resultsOf(t, g.Data); k != 1 {
		t.Errorf("%d results stored", k)
	}
	r.Observe("the stored result is still node b's; 1 result stored; node a posted none")

	g.Nodes["b"].P.Signal(syscall.SIGTERM) // the next task must go to the node that was cut off
	if code, ok := g.Nodes["b"].P.Wait(20 * time.Second); !ok || code != 0 {
		t.Fatalf("draining node b: exit %d (ended %v)", code, ok)
	}
	next, took, err := g.executeNext(t, 90*time.Second)
	if err != nil {
		t.Fatalf("the next task: %v", err)
	}
	if !contains(next.Tags, "node:a") {
		t.Errorf("the next task ran on %v", next.Tags)
	}
	r.Observe("next task: %s on node a (recovered by itself) in %v", next.Status, took.Round(time.Millisecond))
}

func lastLine(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	l := lines[len(lines)-1]
	if i := strings.Index(l, "msg="); i >= 0 {
		return l[i:]
	}
	return l
}

// TestFaultNodeDiskFull: a node's disk fills up under a task that has no
// workspace limit, with the scratch and the result folder on that disk.
func TestFaultNodeDiskFull(t *testing.T) {
	r := caseOf(t, hardening.Fault, "F08", "a node's disk full: kolejka-worker with its scratch and the result folder on an 8 MiB tmpfs, a task with no workspace limit writing 100 MiB",
		"exit 3 and an SE result naming the full disk, with the task's measured usage; the scratch gone and the disk's space back; the next task on the same disk runs OK")
	testenv.RequireRoot(t)
	bin := bins(t)
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=8m"); err != nil {
		testenv.Missing(t, "cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	temp := filepath.Join(mnt, "scratch")
	os.Mkdir(temp, 0o755)
	conf := filepath.Join(t.TempDir(), "kolejka.conf")
	os.WriteFile(conf, []byte("[worker]\nimages = "+gridtest.Images(t)+"\ntemp = "+temp+"\n"), 0o644)
	used := func() int64 {
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Blocks-st.Bfree) * st.Bsize
	}

	task := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "dd if=/dev/zero of=fill bs=1M count=100; echo dd exit=$?"], "limits": {"memory": "256M", "time": "20s"}, "stdout": "out", "stderr": "err"}`)
	result := filepath.Join(mnt, "result")
	_, errOut, code := gridtest.RunCommand(context.Background(), filepath.Join(bin, "kolejka-worker"), "--config-file", conf, "execute", task, result)
	if code != 3 {
		t.Errorf("kolejka-worker exit %d, want 3 (SE): %s", code, errOut)
	}
	if !strings.Contains(errOut, "no space left on device") {
		t.Errorf("the error does not name the full disk: %q", errOut)
	}
	res, err := spec.LoadResult(result)
	if err != nil {
		t.Fatalf("no result written: %v", err)
	}
	if res.Status != spec.StatusSE {
		t.Errorf("verdict %s, want SE", res.Status)
	}
	var peak, pids int64
	if res.Stats.Memory.MaxUsage != nil {
		peak = *res.Stats.Memory.MaxUsage
	}
	if res.Stats.Pids.MaxUsage != nil {
		pids = *res.Stats.Pids.MaxUsage
	}
	if peak <= 0 || pids < 1 {
		t.Errorf("the SE result lost the task's usage: memory peak %d, pids %d", peak, pids)
	}
	if s := entries(temp); len(s) > 0 {
		t.Errorf("scratch left: %v", s)
	}
	if m := mountsBelow(temp); m > 0 {
		t.Errorf("%d mounts left below the scratch", m)
	}
	after := used()
	if after > 1<<20 {
		t.Errorf("%d bytes of the disk still used after the run (the result is a few KiB)", after)
	}
	r.Observe("exit %d: %s; verdict %s, memory peak %d B, pids %d; scratch empty, %d KiB of the disk used after (the result)",
		code, short(strings.SplitN(errOut, "\n", 2)[0], 240), res.Status, peak, pids, after>>10)

	next := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "echo next task"], "stdout": "out"}`)
	_, errOut, code = gridtest.RunCommand(context.Background(), filepath.Join(bin, "kolejka-worker"), "--config-file", conf, "execute", next, filepath.Join(mnt, "result2"))
	if code != 0 {
		t.Fatalf("the next task: exit %d: %s", code, errOut)
	}
	if out, _ := os.ReadFile(filepath.Join(mnt, "result2", "out")); string(out) != "next task\n" {
		t.Errorf("the next task wrote %q", out)
	}
	r.Observe("the next task on the same disk: OK")
}
