package server_test

// The server over an S3 bucket (a real SeaweedFS, s3test): a task's files
// and its result go through the bucket, the collector removes what no
// reference holds once it is older than blobs_grace and keeps a younger
// one (another replica's upload in flight), a bucket the server cannot use
// stops it at start, and one that goes away while it runs is answered 503
// until it comes back.

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/kolejka-go/kolejka/internal/server"
	blobss3 "github.com/kolejka-go/kolejka/internal/server/blobs/s3"
	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
)

// withS3 points the server at a new bucket of the test S3 server.
func withS3(t *testing.T, grace time.Duration) (func(*server.Config), *minio.Client, string) {
	srv := s3test.Start(t)
	o := srv.Bucket(t)
	return func(c *server.Config) {
		c.Blobs = s3test.URL(o)
		c.BlobsAccessKey, c.BlobsSecretKey = o.AccessKey, o.SecretKey
		c.BlobGrace = grace
	}, srv.Client(), o.Bucket
}

// objects lists the bucket's keys.
func objects(t *testing.T, c *minio.Client, bucket string) []string {
	t.Helper()
	var keys []string
	for obj := range c.ListObjects(t.Context(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	return keys
}

func TestS3TaskAndResult(t *testing.T) {
	opt, c, bucket := withS3(t, time.Nanosecond)
	e := newEnv(t, opt)
	e.standardUsers()
	alice := e.py("alice")
	input := []byte("input bytes in a bucket\n")
	key := mustOK(t, alice.taskPut(map[string]any{"image": "busybox:latest", "args": []string{"cat", "input.txt"}},
		map[string][]byte{"input.txt": input})).json["task"].(map[string]any)["id"].(string)
	if got := objects(t, c, bucket); len(got) != 1 || got[0] != blobss3.BlobPrefix+sha(input) {
		t.Fatalf("bucket after the task's upload: %v", got)
	}

	node := e.py("node")
	mustOK(t, node.dequeue(1, map[string]any{"cpus": 4, "memory": "8G"}, nil))
	tg := mustOK(t, node.get("/task/task/"+key+"/"))
	fref := tg.json["task"].(map[string]any)["files"].(map[string]any)["input.txt"].(map[string]any)["reference"].(string)
	if got := node.get("/blob/reference/" + fref + "/"); got.code != 200 || string(got.body) != string(input) {
		t.Fatalf("node reads the task's file: %v", got)
	}
	output := []byte("output bytes in a bucket\n")
	mustOK(t, node.resultPut(map[string]any{"id": key, "result": 0, "status": "OK", "stdout": "stdout", "tags": []string{}},
		map[string][]byte{"stdout": output}))
	result := mustOK(t, alice.get("/task/result/"+key+"/")).json["result"].(map[string]any)
	oref := result["files"].(map[string]any)["stdout"].(map[string]any)["reference"].(string)
	if got := alice.get("/blob/reference/" + oref + "/"); got.code != 200 || string(got.body) != string(output) {
		t.Fatalf("owner reads the result's file: %v", got)
	}

	// A blob whose last reference goes leaves the bucket; the task's and
	// the result's stay.
	tok := e.tok("alice")
	dropped := []byte("a blob nobody keeps")
	ref := tok.upload(dropped)
	if got := objects(t, c, bucket); len(got) != 3 {
		t.Fatalf("bucket before the collection: %v", got)
	}
	mustOK(t, tok.do("DELETE", "/blob/reference/"+ref+"/", nil))
	waitFor(t, "the dropped blob's object to be collected", func() bool {
		got := objects(t, c, bucket)
		return len(got) == 2 && !slices.Contains(got, blobss3.BlobPrefix+sha(dropped))
	})
	if got := alice.get("/blob/reference/" + oref + "/"); got.code != 200 || string(got.body) != string(output) {
		t.Fatalf("the result's file after a collection: %v", got)
	}
}

// An unreferenced blob younger than blobs_grace stays in the bucket (it may
// be another replica's upload whose row is not committed yet); its row goes.
func TestS3CollectorSparesYoungBlobs(t *testing.T) {
	opt, c, bucket := withS3(t, time.Hour)
	e := newEnv(t, opt)
	e.standardUsers()
	a := e.tok("alice")
	data := []byte("uploaded a moment ago")
	ref := a.upload(data)
	mustOK(t, a.do("DELETE", "/blob/reference/"+ref+"/", nil))
	waitFor(t, "the blob's row to be collected", func() bool { return e.count("blobs") == 0 })
	if got := objects(t, c, bucket); len(got) != 1 || got[0] != blobss3.BlobPrefix+sha(data) {
		t.Errorf("bucket: %v, want the young blob kept", got)
	}
	// Uploading it again finds nothing by hash and stores it again.
	ref = a.upload(data)
	if got := a.do("GET", "/blob/reference/"+ref+"/", nil); string(got.body) != string(data) {
		t.Errorf("re-uploaded blob: %v", got)
	}
}

// A bucket the server cannot use stops Open with a line naming the setting.
func TestS3OpenRefuses(t *testing.T) {
	opt, _, _ := withS3(t, 0)
	for name, c := range map[string]struct {
		edit func(*server.Config)
		want string
	}{
		"missing bucket": {func(c *server.Config) { c.Blobs = strings.Replace(c.Blobs, "s3://", "s3://nope-", 1) }, "the bucket does not exist"},
		"wrong key":      {func(c *server.Config) { c.BlobsSecretKey = "wrong" }, "the credentials were refused"},
		"unreachable":    {func(c *server.Config) { c.Blobs = "s3://bkt?endpoint=http://127.0.0.1:1" }, "the endpoint does not answer"},
		"malformed":      {func(c *server.Config) { c.Blobs = "s3://bkt?endpoint=127.0.0.1:1" }, "want http(s)://host[:port]"},
		"not a URL":      {func(c *server.Config) { c.Blobs = "/srv/blobs" }, "want empty (the data folder) or s3://"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := server.Config{DataDir: t.TempDir(), Logger: testLogger(t)}
			opt(&cfg)
			c.edit(&cfg)
			s, err := server.Open(cfg)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, server.ErrConfig) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Open: %v, want one line with %q", err, c.want)
			}
		})
	}
}

