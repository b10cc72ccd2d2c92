package server_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv"
)

// child is a server in another process (this test binary, re-executed).
type child struct {
	h    *testenv.Helper
	base string
}

func startChild(t *testing.T, dir string) *child {
	t.Helper()
	return startChildAs(t, "server", dir)
}

// startChildAs is startChild with another of TestMain's server helpers.
func startChildAs(t *testing.T, helper, dir string) *child {
	t.Helper()
	h := testenv.StartHelper(t, helper, dir, nil)
	line := h.Line()
	addr, ok := strings.CutPrefix(line, "listening ")
	if !ok {
		t.Fatalf("child said %q", line)
	}
	return &child{h: h, base: "http://" + addr + "/"}
}

// crashFolder makes a data folder with users alice (a client) and node (a
// processor) for a server in another process, and their bearer tokens.
func crashFolder(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	adm := openAdminWithTokens(t, dir)
	adm.srv.Close()
	return dir, adm.tokens
}

// adminServer is a server opened on a folder with alice and node.
type adminServer struct {
	srv    *server.Server
	tokens map[string]string
}

// openAdminWithTokens opens dir with users alice (a client) and node (a
// processor) and makes their bearer tokens; the caller closes it.
func openAdminWithTokens(t *testing.T, dir string) adminServer {
	t.Helper()
	adm, err := server.Open(server.Config{DataDir: dir, Database: folderDatabase(t, dir), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tokens := map[string]string{}
	for name, role := range map[string]server.Role{"alice": server.Clients, "node": server.Processors} {
		if err := adm.AddUser(ctx, name, "pw", role); err != nil {
			t.Fatal(err)
		}
		if tokens[name], err = adm.NewToken(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	return adminServer{srv: adm, tokens: tokens}
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	c.h.Kill()
}

// acked records what the server acknowledged before it was killed.
type acked struct {
	mu      sync.Mutex
	blobs   map[string][]byte // reference key → bytes (owned by alice at the end)
	tasks   map[string]bool
	results map[string][]byte // task key → stored result JSON as answered
}

// Crash safety: a burst of concurrent uploads, submissions and results
// against a server in another process, kill -9 in the middle, restart on
// the same folder; everything acknowledged is intact, no blob file under a
// final name is partial, and unfinished uploads are cleaned up.
func TestCrashSafety(t *testing.T) {
	dir, tokens := crashFolder(t)

	ch := startChild(t, dir)
	client := func(name string) *tokenClient {
		return &tokenClient{t: t, base: ch.base, token: tokens[name], hc: &http.Client{Timeout: 30 * time.Second}}
	}
	ack := &acked{blobs: map[string][]byte{}, tasks: map[string]bool{}, results: map[string][]byte{}}
	burst := 1500 * time.Millisecond
	if testing.Short() {
		burst = 500 * time.Millisecond
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// try does one request, quietly failing once the server is gone.
	try := func(c *tokenClient, method, path string, body []byte) (answer, bool) {
		var rd io.Reader
		if body != nil {
			rd = strings.NewReader(string(body))
		}
		req, _ := http.NewRequest(method, c.base+strings.TrimLeft(path, "/"), rd)
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := c.hc.Do(req)
		if err != nil {
			return answer{}, false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			return answer{}, false
		}
		a := answer{code: 200, body: b}
		if json.Unmarshal(b, &a.json) != nil || a.status() != "OK" {
			return answer{}, false
		}
		return a, true
	}
	running := func() bool {
		select {
		case <-stop:
			return false
		default:
			return true
		}
	}
	upload := func(c *tokenClient, size int) (string, []byte, bool) {
		data := make([]byte, size)
		rand.Read(data)
		a, ok := try(c, "POST", "/blob/reference/", data)
		if !ok {
			return "", nil, false
		}
		return a.json["reference"].(map[string]any)["key"].(string), data, true
	}
	// Uploaders.
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client("alice")
			for n := 0; running(); n++ {
				ref, data, ok := upload(c, 1+(n*7919+i*104729)%(256<<10))
				if ok {
					ack.mu.Lock()
					ack.blobs[ref] = data
					ack.mu.Unlock()
				}
			}
		}()
	}
	// Submitters.
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client("alice")
			for running() {
				ref, data, ok := upload(c, 100)
				if !ok {
					continue
				}
				body, _ := json.Marshal(task(map[string]any{"files": map[string]any{"in": map[string]any{"reference": ref}}}))
				if a, ok := try(c, "POST", "/task/task/", body); ok {
					ack.mu.Lock()
					ack.blobs[ref] = data
					ack.tasks[a.json["task"].(map[string]any)["id"].(string)] = true
					ack.mu.Unlock()
				}
			}
		}()
	}
	// Nodes: dequeue, post results with a file.
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client("node")
			for running() {
				a, ok := try(c, "POST", "/queue/dequeue/", []byte(`{"concurency": 2}`))
				if !ok {
					continue
				}
				for _, x := range a.json["tasks"].([]any) {
					key := x.(map[string]any)["id"].(string)
					ref, data, ok := upload(c, 2000)
					if !ok {
						continue
					}
					body, _ := json.Marshal(map[string]any{"id": key, "result": 0, "status": "OK",
						"files": map[string]any{"out": map[string]any{"reference": ref}}})
					if r, ok := try(c, "POST", "/task/result/", body); ok {
						ack.mu.Lock()
						ack.blobs[ref] = data // now alice's
						ack.results[key] = r.body
						ack.mu.Unlock()
					}
				}
			}
		}()
	}
	// A slow upload, certainly in flight at the kill.
	slowStarted := make(chan struct{})
	go func() {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", ch.base+"blob/reference/", pr)
		req.Header.Set("Authorization", "Bearer "+tokens["alice"])
		go func() {
			for range 1000 {
				if _, err := pw.Write(make([]byte, 1024)); err != nil {
					return
				}
				time.Sleep(10 * time.Millisecond) // a trickle: 10 s for the whole body, far past the kill
			}
			pw.Close()
		}()
		close(slowStarted)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-slowStarted
	time.Sleep(burst) // the load under test: the burst runs this long, then the kill comes in its middle
	tmpDir := filepath.Join(dir, server.BlobsDir, "tmp")
	if entries, _ := os.ReadDir(tmpDir); len(entries) == 0 {
		t.Errorf("no upload in flight at the kill (the test would prove nothing about temp files)")
	}
	ch.kill(t)
	close(stop)
	wg.Wait()
	t.Logf("acknowledged before kill -9: %d blobs, %d tasks, %d results", len(ack.blobs), len(ack.tasks), len(ack.results))
	if len(ack.tasks) == 0 || len(ack.results) == 0 {
		t.Fatalf("the burst acknowledged too little to test")
	}

	// Restart on the same folder.
	ch = startChild(t, dir)
	alice := client("alice")
	for ref, data := range ack.blobs {
		a := alice.do("GET", "/blob/reference/"+ref+"/", nil)
		if a.code != 200 || string(a.body) != string(data) {
			t.Errorf("blob %s lost or damaged after the crash: %d, %d bytes (want %d)", ref, a.code, len(a.body), len(data))
		}
	}
	for key := range ack.tasks {
		if a := alice.do("GET", "/task/task/"+key+"/", nil); a.code != 200 || a.status() != "OK" {
			t.Errorf("task %s lost after the crash: %v", key, a)
		}
	}
	for key, body := range ack.results {
		a := alice.do("GET", "/task/result/"+key+"/", nil)
		if a.code != 200 || string(a.body) != string(body) {
			t.Errorf("result of %s lost or changed after the crash: %v", key, a)
		}
	}
	// No partial blob under a final name; unfinished uploads removed.
	files := 0
	filepath.WalkDir(filepath.Join(dir, server.BlobsDir), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Dir(p) == tmpDir {
			return err
		}
		files++
		data, err := os.ReadFile(p)
		if err != nil {
			t.Error(err)
			return nil
		}
		if sha(data) != filepath.Base(p) {
			t.Errorf("blob file %s does not hold its hash's content (%d bytes)", p, len(data))
		}
		return nil
	})
	if entries, _ := os.ReadDir(tmpDir); len(entries) != 0 {
		t.Errorf("temp leftovers after restart: %d", len(entries))
	}
	db := folderDB(t, dir, "mode=ro")
	defer db.Close()
	check := "ok" // PostgreSQL's own recovery: no file to check
	var rows int
	if childDatabase(dir) == "" {
		db.QueryRow("PRAGMA integrity_check").Scan(&check)
	}
	db.QueryRow("SELECT COUNT(*) FROM blobs").Scan(&rows)
	if check != "ok" {
		t.Errorf("integrity_check: %s", check)
	}
	if rows != files {
		t.Errorf("%d blob rows but %d blob files (orphans must be removed at start-up)", rows, files)
	}
	t.Logf("after restart: %d blob files, all verified; integrity %s", files, check)
	ch.kill(t)
}
