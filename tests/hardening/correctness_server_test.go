package hardening_test

// Correctness on the server's side: limits no task can
// run with are refused at submission; bearer tokens that were withdrawn
// (revoked, expired, or by a new password) are refused; a result that
// cannot be stored leaves nothing behind, whether refused for its size or
// cut off by a killed foreman; and a task with 30,000 outputs reaches its
// owner.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kclient "github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/clock"
	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/tests/hardening"
)

// TestCorrectnessServerBadInput: bad input the server accepted before (limits of
// 0) or credentials it kept taking (tokens withdrawn) is refused with the
// reason, and nothing changes.
func TestCorrectnessServerBadInput(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Now()) // ages BS57's token
	s := newAPIServer(t, func(c *server.Config) {
		c.MaxResultBody = 8 << 10
		c.Clock = clk
	})
	alice, node := s.bearer("alice"), s.bearer("node")
	aliceSession := s.sessionOf(t, "alice")
	ctx := context.Background()
	img := `"image": "kolejka-test:latest", "args": ["true"]`
	both := map[string]*apiClient{"bearer": alice, "session": aliceSession}

	// Withdrawing a token changes the server; the refused request that
	// follows must not.
	refusedBearer := func(withdrawn func(t *testing.T) (tok, how string)) func(t *testing.T) (answer, string) {
		return func(t *testing.T) (answer, string) {
			tok, how := withdrawn(t)
			before := s.state(t)
			a := (&apiClient{s: s, token: tok, hc: &http.Client{}}).do(t, "POST", "/task/task/", []byte(`{`+img+`}`))
			if after := s.state(t); !after.equal(before) {
				t.Errorf("the refused request changed the server: %v → %v", before, after)
			}
			return a, how
		}
	}
	// working makes a token of user and checks that it works.
	working := func(t *testing.T, user string) (string, server.Token) {
		tok, row, err := s.srv.NewTokenFor(ctx, user, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if a := (&apiClient{s: s, token: tok, hc: &http.Client{}}).do(t, "GET", "/settings/", nil); a.code != 200 {
			t.Fatalf("the fresh token: %v", a)
		}
		return tok, row
	}
	type row struct {
		id, name, expect string
		ways             map[string]*apiClient // nil: run does it
		body             string
		path             string
		run              func(t *testing.T) (answer, string)
		code             int
		status           string
		want             []string
	}
	rows := []row{
		{id: "BS51", name: "task: cpus 0", expect: "FAIL naming kolejka_task.json and limits.cpus; nothing stored (it used to be accepted and end SE on its node)",
			ways: both, path: "/task/task/", body: `{` + img + `, "limits": {"cpus": 0}}`, code: 200, status: "FAIL", want: []string{"kolejka_task.json", "limits.cpus", "0 cores"}},
		{id: "BS52", name: "task: memory 0", expect: "FAIL naming kolejka_task.json and limits.memory; nothing stored",
			ways: both, path: "/task/task/", body: `{` + img + `, "limits": {"memory": "0b"}}`, code: 200, status: "FAIL", want: []string{"kolejka_task.json", "limits.memory", "0 bytes"}},
		{id: "BS53", name: "task: time 0", expect: "FAIL naming kolejka_task.json and limits.time; nothing stored",
			ways: both, path: "/task/task/", body: `{` + img + `, "limits": {"time": "0s"}}`, code: 200, status: "FAIL", want: []string{"kolejka_task.json", "limits.time", "0 seconds"}},
		{id: "BS54", name: "dequeue: defaults with memory 0", expect: "FAIL naming defaults.memory; nothing handed out",
			ways: map[string]*apiClient{"bearer": node}, path: "/queue/dequeue/", body: `{"concurency": 1, "defaults": {"memory": 0}}`, code: 200, status: "FAIL", want: []string{"dequeue", "defaults.memory"}},
		{id: "BS55", name: "bearer token of a user whose password was changed (kolejka-server passwd)",
			expect: "403 invalid bearer token: passwd revokes the user's tokens; nothing stored",
			run: refusedBearer(func(t *testing.T) (string, string) {
				tok, _ := working(t, "bob")
				sessions, tokens, err := s.srv.SetPassword(ctx, "bob", "bob-new-password")
				if err != nil || tokens < 1 {
					t.Fatalf("passwd: %d tokens revoked, %v", tokens, err)
				}
				return tok, fmt.Sprintf("a working token; passwd ended %d sessions and revoked %d tokens", sessions, tokens)
			}), code: 403, want: []string{"invalid bearer token"}},
		{id: "BS56", name: "revoked bearer token (kolejka-server token revoke NAME ID)",
			expect: "403 invalid bearer token; nothing stored",
			run: refusedBearer(func(t *testing.T) (string, string) {
				tok, row := working(t, "node2")
				n, err := s.srv.RevokeTokens(ctx, "node2", row.ID)
				if err != nil || n != 1 {
					t.Fatalf("revoke %s: %d %v", row.ID, n, err)
				}
				return tok, fmt.Sprintf("a working token %s (%s…), revoked", row.ID, row.Prefix)
			}), code: 403, want: []string{"invalid bearer token"}},
		{id: "BS57", name: "expired bearer token (made to last 50 ms, used 100 ms later)",
			expect: "403 saying the token expired and how to make another; nothing stored",
			run: refusedBearer(func(t *testing.T) (string, string) {
				tok, row, err := s.srv.NewTokenFor(ctx, "alice", 50*time.Millisecond)
				if err != nil {
					t.Fatal(err)
				}
				clk.Advance(100 * time.Millisecond)
				return tok, fmt.Sprintf("token %s expired %s", row.ID, row.TimeExpire.Format(time.RFC3339Nano))
			}), code: 403, want: []string{"expired bearer token", "kolejka-server token"}},
	}
	for _, c := range rows {
		t.Run(c.id, func(t *testing.T) {
			r := caseOf(t, hardening.BadInput, c.id, "server: "+c.name, c.expect)
			check := func(label string, a answer) {
				r.Observe("%s%v", label, a)
				if a.code != c.code || (c.status != "" && a.status() != c.status) {
					t.Errorf("%sgot %v, want %d %s", label, a, c.code, c.status)
				}
				checkFragments(t, a.text(), c.want)
			}
			if c.run != nil {
				a, how := c.run(t)
				r.Observe("%s", how)
				check("", a)
				r.Observe("server unchanged by the refused request")
				return
			}
			for way, cl := range c.ways {
				before := s.state(t)
				check(way+": ", cl.do(t, "POST", c.path, []byte(c.body)))
				if after := s.state(t); !after.equal(before) {
					t.Errorf("%s: the server changed: %v → %v", way, before, after)
				}
			}
			r.Observe("server %s unchanged", s.state(t))
		})
	}

	t.Run("BS58", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BS58", "server: result over max_result_body (8 KiB here; 16 MiB by default)",
			"413 naming the cap; no result stored; the node's uploads for it are swept later (F12)")
		a := alice.mustPost(t, "/task/task/", `{`+img+`, "requires": ["bs58"]}`)
		key := a.json["task"].(map[string]any)["id"].(string)
		node.mustPost(t, "/queue/dequeue/", `{"concurency": 1, "tags": ["bs58"]}`)
		ref, _ := node.upload(t, []byte("output\n"))
		files := []string{}
		for i := range 200 {
			files = append(files, fmt.Sprintf(`"out/%03d": {"reference": %q}`, i, ref))
		}
		before := s.state(t)
		got := node.do(t, "POST", "/task/result/", []byte(fmt.Sprintf(`{"id": %q, "result": 0, "status": "OK", "files": {%s}}`, key, strings.Join(files, ", "))))
		r.Observe("%v", got)
		if got.code != 413 {
			t.Errorf("got %v, want 413", got)
		}
		checkFragments(t, got.text(), []string{"larger than 8192 bytes"})
		if after := s.state(t); !after.equal(before) {
			t.Errorf("the server changed (tables %v): %v → %v", before.changed(after), before, after)
		}
		r.Observe("server %s unchanged", s.state(t))
	})
}