// The start-up sweep removes what a crash left in the bucket (an object
// under a hash with no row, a temporary object) once older than
// blobs_grace, and leaves younger ones: another replica's upload.
func TestS3StartUpSweep(t *testing.T) {
	opt, c, bucket := withS3(t, time.Hour)
	e := newEnv(t, opt)
	e.standardUsers()
	kept := []byte("a blob with its row")
	e.tok("alice").upload(kept)
	orphan := []byte("committed, row never written")
	for _, key := range []string{blobss3.BlobPrefix + sha(orphan), blobss3.TempPrefix + "crashed-upload"} {
		if _, err := c.PutObject(t.Context(), bucket, key, bytes.NewReader(orphan), int64(len(orphan)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.restart() // grace 1 h: everything is young
	if got := objects(t, c, bucket); len(got) != 3 {
		t.Errorf("after a start with a grace of 1 h: %v, want all 3 kept", got)
	}
	e.cfg.BlobGrace = time.Nanosecond
	e.restart()
	if got := objects(t, c, bucket); len(got) != 1 || got[0] != blobss3.BlobPrefix+sha(kept) {
		t.Errorf("after a start with no grace: %v, want only the recorded blob", got)
	}
}

// The bucket's S3 server dies (SIGKILL) while the server runs, then comes
// back: uploads, downloads and deletes in between answer 503 with a
// Retry-After and record nothing; a collection pass deletes no row; a
// download under way when it dies is cut short of its Content-Length; and
// once S3 is back everything works with no restart of the server.
func TestS3Outage(t *testing.T) {
	srv := s3test.New(t) // of this test's own: it is killed
	o := srv.Bucket(t)
	passes := make(chan struct{}, 1000)
	e := newEnv(t, func(c *server.Config) {
		c.Blobs = s3test.URL(o)
		c.BlobsAccessKey, c.BlobsSecretKey = o.AccessKey, o.SecretKey
		c.BlobGrace = time.Nanosecond
		c.GCInterval = 50 * time.Millisecond
		server.SetCollectHook(c, func() { passes <- struct{}{} })
	})
	e.standardUsers()
	a, manager := e.tok("alice"), e.tok("max")
	kept := []byte("a blob a task holds")
	task := a.submit(simpleTask(), map[string][]byte{"input": kept})
	dropped := []byte("a blob whose reference goes during the outage")
	droppedRef := a.upload(dropped)
	// Large enough that the kernel's socket buffers between S3, the
	// server and the client cannot hold it: S3 dies with most unsent.
	big := make([]byte, 64<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	bigRef := a.upload(big)
	keptRef := mustOK(t, a.do("GET", "/task/task/"+task+"/", nil)).json["task"].(map[string]any)["files"].(map[string]any)["input"].(map[string]any)["reference"].(string)

	// A download under way when S3 dies: the client gets less than the
	// Content-Length and an error, never a clean end.
	req, _ := http.NewRequest("GET", e.base+"blob/reference/"+bigRef+"/", nil)
	req.Header.Set("Authorization", "Bearer "+e.tokens["alice"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(big)) {
		t.Fatalf("download: %s, Content-Length %d", resp.Status, resp.ContentLength)
	}
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	srv.Kill(t)
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || len(head)+len(rest) >= len(big) {
		t.Fatalf("download cut by S3's death: %d of %d bytes, error %v; want fewer and an error", len(head)+len(rest), len(big), err)
	}
	t.Logf("download cut after %d of %d bytes: %v", len(head)+len(rest), len(big), err)

	before := e.snapshot()
	unavailable := func(what string, got answer) {
		t.Helper()
		named := strings.Contains(string(got.body), "blob store is unavailable") || what == "a HEAD" // no body
		if got.code != http.StatusServiceUnavailable || got.header.Get("Retry-After") == "" || !named {
			t.Errorf("%s during the outage: %v (Retry-After %q); want 503 naming the blob store, with Retry-After", what, got, got.header.Get("Retry-After"))
		}
	}
	unavailable("a small upload", a.do("POST", "/blob/reference/", []byte("uploaded during the outage")))
	unavailable("a large upload", a.do("POST", "/blob/reference/", big[:3<<20]))
	unavailable("a download", a.do("GET", "/blob/reference/"+keptRef+"/", nil))
	unavailable("a HEAD", a.do("HEAD", "/blob/reference/"+keptRef+"/", nil))
	unavailable("a manager's download by hash", manager.do("GET", "/blob/blob/"+sha(kept)+"/", nil))
	unavailable("a manager's delete by hash", manager.do("DELETE", "/blob/blob/"+sha(kept)+"/", nil))
	if after := e.snapshot(); !reflect.DeepEqual(before, after) {
		t.Errorf("rows during the outage: %v, before %v", after, before)
	}

	// A reference deleted now goes (the database is up); its blob's row
	// stays while the collector cannot remove the object.
	mustOK(t, a.do("DELETE", "/blob/reference/"+droppedRef+"/", nil))
	for len(passes) > 0 {
		<-passes
	}
	for range 3 {
		<-passes // whole passes that began after the deletion
	}
	if n := e.count("blobs"); n != before.rows["blobs"] {
		t.Errorf("blob rows after collections during the outage: %d, want %d", n, before.rows["blobs"])
	}

	srv.Restart(t)
	waitFor(t, "the dropped blob to be collected once S3 is back", func() bool {
		return e.count("blobs") == before.rows["blobs"]-1 && !slices.Contains(objects(t, srv.Client(), o.Bucket), blobss3.BlobPrefix+sha(dropped))
	})
	if got := a.do("GET", "/blob/reference/"+keptRef+"/", nil); got.code != 200 || !bytes.Equal(got.body, kept) {
		t.Errorf("download after the outage: %v", got)
	}
	if got := a.do("GET", "/blob/reference/"+bigRef+"/", nil); got.code != 200 || !bytes.Equal(got.body, big) {
		t.Errorf("the large blob after the outage: %d, %d bytes", got.code, len(got.body))
	}
	again := []byte("uploaded after the outage")
	if got := a.do("GET", "/blob/reference/"+a.upload(again)+"/", nil); !bytes.Equal(got.body, again) {
		t.Errorf("upload after the outage: %v", got)
	}
}
