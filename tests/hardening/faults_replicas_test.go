package hardening_test

// Faults of replicas (docs/scaling.md "Replicas"), with real processes:
// kolejka-server replicas on one PostgreSQL database and one S3 bucket
// (SeaweedFS), one killed with SIGKILL in the middle of an upload (BR01) or
// of a node's long poll (BR02), two replicas collecting garbage while
// uploads of the same bytes run through both (BR03), and one, on a host of
// its own (a network namespace), cut off the network silently while it
// holds the global write lock (BR04), and one killed between a workflow
// step's end and its run's advance (BR05). What each proves: the dead replica
// leaves no blob under a hash and no row, no task is handed to two nodes,
// no blob a reference holds is lost, and the replicas left carry on with
// no manual step (within a bound, for a silent cut).

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/kolejka-go/kolejka/api"
	kclient "github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/tests/hardening"
)

// replicaSet is a grid of n replicas on a new database and a new bucket,
// with what the checks read directly: the database and the bucket.
type replicaSet struct {
	*grid
	db     *sql.DB
	s3     *minio.Client
	bucket string
}

func newReplicaSet(t *testing.T, n int, serverArgs ...string) *replicaSet {
	t.Helper()
	bin := bins(t)
	dbURL := pgtest.Database(t)
	srv := s3test.Start(t)
	b := srv.Bucket(t)
	conf := fmt.Sprintf("[server]\ndatabase = %s\nblobs = %s\nblobs_access_key = %s\nblobs_secret_key = %s\n",
		dbURL, s3test.URL(b), b.AccessKey, b.SecretKey)
	g := &grid{gridtest.NewGrid(t, bin, gridtest.GridOptions{ServerConf: conf, Replicas: n, ServerArgs: serverArgs, OutputLimit: outputLimit})}
	db, err := store.OpenSQL(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &replicaSet{grid: g, db: db, s3: srv.Client(), bucket: b.Bucket}
}

// client is user's Go client talking to replica i only.
func (rs *replicaSet) client(t *testing.T, i int, user string) *kclient.Client {
	t.Helper()
	c, err := kclient.New(context.Background(), kclient.Config{Server: "http://" + rs.Replicas[i].Addr, Token: rs.Tokens[user]})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// count is one number the database answers.
func (rs *replicaSet) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := rs.db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// keys lists the bucket.
func (rs *replicaSet) keys(t *testing.T) []string {
	t.Helper()
	var out []string
	for obj := range rs.s3.ListObjects(t.Context(), rs.bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		out = append(out, obj.Key)
	}
	return out
}

// upload posts body to replica i's POST /blob/reference/ as alice (always
// the upload path, never the dedup by hash) and returns the reference.
func (rs *replicaSet) upload(ctx context.Context, i int, body io.Reader) (*kclient.Reference, error) {
	var ans api.ReferenceAnswer
	ref := &ans.Reference
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+rs.Replicas[i].Addr+"/blob/reference/", body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+rs.Tokens["alice"])
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("upload: %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, &ans); err != nil || ref.Key == "" {
		return nil, fmt.Errorf("upload: no reference in the answer (%v): %s", err, data)
	}
	return ref, nil
}

// readRef is the bytes of reference key through replica i, as alice.
func (rs *replicaSet) readRef(ctx context.Context, i int, key string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+rs.Replicas[i].Addr+"/blob/reference/"+key+"/", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+rs.Tokens["alice"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read %s: %s: %s", key, resp.Status, bytes.TrimSpace(data))
	}
	return data, err
}

// deleteRef deletes reference key through replica i, as alice.
func (rs *replicaSet) deleteRef(ctx context.Context, i int, key string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "http://"+rs.Replicas[i].Addr+"/blob/reference/"+key+"/", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+rs.Tokens["alice"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("delete %s: %s: %s", key, resp.Status, bytes.TrimSpace(data))
	}
	return nil
}

// keepServing asks replica i for its front page until stop is called,
// which returns how many answers were 200 and the failures.
func (rs *replicaSet) keepServing(i int) (stop func() (int64, []string)) {
	var okN atomic.Int64
	var mu sync.Mutex
	var bad []string
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			resp, err := http.Get("http://" + rs.Replicas[i].Addr + "/")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					okN.Add(1)
				} else {
					err = fmt.Errorf("%s", resp.Status)
				}
			}
			if err != nil {
				mu.Lock()
				bad = append(bad, err.Error())
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond) // a client's pace, not a spin
		}
	}()
	return func() (int64, []string) {
		close(done)
		wg.Wait()
		return okN.Load(), bad
	}
}