// TestCorrectnessServerClient: kolejka-client, the binary, shows the
// server's refusal of a task with a limit of 0 (exit 7, the message naming
// the field), and the files it uploaded for the task go again.
func TestCorrectnessServerClient(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(bins(t), "kolejka-client")
	s := newAPIServer(t, nil)
	conf := filepath.Join(t.TempDir(), "empty.conf")
	os.WriteFile(conf, nil, 0o644)
	args := []string{"--config-file", conf, "--server", s.ts.URL, "--token", s.tokens["alice"]}
	for _, c := range []struct {
		id, name, taskJSON string
		files              []string
		want               []string
	}{
		{"BS59", "kolejka-client task put: a task with memory 0", `{"image": "kolejka-test:latest", "args": ["true"], "limits": {"memory": "0"}}`,
			nil, []string{"kolejka_task.json", "limits.memory", "0 bytes"}},
		{"BS60", "kolejka-client task put: a task with time 0 and two input files", `{"image": "kolejka-test:latest", "args": ["cat", "a", "b"], "files": {"a": "a", "b": "b"}, "limits": {"time": "0s"}}`,
			[]string{"a", "input a " + randomHex(8), "b", "input b " + randomHex(8)}, []string{"kolejka_task.json", "limits.time"}},
	} {
		t.Run(c.id, func(t *testing.T) {
			r := caseOf(t, hardening.BadInput, c.id, c.name,
				"exit 7 printing the server's message, which names the file and the field; nothing stored: the references uploaded for the task are deleted again")
			dir := gridtest.WriteTask(t, c.taskJSON, c.files...)
			before := s.state(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, errOut, code := gridtest.RunCommand(ctx, bin, append(append([]string{}, args...), "task", "put", dir)...)
			r.Observe("exit %d: %s", code, short(errOut, 300))
			if code != 7 {
				t.Errorf("exit %d, want 7: %s", code, errOut)
			}
			checkFragments(t, errOut, c.want)
			// Deleted references' blobs go in the background.
			gridtest.WaitFor(t, "the uploads of the refused task to go", 10*time.Second, func() bool { return s.state(t).equal(before) })
			r.Observe("server %s as before", s.state(t))
		})
	}
}

// exitOf is a result's exit code as text ("none" for an SE without one).
func exitOf(res *spec.Result) string {
	if res.Result == nil {
		return "none"
	}
	return fmt.Sprint(*res.Result)
}

// nodeRefs counts the references owned by user in a server's data folder.
func nodeRefs(t testing.TB, data, user string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(data, server.DatabaseFile)+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM refs r JOIN users u ON u.id = r.user_id WHERE u.name = ?`, user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// manyFilesTask writes n files o/<i> (the same bytes when same, else each
// its number) and collects them.
func manyFilesTask(t testing.TB, n int, same bool, extra string) string {
	content := `x`
	if !same {
		content = `$i`
	}
	return gridtest.WriteTask(t, fmt.Sprintf(`{"image": %q, "args": ["sh", "-c", "mkdir o; i=0; while [ $i -lt %d ]; do echo %s > o/$i; i=$((i+1)); done; echo wrote %d"],
		"collect": [{"glob": "o/*"}], "stdout": "out", "limits": {"time": "120s", "memory": "1G", "workspace": "512M"}%s}`, gridtest.TestImage, n, content, n, extra))
}

// TestCorrectnessServerManyOutputs: a task with 30,000 output files on a
// grid of real processes reaches its owner whole: no 413 for the result, no
// SE for the task, no references left behind.
func TestCorrectnessServerManyOutputs(t *testing.T) {
	r := caseOf(t, hardening.Fault, "F10", "a task with 30,000 output files (a 2.8 MB result: over the 1 MiB results used to share with tasks), run by a real foreman",
		"the result reaches its owner: OK, all 30,000 files listed and readable; every reference of the node passed to the owner")
	g := newGrid(t, "", "")
	g.startForeman("a")
	key := g.Put(manyFilesTask(t, 30000, true, ""))
	ctx := context.Background()
	// The result's JSON only: downloading 30,000 files proves nothing more.
	var res *spec.Result
	var err error
	for deadline := time.Now().Add(10 * time.Minute); ; {
		res, err = g.Alice.Result(ctx, key, time.Minute)
		if err == nil || !errors.Is(err, kclient.ErrNotFound) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("no result: %v", err)
	}
	r.Observe("result %s, exit %s, %d files", res.Status, exitOf(res), len(res.Files))
	if res.Status != spec.StatusOK || len(res.Files) != 30001 {
		t.Fatalf("result %s with %d files, want OK with 30,000 outputs and stdout", res.Status, len(res.Files))
	}
	for _, name := range []string{"o/0", "o/29999", "out"} {
		p := filepath.Join(t.TempDir(), "f")
		if err := g.Alice.BlobGet(ctx, res.Files[name].Reference, p); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := nodeRefs(t, g.Data, "a"); n != 0 {
		t.Errorf("the node still owns %d references", n)
	}
	r.Observe("o/0, o/29999 and stdout downloaded; the node owns %d references", nodeRefs(t, g.Data, "a"))
}

// TestCorrectnessServerResultTooLarge: a result over the server's cap
// reaches its owner as OLE with its stdout; nothing of it is left behind.
func TestCorrectnessServerResultTooLarge(t *testing.T) {
	r := caseOf(t, hardening.Fault, "F11", "a result over the server's max_result_body (64 KiB here: 3,000 output files), run by a real foreman",
		"the owner gets OLE (an output limit) with exit 0 and stdout, instead of an SE; the node uploaded nothing it did not keep: no reference of the node, no blob but stdout's")
	g := newGrid(t, "", "", "--max-result-body", "64K")
	g.startForeman("a")
	key := g.Put(manyFilesTask(t, 3000, true, ""))
	dir, res, err := g.waitResult(key, 3*time.Minute)
	if err != nil {
		t.Fatalf("no result: %v", err)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "out"))
	r.Observe("result %s, exit %s, files %d, stdout %q", res.Status, exitOf(res), len(res.Files), strings.TrimSpace(string(out)))
	if res.Status != spec.StatusOLE || exitOf(res) != "0" || len(res.Files) != 1 || string(out) != "wrote 3000\n" {
		t.Errorf("result %s, exit %s, %d files, stdout %q; want OLE, exit 0, stdout only", res.Status, exitOf(res), len(res.Files), out)
	}
	if n := nodeRefs(t, g.Data, "a"); n != 0 {
		t.Errorf("the node left %d references", n)
	}
	blobs := checkBlobStore(t, g.Data)
	if blobs != 1 {
		t.Errorf("%d blobs on the server, want 1 (stdout)", blobs)
	}
	r.Observe("the node owns %d references; %d blob on the server", nodeRefs(t, g.Data, "a"), blobs)
	if a := gridtest.LogLines(g.Nodes["a"].Log, "over the server's size cap"); len(a) == 0 {
		t.Errorf("the foreman's log does not say why")
	} else {
		r.Observe("foreman: %s", short(a[0], 300))
	}
}

// TestCorrectnessServerForemanKilledMidPost: kill -9 of a foreman while it
// uploads a result's files, before it posts the result.
func TestCorrectnessServerForemanKilledMidPost(t *testing.T) {
	r := caseOf(t, hardening.Fault, "F12", "kill -9 of kolejka-foreman while it uploads a result's 1,000 files, before the result is posted",
		"the server sweeps the node's references no result took once older than upload_grace (10 s here; 1 day by default), and their blobs: nothing left; the task comes back and a restarted foreman delivers it")
	g := newGrid(t, "", "", "--upload-grace", "10s", "--gc-interval", "1s", "--lease", "3s")
	a := g.startForeman("a")
	blobsBefore := checkBlobStore(t, g.Data)
	key := g.Put(manyFilesTask(t, 1000, false, ""))
	gridtest.WaitFor(t, "the node to be uploading the result's files", 2*time.Minute, func() bool { return nodeRefs(t, g.Data, "a") >= 20 })
	a.P.Kill9()
	atKill := nodeRefs(t, g.Data, "a")
	killedAt := time.Now()
	r.Observe("killed with %d of the node's references on the server, %d results", atKill, resultsOf(t, g.Data))
	if resultsOf(t, g.Data) != 0 {
		t.Fatal("the result was posted before the kill: the case did not happen")
	}
	gridtest.WaitFor(t, "the node's references to be swept", 30*time.Second, func() bool { return nodeRefs(t, g.Data, "a") == 0 })
	took := time.Since(killedAt)
	gridtest.WaitFor(t, "their blobs to be collected", 10*time.Second, func() bool { return len(stateOf(t, g.Data).blobs) == blobsBefore })
	files := checkBlobStore(t, g.Data)
	r.Observe("swept %v after the kill: the node owns 0 references; %d blob files (as before the task), rows and files agree", took.Round(100*time.Millisecond), files)
	if took < 9*time.Second {
		t.Errorf("swept %v after the kill: before upload_grace", took)
	}
	g.startForeman("a")
	dir, res, err := g.waitResult(key, 3*time.Minute)
	if err != nil {
		t.Fatalf("the task after the restart: %v", err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "o", "999"))
	r.Observe("after a restart of the foreman: %s with %d files, o/999 = %q", res.Status, len(res.Files), strings.TrimSpace(string(got)))
	if res.Status != spec.StatusOK || len(res.Files) != 1001 || string(got) != "999\n" {
		t.Errorf("result %s with %d files, o/999 %q", res.Status, len(res.Files), got)
	}
}
