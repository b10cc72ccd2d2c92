package e2e

// Replicas on separate hosts (network namespaces on a private bridge),
// one of which has its network cut silently while its database session
// holds the replicas' global write lock.

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

// storeWriteLock is the key of the store's advisory write lock (its
// writeLock, "kolejka" in ASCII).
const storeWriteLock = 0x6b6f6c656a6b61

// writeLockSessions counts the sessions from addr that hold (granted) or
// wait for the store's write lock: the one-key (int8) advisory lock of
// that key.
func writeLockSessions(t *testing.T, db *sql.DB, addr string, granted bool) int {
	t.Helper()
	var n int
	err := db.QueryRow(`SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.classid = ? AND l.objid = ?
		AND l.granted = `+fmt.Sprint(granted)+` AND host(a.client_addr) = ?`,
		int64(storeWriteLock>>32), int64(storeWriteLock&0xffffffff), addr).Scan(&n)
	if err != nil {
		t.Fatalf("unable to read pg_locks: %v", err)
	}
	return n
}

// Three replicas, each in a network namespace of its own, reach
// PostgreSQL and S3 over a bridge; the proxy, the foremen and the clients
// are in the root namespace. In the middle of a burst of tasks and
// workflows, replica 1's network is cut silently (its link down: no RST,
// no FIN) while its database session is about to take the global write
// lock: the session takes it and then waits for a client that is gone.
// PostgreSQL must end that session (keepalives, TCP_USER_TIMEOUT) so that
// the other replicas write again within a bound; every task accepted gets
// exactly one result, its own, with its files; the workflows finish.
func TestReplicasSurviveACutReplica(t *testing.T) {
	bin := bins(t)
	nw := gridtest.NewNet(t, 3)
	db := pgtest.StartOn(t, nw.Gate).Database(t)
	b := s3test.StartOn(t, nw.Gate).Bucket(t)
	conf := fmt.Sprintf("[server]\ndatabase = %s\nblobs = %s\nblobs_access_key = %s\nblobs_secret_key = %s\n",
		db, s3test.URL(b), b.AccessKey, b.SecretKey)
	g := &grid{gridtest.NewGrid(t, bin, gridtest.GridOptions{ServerConf: conf, Replicas: 3, OutputLimit: OutputLimit,
		ReplicaHosts: nw.Hosts})}
	g.StartForeman("a", nil)
	g.StartForeman("b", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sqldb, err := store.OpenSQL(db)
	if err != nil {
		t.Fatal(err)
	}
	defer sqldb.Close()
	cut := nw.Hosts[1]

	const tasks = 24
	keys := make([]string, tasks)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	submit := func(i int) {
		defer wg.Done()
		dir := gridtest.WriteTask(t, `{`+limits+`, "args": ["sh", "-c", "cat in.txt; echo done"], "stdout": "out.txt", "files": {"in.txt": "in.txt"}}`,
			"in.txt", fmt.Sprintf("task %d\n", i))
		// A put that reached the cut replica fails (the proxy's 502 once
		// its connection times out): the client is told, and puts again.
		for try := 0; try < 3; try++ {
			out, errOut, code := g.KolejkaClient(ctx, "task", "put", dir)
			if code == 0 {
				keys[i] = strings.TrimSpace(out)
				return
			}
			mu.Lock()
			failed = append(failed, fmt.Sprintf("put %d (try %d): exit %d: %s", i, try, code, errOut))
			mu.Unlock()
		}
	}
	for i := range tasks / 2 {
		wg.Add(1)
		go submit(i)
	}
	wfDir := writeFolder(t, map[string]string{
		"kolejka_workflow.json": `{"tasks": {
			"first":  {"task": "step", "items": ["1", "2"]},
			"second": {"task": "join", "after": ["first"], "inputs": {"prev": "first:out.txt"}}
		}}`,
		"step/kolejka_task.json": `{` + limits + `, "args": ["sh", "-c", "echo step {item}"], "stdout": "out.txt"}`,
		"join/kolejka_task.json": `{` + limits + `, "args": ["sh", "-c", "cat prev/1 prev/2"], "stdout": "out.txt"}`,
	})
	var runs []string
	for range 2 {
		key, errOut, code := g.KolejkaClient(ctx, "workflow", "put", wfDir)
		if code != 0 {
			t.Fatalf("workflow put: exit %d: %s", code, errOut)
		}
		runs = append(runs, strings.TrimSpace(key))
	}
	wg.Wait()

	// The test holds the write lock, so that the second half's writes
	// queue on it; once replica 1's session waits among them, its network
	// is cut and the lock let go. Its session is granted the lock in turn
	// and answers into the void: PostgreSQL then waits for the next
	// statement of a client that will never send one.
	hold, err := sqldb.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(storeWriteLock)); err != nil {
		t.Fatal(err)
	}
	for i := tasks / 2; i < tasks; i++ {
		wg.Add(1)
		go submit(i)
	}
	gridtest.WaitFor(t, "replica 1's session to wait for the write lock", time.Minute, func() bool {
		return writeLockSessions(t, sqldb, cut.Addr, false) > 0
	})
	nw.Cut(cut)
	cutAt := time.Now()
	before := g.Proxy.Served[1].Load()
	if err := hold.Commit(); err != nil {
		t.Fatal(err)
	}
	gridtest.WaitFor(t, "the cut replica's session to be granted the write lock", 30*time.Second, func() bool {
		return writeLockSessions(t, sqldb, cut.Addr, true) > 0
	})
	held := time.Since(cutAt)
	// The bound: the store's settings end a silent session in about 15 s
	// (docs/scaling.md); without them PostgreSQL keeps it, lock and all,
	// for as long as TCP retransmits (about 15 minutes).
	gridtest.WaitFor(t, "PostgreSQL to end the cut replica's session and its write lock", 45*time.Second, func() bool {
		return writeLockSessions(t, sqldb, cut.Addr, true) == 0
	})
	t.Logf("the cut replica's session held the write lock from %v to %v after the cut",
		held.Round(time.Millisecond), time.Since(cutAt).Round(time.Millisecond))
	wg.Wait()
	for i, k := range keys {
		if k == "" {
			t.Fatalf("task %d was never accepted: %v", i, failed)
		}
	}
	if len(failed) > 0 {
		t.Logf("puts retried after the cut: %v", failed)
	}

	for i, key := range keys {
		out := filepath.Join(t.TempDir(), "r")
		var errOut string
		var code int
		for try := 0; try < 3; try++ {
			if _, errOut, code = g.KolejkaClient(ctx, "result", "get", "--wait", "120", key, out); code == 0 {
				break
			}
		}
		if code != 0 {
			t.Fatalf("result of task %d (%s): exit %d: %s", i, key, code, errOut)
		}
		b, err := os.ReadFile(filepath.Join(out, "out.txt"))
		if want := fmt.Sprintf("task %d\ndone\n", i); err != nil || string(b) != want {
			t.Errorf("task %d's output %q (%v), want %q", i, b, err, want)
		}
		if info := g.TaskInfo(key); info["resolved"] != true {
			t.Errorf("task %d: %v, want resolved", i, info)
		}
	}
	for _, run := range runs {
		out := filepath.Join(t.TempDir(), "w")
		if _, errOut, code := g.KolejkaClient(ctx, "workflow", "get", run, out); code != 0 {
			t.Errorf("workflow %s: exit %d: %s", run, code, errOut)
			continue
		}
		if b, err := os.ReadFile(filepath.Join(out, "second", "out.txt")); err != nil || string(b) != "step 1\nstep 2\n" {
			t.Errorf("workflow %s's last step: %q (%v), want both items' outputs", run, b, err)
		}
	}
	t.Logf("every result in %v after the cut", time.Since(cutAt).Round(time.Millisecond))
	var all, results, open int
	if err := sqldb.QueryRow(`SELECT COUNT(*) FROM tasks`).Scan(&all); err != nil {
		t.Fatal(err)
	}
	if err := sqldb.QueryRow(`SELECT COUNT(*) FROM results`).Scan(&results); err != nil {
		t.Fatal(err)
	}
	if err := sqldb.QueryRow(`SELECT COUNT(*) FROM tasks WHERE state <> 2`).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if want := tasks + len(runs)*3; all != want || results != want || open != 0 {
		t.Errorf("%d tasks, %d results, %d not done; want %d, %d, 0", all, results, open, want, want)
	}
	for i := range g.Replicas {
		if i != 1 && g.Proxy.Served[i].Load() == 0 {
			t.Errorf("replica %d served nothing", i)
		}
	}
	if before == 0 {
		t.Error("the cut replica served nothing before the cut")
	}
	if after := g.Proxy.Served[1].Load(); after != before {
		t.Errorf("the cut replica answered %d requests after its cut", after-before)
	}
	// The cut replica's own end gives up too: its relay's listening
	// connection fails rather than waiting for ever for a notification.
	if !g.Replicas[1].P.Logged("relay: listening connection lost", 30*time.Second) {
		t.Error("the cut replica's relay still waits on its listening connection")
	}
	// Back on the network, it serves again: its database connections that
	// died in the cut are replaced.
	nw.Mend(cut)
	direct := "http://" + g.Replicas[1].Addr + "/task/task/" + keys[0] + "/"
	gridtest.WaitFor(t, "the mended replica to read the database again", time.Minute, func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, direct, nil)
		req.Header.Set("Authorization", "Bearer "+g.Tokens["alice"])
		hc := http.Client{Timeout: 5 * time.Second}
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