// TestFaultsReplicasUploadKilled: replica A killed with SIGKILL while a
// client streams a 12 MiB blob into it (one 8 MiB part already sent on to
// S3).
func TestFaultsReplicasUploadKilled(t *testing.T) {
	r := caseOf(t, hardening.Fault, "BR01", "replicas on PostgreSQL and S3: kill -9 of replica A while a client streams a 12 MiB upload into it (all but its last 256 KiB sent, its multipart upload begun in the bucket); replica B serving meanwhile",
		"no object under the blob's key sha256/<hash> (nor under any hash key), no blob or reference row; B answered every request throughout; the same upload through B succeeds and the blob reads back whole through B and through A restarted")
	rs := newReplicaSet(t, 2)
	data := make([]byte, 12<<20)
	crand.Read(data)
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	stopB := rs.keepServing(1)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pr, pw := io.Pipe()
	answered := make(chan error, 1)
	go func() {
		_, err := rs.upload(ctx, 0, pr)
		pr.CloseWithError(fmt.Errorf("the upload ended: %v", err)) // unblocks the writer
		answered <- err
	}()
	// All but the last chunk goes in; the writer then holds, so the upload
	// is surely mid-stream when A dies.
	const chunk = 256 << 10
	held, release, written := make(chan struct{}), make(chan struct{}), make(chan int, 1)
	go func() {
		n := 0
		for n < len(data) {
			if n == len(data)-chunk {
				close(held)
				<-release
			}
			m, err := pw.Write(data[n : n+chunk])
			n += m
			if err != nil {
				break
			}
		}
		written <- n
		pw.Close()
	}()
	select {
	case <-held:
	case err := <-answered:
		t.Fatalf("the upload ended before its last chunk: %v", err)
	}
	// A has sent the first 8 MiB part on: the bucket shows its multipart
	// upload (under tmp/).
	gridtest.WaitFor(t, "the upload's multipart upload in the bucket", 30*time.Second, func() bool {
		for u := range rs.s3.ListIncompleteUploads(ctx, rs.bucket, "", true) {
			if u.Err == nil && u.Key != "" {
				return true
			}
		}
		return false
	})
	rs.Replicas[0].P.Kill9()
	close(release)
	var err error
	select {
	case err = <-answered:
	case <-time.After(30 * time.Second):
		t.Fatal("the client's upload did not end after its replica died")
	}
	sent := <-written
	r.Observe("upload into A killed with %.2f MiB of 12 sent, its multipart upload begun: the client got %v", float64(sent)/(1<<20), err)
	if err == nil {
		t.Fatal("the upload into the killed replica was answered OK")
	}

	keys := rs.keys(t)
	r.Observe("bucket after the kill: %d objects %v", len(keys), keys)
	// The bucket and the database are the test's own: a blob of a part of
	// the bytes (under another hash) counts too.
	for _, k := range keys {
		if strings.HasPrefix(k, "sha256/") {
			t.Errorf("an object under a hash key (%s; the upload's is sha256/%s) after the upload died", k, hash)
		}
	}
	if n := rs.count(t, `SELECT COUNT(*) FROM blobs`); n != 0 {
		t.Errorf("%d blob rows after the dead upload", n)
	}
	if n := rs.count(t, `SELECT COUNT(*) FROM refs`); n != 0 {
		t.Errorf("%d references after the dead upload", n)
	}

	// The same upload through B, then read back through B and through A
	// restarted.
	p := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ref, err := rs.client(t, 1, "alice").BlobPut(ctx, p)
	if err != nil {
		t.Fatalf("the same upload through B: %v", err)
	}
	if ref.Blob != hash {
		t.Errorf("B stored %s, want %s", ref.Blob, hash)
	}
	okB, badB := stopB()
	r.Observe("B answered %d requests OK meanwhile, %d failed", okB, len(badB))
	if okB == 0 || len(badB) > 0 {
		t.Errorf("B served %d requests, failed %d: %v", okB, len(badB), badB)
	}
	rs.StartReplica(0)
	for i, name := range []string{"B", "A restarted"} {
		got := filepath.Join(t.TempDir(), "got")
		if err := rs.client(t, 1-i, "alice").BlobGetExpect(ctx, ref.Key, hash, got); err != nil {
			t.Errorf("reading the blob through %s: %v", name, err)
		}
	}
	if n := rs.count(t, `SELECT COUNT(*) FROM blobs WHERE hash = $1`, hash); n != 1 {
		t.Errorf("%d blob rows after the upload through B, want 1", n)
	}
}

