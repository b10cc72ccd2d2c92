package hardening_test

// Faults of the blob store while the server runs (docs/scaling.md, "Blobs
// in S3"): the bucket's S3 server (a real SeaweedFS of the test's own) is
// killed with SIGKILL under a running kolejka-server and a kolejka-foreman
// node, real processes on loopback, and started again later over the same
// data. What each row proves: an upload, download or delete meanwhile is
// answered 503 with a Retry-After naming the blob store and records
// nothing; a download under way is cut short, never taken for whole; the
// collector deletes no row of a blob it could not remove; a node's result
// waits in its retries and lands once S3 is back; and the grid carries on
// with no restart.

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	kclient "github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server"
	blobss3 "github.com/kolejka-go/kolejka/internal/server/blobs/s3"
	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
	"github.com/kolejka-go/kolejka/tests/hardening"
)

// outageGrid is a grid whose server keeps its blobs in a bucket of a weed
// the test kills and restarts.
type outageGrid struct {
	*grid
	s3     *s3test.Server
	bucket string
}

// do sends a request to the server as user, returning status, Retry-After
// and body.
func (g *outageGrid) do(t *testing.T, user, method, path string, body []byte) (int, string, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+g.Addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+g.Tokens[user])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), strings.TrimSpace(string(data))
}

// hasObject is whether the bucket holds hash's object.
func (g *outageGrid) hasObject(t *testing.T, hash string) bool {
	t.Helper()
	_, err := g.s3.Client().StatObject(t.Context(), g.bucket, blobss3.BlobPrefix+hash, minio.StatObjectOptions{})
	if err != nil && minio.ToErrorResponse(err).Code != "NoSuchKey" {
		t.Fatalf("stat %s: %v", hash, err)
	}
	return err == nil
}