// TestFaultsReplicasPollKilled: replica A killed with SIGKILL while node
// a's dequeue long poll waits in it; a task submitted through C; node a's
// next dequeue goes to B.
func TestFaultsReplicasPollKilled(t *testing.T) {
	r := caseOf(t, hardening.Fault, "BR02", "replicas on PostgreSQL and S3: kill -9 of replica A while node a's dequeue long poll (60 s) waits in it; then a task for it submitted through C",
		"node a's poll ends with an error at once; its next dequeue (a long poll through B) gets the task, woken within seconds; node b polling B and C afterwards never gets it; the task has one assignee (a) and one attempt")
	rs := newReplicaSet(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tags := []string{"br02"}
	aOnA, aOnB := rs.client(t, 0, "a"), rs.client(t, 1, "a")
	first := make(chan error, 1)
	go func() {
		taken, err := aOnA.Dequeue(ctx, kclient.DequeueRequest{Concurrency: 1, Tags: tags, Wait: 60 * time.Second})
		if err == nil {
			err = fmt.Errorf("answered %d tasks", len(taken))
		}
		first <- err
	}()
	// A holds the poll once it has written node a's contact down.
	gridtest.WaitFor(t, "node a's dequeue noted by A", 20*time.Second, func() bool {
		return rs.count(t, `SELECT COUNT(*) FROM nodes n JOIN users u ON u.id = n.user_id WHERE u.name = 'a' AND n.last_dequeue IS NOT NULL`) == 1
	})
	select {
	case err := <-first:
		t.Fatalf("node a's poll ended before the kill: %v", err)
	default:
	}
	rs.Replicas[0].P.Kill9()
	killed := time.Now()
	select {
	case err := <-first:
		r.Observe("node a's poll on A ended %v after the kill: %v", time.Since(killed).Round(time.Millisecond), err)
	case <-time.After(10 * time.Second):
		t.Fatal("node a's poll did not end after A died")
	}

	type answer struct {
		tasks []string
		err   error
		at    time.Time
	}
	second := make(chan answer, 1)
	go func() {
		taken, err := aOnB.Dequeue(ctx, kclient.DequeueRequest{Concurrency: 1, Tags: tags, Wait: 30 * time.Second})
		a := answer{err: err, at: time.Now()}
		for _, tk := range taken {
			a.tasks = append(a.tasks, tk.ID)
		}
		second <- a
	}()
	// The task, through C, while node a's next poll may be waiting in B.
	dir := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["true"], "requires": ["br02"]}`)
	task, err := rs.client(t, 2, "alice").TaskPut(ctx, dir, spec.Limits{})
	if err != nil {
		t.Fatalf("submitting through C: %v", err)
	}
	submitted := time.Now()
	var a answer
	select {
	case a = <-second:
	case <-ctx.Done():
		t.Fatal("node a's dequeue through B never ended")
	}
	r.Observe("node a's dequeue through B: %v, %v after the submission", a.tasks, a.at.Sub(submitted).Round(time.Millisecond))
	if a.err != nil || len(a.tasks) != 1 || a.tasks[0] != task.ID {
		t.Fatalf("node a's dequeue through B: %v, %v; want [%s]", a.tasks, a.err, task.ID)
	}
	if d := a.at.Sub(submitted); d > 10*time.Second {
		t.Errorf("node a waited %v for a task submitted in another replica", d)
	}

	// Node b polls B and C, longer than a long poll's recheck of the
	// database: the task is node a's alone.
	polls := 0
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); polls++ {
		taken, err := rs.client(t, 1+polls%2, "b").Dequeue(ctx, kclient.DequeueRequest{Concurrency: 1, Tags: tags, Wait: time.Second})
		if err != nil {
			t.Fatalf("node b's dequeue: %v", err)
		}
		for _, tk := range taken {
			t.Errorf("node b also got task %s", tk.ID)
		}
	}
	info := rs.TaskInfo(task.ID)
	r.Observe("node b: %d polls through B and C, nothing; task: assignee %v, attempts %v", polls, info["assignee"], info["attempts"])
	if info["assignee"] != "a" || fmt.Sprint(info["attempts"]) != "1" {
		t.Errorf("task %s: assignee %v, attempts %v; want a, 1", task.ID, info["assignee"], info["attempts"])
	}
}

// TestFaultsReplicasCollectRace: replicas A and B each upload the same
// content and delete the reference in a loop (a delete collects the blob
// at once in the replica that took it when nothing else holds it), so
// uploads in one replica meet collections in the other. Two rules keep a
// collector from removing the object an upload in the other replica has
// just put in place: the hash lock the replicas share (store.LockBlob)
// and the S3 grace (blobs_grace, here 1 ns; SeaweedFS dates a fresh copy
// up to a second ahead, so a just-copied object reads young). The row
// fails when both are gone (66 of 622 references lost in a scratch run);
// either alone holds here.
func TestFaultsReplicasCollectRace(t *testing.T) {
	r := caseOf(t, hardening.Fault, "BR03", "replicas on PostgreSQL and S3, blobs_grace 1 ns: A and B each upload the same 64 KiB and delete their reference, in a loop for 20 s (each delete collects the blob at once), also with a periodic collection every 50 ms",
		"every reference an upload was answered OK for reads back whole (through the other replica) before its delete; after the loop, with no reference left, no blob row stays; a last upload reads back whole")
	rs := newReplicaSet(t, 2, "--blobs-grace", "1n", "--gc-interval", "50m")
	content := make([]byte, 64<<10)
	crand.Read(content)
	sum := sha256.Sum256(content)
	hash := hex.EncodeToString(sum[:])

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		mu       sync.Mutex
		acked    int
		lost     []string
		failures []string
	)
	end := time.Now().Add(20 * time.Second)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 1000 && time.Now().Before(end); n++ {
				ref, err := rs.upload(ctx, i, bytes.NewReader(content))
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("replica %d: %v", i, err))
					mu.Unlock()
					continue
				}
				got, err := rs.readRef(ctx, 1-i, ref.Key)
				mu.Lock()
				acked++
				if err != nil || !bytes.Equal(got, content) {
					lost = append(lost, fmt.Sprintf("reference %s from replica %d: %d bytes, %v", ref.Key, i, len(got), err))
				}
				mu.Unlock()
				if err := rs.deleteRef(ctx, i, ref.Key); err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("replica %d: %v", i, err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	logged := func(s string) int {
		return len(gridtest.LogLines(rs.Replicas[0].P.Log, s)) + len(gridtest.LogLines(rs.Replicas[1].P.Log, s))
	}
	r.Observe("%d uploads answered OK, %d lost, %d other failures; periodic passes that removed the blob: %d, young blobs kept: %d",
		acked, len(lost), len(failures), logged("removed unreferenced blobs"), logged("kept a young unreferenced blob"))
	if len(lost) > 0 {
		t.Errorf("%d references answered OK did not read back whole, e.g. %s", len(lost), lost[0])
	}
	if len(failures) > 0 {
		t.Errorf("%d uploads or deletes failed, e.g. %s", len(failures), failures[0])
	}
	if acked < 50 {
		t.Errorf("only %d uploads in the loop: no race to speak of", acked)
	}
	// Nothing holds the blob now: a collector removes its row (the
	// periodic pass, at the latest).
	gridtest.WaitFor(t, "the blob's row collected", 20*time.Second, func() bool {
		return rs.count(t, `SELECT COUNT(*) FROM blobs WHERE hash = $1`, hash) == 0
	})
	ref, err := rs.upload(ctx, 0, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rs.readRef(ctx, 1, ref.Key); err != nil || !bytes.Equal(got, content) {
		t.Errorf("the last upload reads back %d bytes, %v", len(got), err)
	}
	if keys := rs.keys(t); !strings.Contains(strings.Join(keys, " "), "sha256/"+hash) {
		t.Errorf("no object sha256/%s under a live reference: %v", hash, keys)
	}
}

// storeWriteLock is the key of the store's advisory write lock (its
// writeLock, "kolejka" in ASCII).
const storeWriteLock = 0x6b6f6c656a6b61

// lockSessions counts the sessions from addr that hold (granted) or wait
// for the store's write lock.
func (rs *replicaSet) lockSessions(t *testing.T, addr string, granted bool) int {
	t.Helper()
	return rs.count(t, `SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.classid = $1 AND l.objid = $2
		AND l.granted = `+fmt.Sprint(granted)+` AND host(a.client_addr) = $3`,
		int64(storeWriteLock>>32), int64(storeWriteLock&0xffffffff), addr)
}

// TestFaultsReplicasNetworkCut: replica A's network cut silently (its
// link down: no RST, no FIN) while its session is granted the write lock
// and it holds a blob's lock, in the middle of an upload.
func TestFaultsReplicasNetworkCut(t *testing.T) {
	r := caseOf(t, hardening.Fault, "BR04", "replicas on PostgreSQL and S3, each in a network namespace of its own on a bridge: replica A's link taken down (a silent cut) in the middle of an upload, once its session waits for the global write lock, which it is then granted (it holds the blob's lock too); the same bytes uploaded through B",
		"PostgreSQL ends A's session within 45 s (the store's keepalives and TCP_USER_TIMEOUT: about 15 s), and with it both locks; B's upload of the same bytes succeeds then; A's half is rolled back (one blob row, one reference: B's); every session of A's is gone; the blob reads back whole through B")
	nw := gridtest.NewNet(t, 2)
	bin := bins(t)
	dbURL := pgtest.StartOn(t, nw.Gate).Database(t)
	srv := s3test.StartOn(t, nw.Gate)
	b := srv.Bucket(t)
	conf := fmt.Sprintf("[server]\ndatabase = %s\nblobs = %s\nblobs_access_key = %s\nblobs_secret_key = %s\n",
		dbURL, s3test.URL(b), b.AccessKey, b.SecretKey)
	g := &grid{gridtest.NewGrid(t, bin, gridtest.GridOptions{ServerConf: conf, Replicas: 2, OutputLimit: outputLimit, ReplicaHosts: nw.Hosts})}
	db, err := store.OpenSQL(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rs := &replicaSet{grid: g, db: db, s3: srv.Client(), bucket: b.Bucket}
	a := nw.Hosts[0]

	data := make([]byte, 64<<10)
	crand.Read(data)
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The test holds the write lock, so that A's upload stops at its
	// first write, with the blob's lock taken.
	hold, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(storeWriteLock)); err != nil {
		t.Fatal(err)
	}
	answeredA := make(chan error, 1)
	go func() {
		_, err := rs.upload(ctx, 0, bytes.NewReader(data))
		answeredA <- err
	}()
	gridtest.WaitFor(t, "A's session to wait for the write lock", time.Minute, func() bool {
		return rs.lockSessions(t, a.Addr, false) > 0
	})
	nw.Cut(a)
	cutAt := time.Now()
	if err := hold.Commit(); err != nil {
		t.Fatal(err)
	}
	gridtest.WaitFor(t, "A's session to be granted the write lock", 30*time.Second, func() bool {
		return rs.lockSessions(t, a.Addr, true) > 0
	})
	r.Observe("A's session granted the write lock %v after the cut, its client gone", time.Since(cutAt).Round(time.Millisecond))
	if n := rs.count(t, `SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted AND host(a.client_addr) = $1`, a.Addr); n != 1 {
		t.Errorf("A holds %d blob locks, want 1: the upload stopped elsewhere than its commit", n)
	}

	// B's upload of the same bytes needs both locks A's session holds.
	ref, err := rs.upload(ctx, 1, bytes.NewReader(data))
	took := time.Since(cutAt)
	if err != nil {
		t.Fatalf("the upload through B: %v", err)
	}
	r.Observe("B's upload of the same bytes answered %v after the cut", took.Round(time.Millisecond))
	if took > 45*time.Second {
		t.Errorf("B waited %v after the cut, want under 45 s", took)
	}
	if n := rs.lockSessions(t, a.Addr, true); n != 0 {
		t.Errorf("A's session still holds the write lock after B's upload")
	}
	// Every session of A's ends the same way: idle ones on the keepalives.
	gridtest.WaitFor(t, "every session of A's to end", 45*time.Second, func() bool {
		return rs.count(t, `SELECT COUNT(*) FROM pg_stat_activity WHERE host(client_addr) = $1`, a.Addr) == 0
	})
	r.Observe("every session of A's gone %v after the cut", time.Since(cutAt).Round(time.Millisecond))
	if n := rs.count(t, `SELECT COUNT(*) FROM blobs WHERE hash = $1`, hash); n != 1 {
		t.Errorf("%d blob rows, want 1", n)
	}
	if n := rs.count(t, `SELECT COUNT(*) FROM refs`); n != 1 {
		t.Errorf("%d references, want 1 (B's; A's was never committed)", n)
	}
	got, err := rs.readRef(ctx, 1, ref.Key)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("reading the blob through B: %d bytes (%v), want the 64 KiB uploaded", len(got), err)
	}
	select {
	case err := <-answeredA:
		r.Observe("A's client got %v", err)
		if err == nil {
			t.Error("the upload into the cut replica was answered OK")
		}
	default:
		r.Observe("A's client still waits for an answer (its own timeout ends it)")
	}
	// Cut off, A cannot shut down cleanly: it is killed.
	g.Replicas[0].P.Kill9()
}

// TestFaultsReplicasAdvanceLeft: replica A stores a workflow step's end and
// dies (SIGKILL) before it advances the run. The database is made to hold
// exactly what that leaves — the end committed with its mark on the run,
// the next step not submitted — by undoing, once A is dead, the advance A
// did make; the window itself is too narrow to hit. Replica B, serving all
// along and never restarted, must advance the run by itself.
func TestFaultsReplicasAdvanceLeft(t *testing.T) {
	r := caseOf(t, hardening.Fault, "BR05", "replicas on PostgreSQL and S3: a workflow (a, then b) whose step a's result replica A stores and then dies (kill -9) before advancing the run: a's end committed with the run marked owed an advance, b not submitted",
		"replica B, alive throughout and never restarted, submits b within its expiry pass after the 5 s grace; b runs; the run ends ok; the run owes nothing after")
	rs := newReplicaSet(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wfDir := t.TempDir()
	for name, content := range map[string]string{
		"kolejka_workflow.json": `{"tasks": {"a": {"task": "x"}, "b": {"task": "x", "after": ["a"]}}}`,
		"x/kolejka_task.json":   `{"image": "kolejka-test:latest", "args": ["true"], "requires": ["br05"]}`,
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(wfDir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(wfDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run, err := rs.client(t, 1, "alice").WorkflowPut(ctx, wfDir)
	if err != nil {
		t.Fatalf("putting the workflow through B: %v", err)
	}
	var before []byte
	if err := rs.db.QueryRow(`SELECT run FROM runs WHERE key = $1`, run).Scan(&before); err != nil {
		t.Fatal(err)
	}
	post := func(i int) string {
		t.Helper()
		node := rs.client(t, i, "a")
		taken, err := node.Dequeue(ctx, kclient.DequeueRequest{Concurrency: 1, Tags: []string{"br05"}, Wait: 30 * time.Second})
		if err != nil || len(taken) != 1 {
			t.Fatalf("dequeue through replica %d: %v %v", i, taken, err)
		}
		zero := 0
		if _, err := node.ResultPost(ctx, t.TempDir(), &spec.Result{ID: taken[0].ID, Result: &zero, Status: spec.StatusOK, Files: map[string]spec.File{}}); err != nil {
			t.Fatalf("posting %s through replica %d: %v", taken[0].ID, i, err)
		}
		return taken[0].ID
	}
	a := post(0)
	rs.Replicas[0].P.Kill9()
	// What a kill between a's end and the advance leaves.
	if _, err := rs.db.Exec(`DELETE FROM tasks WHERE run_id = (SELECT id FROM runs WHERE key = $1) AND step = 'b'`, run); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.db.Exec(`UPDATE runs SET run = $1, advance_due = $2 WHERE key = $3`, before, time.Now().UnixMicro(), run); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	steps := func() int {
		return rs.count(t, `SELECT COUNT(*) FROM tasks WHERE run_id = (SELECT id FROM runs WHERE key = $1)`, run)
	}
	r.Observe("after A's death: run %s holds %d task (a, %s, done), marked owed an advance", run, steps(), a)
	gridtest.WaitFor(t, "b submitted by replica B", time.Minute, func() bool { return steps() == 2 })
	r.Observe("b submitted by B %v after", time.Since(left).Round(100*time.Millisecond))
	b := post(1)
	info, err := rs.client(t, 1, "alice").WorkflowWait(ctx, run, 200*time.Millisecond)
	if err != nil || info.State != "ok" {
		t.Fatalf("the run after b (%s): %+v %v; want ok", b, info, err)
	}
	owed := rs.count(t, `SELECT COUNT(*) FROM runs WHERE key = $1 AND advance_due IS NOT NULL`, run)
	r.Observe("b (%s) done through B; the run %s; owed an advance: %d", b, info.State, owed)
	if owed != 0 {
		t.Errorf("the run still owes an advance after its end")
	}
}