// blobRow is whether the server's database has a row for hash.
func (g *outageGrid) blobRow(t *testing.T, hash string) bool {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(g.Data, server.DatabaseFile)+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM blobs WHERE hash = ?`, hash).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// recorded is the digest of the tables that say what the server accepted.
func recorded(st serverState) string {
	var b strings.Builder
	for _, table := range []string{"blobs", "refs", "tasks", "task_files", "results", "result_files"} {
		fmt.Fprintf(&b, "%s=%d/%s ", table, st.rows[table], st.tables[table])
	}
	return b.String()
}

func sum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

func TestFaultsS3Outage(t *testing.T) {
	bin := bins(t)
	weed := s3test.New(t)
	b := weed.Bucket(t)
	conf := fmt.Sprintf("[server]\nblobs = %s\nblobs_access_key = %s\nblobs_secret_key = %s\nblobs_grace = 1s\n",
		s3test.URL(b), b.AccessKey, b.SecretKey)
	g := &outageGrid{
		grid:   &grid{gridtest.NewGrid(t, bin, gridtest.GridOptions{ServerConf: conf, ServerArgs: []string{"--gc-interval", "1s"}, OutputLimit: outputLimit})},
		s3:     weed,
		bucket: b.Bucket,
	}
	g.Admin("adduser", "--managers", "max", "max-password")
	g.Tokens["max"] = strings.TrimSpace(g.Admin("token", "max"))
	serverPid := g.Server.Cmd.Process.Pid
	g.startForeman("a")
	ctx := context.Background()

	// Before the outage: a task run through the node (its result in the
	// bucket), a blob the collector will want, a large blob to download.
	doneKey := g.Put(gridtest.WriteTask(t, fmt.Sprintf(`{"image": %q, "args": ["sh", "-c", "echo before the outage"], "limits": {"time": "20s"}, "stdout": "out"}`, gridtest.TestImage)))
	if _, res, err := g.waitResult(doneKey, 60*time.Second); err != nil || res.Status != "OK" {
		t.Fatalf("the task before the outage: %v, %v", res, err)
	}
	dropped := []byte("a blob whose last reference goes during the outage")
	droppedRef := g.upload(t, dropped)
	kept := []byte("a blob that stays")
	keptRef := g.upload(t, kept)
	big := make([]byte, 64<<20)
	if _, err := crand.Read(big); err != nil {
		t.Fatal(err)
	}
	bigRef := g.upload(t, big)

	// BB08 first: the kill that starts the outage lands in a download.
	t.Run("BB08", func(t *testing.T) {
		r := caseOf(t, hardening.Fault, "BB08", "blobs in S3: the S3 server is killed (SIGKILL) while a client downloads a 64 MiB blob through kolejka-server",
			"the download is cut short of its Content-Length with an error (the connection is aborted), never a clean end the client could take for the whole file")
		req, _ := http.NewRequest(http.MethodGet, "http://"+g.Addr+"/blob/reference/"+bigRef+"/", nil)
		req.Header.Set("Authorization", "Bearer "+g.Tokens["alice"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(big)) {
			t.Fatalf("download: %s, Content-Length %d", resp.Status, resp.ContentLength)
		}
		head := make([]byte, 1<<20)
		if _, err := io.ReadFull(resp.Body, head); err != nil {
			t.Fatal(err)
		}
		weed.Kill(t) // the outage begins: it lasts until BB09 restarts weed
		rest, err := io.ReadAll(resp.Body)
		got := len(head) + len(rest)
		r.Observe("S3 killed after the client read 1 MiB: the client got %d of %d bytes, then %v", got, len(big), err)
		if err == nil || got >= len(big) {
			t.Errorf("the download ended with %d of %d bytes and error %v; want fewer bytes and an error", got, len(big), err)
		}
		if bytes.Equal(append(head, rest...), big[:got]) {
			r.Observe("the bytes it got are the blob's first %d", got)
		} else {
			t.Error("the bytes received differ from the blob's")
		}
	})
	if weed.Running() {
		t.Fatal("weed still runs: the outage rows need it down")
	}

	before := stateOf(t, g.Data)
	t.Run("BB06", func(t *testing.T) {
		r := caseOf(t, hardening.Fault, "BB06", "blobs in S3 unreachable (S3 killed): uploads while the server runs: a raw POST /blob/reference/ (small and 3 MiB), `kolejka-client task put` of a task with a file",
			"503 with Retry-After and a message naming the blob store; the client says the server cannot take it now; no reference, blob or task row recorded")
		for _, body := range [][]byte{[]byte("uploaded during the outage"), big[:3<<20]} {
			code, retry, msg := g.do(t, "alice", http.MethodPost, "/blob/reference/", body)
			r.Observe("POST /blob/reference/ (%d bytes): %d, Retry-After %q, %q", len(body), code, retry, msg)
			if code != http.StatusServiceUnavailable || retry == "" || !strings.Contains(msg, "blob store is unavailable") {
				t.Errorf("upload of %d bytes: %d, Retry-After %q, %q", len(body), code, retry, msg)
			}
		}
		dir := gridtest.WriteTask(t, fmt.Sprintf(`{"image": %q, "args": ["cat", "in.txt"], "files": {"in.txt": {"path": "in.txt"}}}`, gridtest.TestImage), "in.txt", "input during the outage\n")
		out, errOut, code := g.KolejkaClient(ctx, "task", "put", dir)
		r.Observe("kolejka-client task put: exit %d, %s", code, strings.TrimSpace(errOut))
		if code == 0 || !strings.Contains(errOut, "blob store is unavailable") {
			t.Errorf("task put during the outage: exit %d, out %q, err %q", code, out, errOut)
		}
		if after := stateOf(t, g.Data); recorded(after) != recorded(before) {
			t.Errorf("recorded during the outage: %s\nbefore: %s", recorded(after), recorded(before))
		}
	})
	t.Run("BB07", func(t *testing.T) {
		r := caseOf(t, hardening.Fault, "BB07", "blobs in S3 unreachable: reads while the server runs: GET and HEAD of a reference, a manager's GET by hash, `result get` and `blob get` with the Go client",
			"503 with Retry-After naming the blob store; the client fails with \"the server cannot take it now\" and writes no file")
		for _, q := range [][2]string{{"alice", http.MethodGet + " /blob/reference/" + keptRef + "/"}, {"alice", http.MethodHead + " /blob/reference/" + keptRef + "/"}, {"max", http.MethodGet + " /blob/blob/" + sum(kept) + "/"}} {
			method, path, _ := strings.Cut(q[1], " ")
			code, retry, msg := g.do(t, q[0], method, path, nil)
			r.Observe("%s: %d, Retry-After %q, %q", q[1], code, retry, msg)
			if code != http.StatusServiceUnavailable || retry == "" || (method == http.MethodGet && !strings.Contains(msg, "blob store is unavailable")) {
				t.Errorf("%s: %d, Retry-After %q, %q", q[1], code, retry, msg)
			}
		}
		resultDir := filepath.Join(t.TempDir(), "result")
		_, err := g.Alice.ResultGet(ctx, doneKey, resultDir, 0)
		r.Observe("ResultGet: %v", err)
		if !errors.Is(err, kclient.ErrUnavailable) {
			t.Errorf("ResultGet during the outage: %v, want ErrUnavailable", err)
		}
		if entries, _ := os.ReadDir(resultDir); len(entries) != 0 {
			t.Errorf("ResultGet left %d entries in the result folder", len(entries))
		}
		file := filepath.Join(t.TempDir(), "kept")
		err = g.Alice.BlobGet(ctx, keptRef, file)
		r.Observe("BlobGet: %v", err)
		if !errors.Is(err, kclient.ErrUnavailable) {
			t.Errorf("BlobGet during the outage: %v, want ErrUnavailable", err)
		}
		if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("BlobGet left a file (%v)", err)
		}
	})
	t.Run("BB11", func(t *testing.T) {
		r := caseOf(t, hardening.Fault, "BB11", "blobs in S3 unreachable: a manager deletes a blob by hash (DELETE /blob/blob/<sha256>/)",
			"503 with Retry-After; the blob's row and its references stay, so that the delete can be made again once S3 is back")
		code, retry, msg := g.do(t, "max", http.MethodDelete, "/blob/blob/"+sum(kept)+"/", nil)
		r.Observe("DELETE: %d, Retry-After %q, %q", code, retry, msg)
		if code != http.StatusServiceUnavailable || retry == "" || !strings.Contains(msg, "nothing was deleted") {
			t.Errorf("delete during the outage: %d, Retry-After %q, %q", code, retry, msg)
		}
		if after := stateOf(t, g.Data); recorded(after) != recorded(before) {
			t.Errorf("recorded after the delete: %s\nbefore: %s", recorded(after), recorded(before))
		}
	})

	// BB10's deletion and BB09's task happen during the outage; their
	// checks end after the restart.
	mustSucceed := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	gcFailures := len(gridtest.LogLines(g.Server.Log, `msg="garbage collection"`))
	mustSucceed(g.Alice.BlobDelete(ctx, droppedRef))
	gridtest.WaitFor(t, "two failed collections after the deletion", 30*time.Second, func() bool {
		return len(gridtest.LogLines(g.Server.Log, `msg="garbage collection"`)) >= gcFailures+2
	})
	gcRowKept := g.blobRow(t, sum(dropped))

	refused := g.refusedUploads()
	postKey := g.Put(gridtest.WriteTask(t, fmt.Sprintf(`{"image": %q, "args": ["sh", "-c", "echo posted after the outage"], "limits": {"time": "20s"}, "stdout": "out"}`, gridtest.TestImage)))
	gridtest.WaitFor(t, "the node's result upload to be refused twice", 60*time.Second, func() bool {
		return g.refusedUploads() >= refused+2
	})
	if _, err := g.Alice.Result(ctx, postKey, 0); !errors.Is(err, kclient.ErrNotFound) {
		t.Fatalf("the task has a result during the outage: %v", err)
	}
	weed.Restart(t)
	restarted := time.Now()

	t.Run("BB09", func(t *testing.T) {
		r := caseOf(t, hardening.Fault, "BB09", "blobs in S3 unreachable when a node posts a task's result (its stdout upload refused 503), then S3 comes back",
			"the node retries (503 is transient) and the result lands once S3 is back, its file intact; nothing is lost and the task runs once")
		dir, res, err := g.waitResult(postKey, 90*time.Second)
		if err != nil {
			t.Fatalf("the result after the outage: %v\nforeman log:\n%s", err, gridtest.Tail(g.Nodes["a"].Log))
		}
		out, _ := os.ReadFile(filepath.Join(dir, "out"))
		r.Observe("result %s %s %d s after S3 came back, out %q; attempts %v", postKey, res.Status, int(time.Since(restarted).Seconds()), out, g.TaskInfo(postKey)["attempts"])
		if res.Status != "OK" || string(out) != "posted after the outage\n" {
			t.Errorf("the result: %s, out %q", res.Status, out)
		}
	})
	t.Run("BB10", func(t *testing.T) {
		r := caseOf(t, hardening.Fault, "BB10", "blobs in S3 unreachable while the collector runs (every 1 s) over a blob whose last reference was deleted meanwhile",
			"the collections fail and are logged; the blob's row stays while its object cannot be removed; once S3 is back the next pass removes both")
		r.Observe("after the failed collections: row kept %v", gcRowKept)
		if !gcRowKept {
			t.Error("the collector deleted the row of a blob it could not remove")
		}
		gridtest.WaitFor(t, "the blob to be collected once S3 is back", 30*time.Second, func() bool {
			return !g.blobRow(t, sum(dropped)) && !g.hasObject(t, sum(dropped))
		})
		r.Observe("collected %.1f s after S3 came back: no row, no object", time.Since(restarted).Seconds())
		if !g.blobRow(t, sum(kept)) || !g.hasObject(t, sum(kept)) {
			t.Error("the kept blob went")
		}
	})
	t.Run("BB12", func(t *testing.T) {
		r := caseOf(t, hardening.Fault, "BB12", "blobs in S3: S3 back after an outage, the server not restarted",
			"the same server process serves everything again: the blobs read during the outage whole, a new upload, a task run end to end with kolejka-client execute")
		if pid := g.Server.Cmd.Process.Pid; pid != serverPid || !g.Server.Running() {
			t.Fatalf("the server was restarted (pid %d, was %d) or is not running", pid, serverPid)
		}
		for ref, want := range map[string][]byte{keptRef: kept, bigRef: big} {
			file := filepath.Join(t.TempDir(), "blob")
			if err := g.Alice.BlobGet(ctx, ref, file); err != nil {
				t.Errorf("BlobGet after the outage: %v", err)
			} else if got, _ := os.ReadFile(file); !bytes.Equal(got, want) {
				t.Errorf("BlobGet after the outage: %d bytes, want %d", len(got), len(want))
			}
		}
		g.upload(t, []byte("uploaded after the outage"))
		res, took, err := g.executeNext(t, 60*time.Second)
		if err != nil {
			t.Fatalf("the next task: %v", err)
		}
		r.Observe("same server (pid %d); blobs read whole; the next task %s in %v", serverPid, res.Status, took.Round(time.Millisecond))
	})
}

// upload posts data as alice and returns the reference.
func (g *outageGrid) upload(t *testing.T, data []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ref, err := g.Alice.BlobPut(context.Background(), f)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	return ref.Key
}

// refusedUploads counts the uploads (POST /blob/reference/) the server's
// log shows refused for the blob store.
func (g *outageGrid) refusedUploads() int {
	n := 0
	for _, l := range gridtest.LogLines(g.Server.Log, "blob store unavailable") {
		if strings.Contains(l, "method=POST path=/blob/reference/ ") {
			n++
		}
	}
	return n
}
