package hardening_test

// Bad input to the worker (task folders) and to kolejka-client. What this
// proves, case by case: the input is refused with an error that names the
// file, the field and the problem, and nothing changed — the task folder
// is the same byte for byte (mode and time too), no result folder appeared
// (or the one in the way is untouched), the worker left no scratch, mount,
// cgroup or run record, and the server a client talked to holds the same
// rows and blob files as before.

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/tests/hardening"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// badTask is a task folder the worker must refuse.
type badTask struct {
	id, name string
	task     string   // kolejka_task.json ("" for none)
	files    []string // name, content pairs beside it
	setup    func(t *testing.T, dir string)
	want     []string // fragments the error must contain
}

func TestBadInputTaskFolders(t *testing.T) {
	t.Parallel()
	e := workertest.NewEnv(t, runcRuntime(t, filepath.Join(t.TempDir(), "runc")))
	img := `"image": "kolejka-test:latest"`
	cases := []badTask{
		{id: "BW01", name: "malformed JSON (cut short)", task: `{` + img + `, "args": ["true"`,
			want: []string{"kolejka_task.json", "malformed JSON", "unexpected end"}},
		{id: "BW02", name: "not a JSON object", task: `["true"]`,
			want: []string{"kolejka_task.json", "JSON object"}},
		{id: "BW03", name: "wrong type: args is a string", task: `{` + img + `, "args": "true"}`,
			want: []string{"kolejka_task.json", "args"}},
		{id: "BW04", name: "wrong type: limits.pids is a word", task: `{` + img + `, "args": ["true"], "limits": {"pids": "many"}}`,
			want: []string{"kolejka_task.json", "limits.pids", `"many"`}},
		{id: "BW05", name: "unknown key (typo of image)", task: `{"imagee": "kolejka-test:latest", "image": "kolejka-test:latest", "args": ["true"]}`,
			want: []string{"kolejka_task.json", "imagee", "unknown"}},
		{id: "BW06", name: "unknown limit (memmory)", task: `{` + img + `, "args": ["true"], "limits": {"memmory": "1G"}}`,
			want: []string{"kolejka_task.json", "limits.memmory", "unknown"}},
		{id: "BW07", name: "bad size unit (64MiB)", task: `{` + img + `, "args": ["true"], "limits": {"memory": "64MiB"}}`,
			want: []string{"kolejka_task.json", "limits.memory", `"64MiB" is not a size`}},
		{id: "BW08", name: "bad time unit (1h: hours are H)", task: `{` + img + `, "args": ["true"], "limits": {"time": "1h"}}`,
			want: []string{"kolejka_task.json", "limits.time", `"1h" is not a time`}},
		{id: "BW09", name: `bad boolean ("maybe")`, task: `{` + img + `, "args": ["true"], "limits": {"network": "maybe"}}`,
			want: []string{"kolejka_task.json", "limits.network", `"maybe"`}},
		{id: "BW10", name: "path traversal in a file name", task: `{` + img + `, "args": ["true"], "files": {"../escaped": "in"}}`, files: []string{"in", "x"},
			want: []string{"kolejka_task.json", `files["../escaped"]`}},
		{id: "BW11", name: "absolute path of a file", task: `{` + img + `, "args": ["true"], "files": {"in": "/etc/passwd"}}`,
			want: []string{"kolejka_task.json", `files["in"].path`, "/etc/passwd"}},
		{id: "BW12", name: "input file a symlink leaving the folder", task: `{` + img + `, "args": ["true"], "files": {"in": "link"}}`,
			setup: func(t *testing.T, dir string) { os.Symlink("/etc/shadow", filepath.Join(dir, "link")) },
			want:  []string{"kolejka_task.json", `files["in"].path`, "leads outside the folder"}},
		{id: "BW13", name: "input file missing", task: `{` + img + `, "args": ["true"], "files": {"in": "nowhere"}}`,
			want: []string{"kolejka_task.json", `files["in"]`, "nowhere"}},
		{id: "BW14", name: "stdin not a file of the task", task: `{` + img + `, "args": ["true"], "stdin": "in"}`,
			want: []string{"kolejka_task.json", "stdin"}},
		{id: "BW15", name: "stdout leaving the result folder", task: `{` + img + `, "args": ["true"], "stdout": "../out"}`,
			want: []string{"kolejka_task.json", "stdout"}},
		{id: "BW16", name: "collect glob leaving the folder", task: `{` + img + `, "args": ["true"], "collect": [{"glob": "../../etc/*"}]}`,
			want: []string{"kolejka_task.json", "collect"}},
		{id: "BW17", name: "a file named kolejka_task.json", task: `{` + img + `, "args": ["true"], "files": {"kolejka_task.json": "in"}}`, files: []string{"in", "{}"},
			want: []string{"kolejka_task.json", "clashes with kolejka_task.json"}},
		{id: "BW18", name: "environment value an object", task: `{` + img + `, "args": ["true"], "environment": {"A": {"b": 1}}}`,
			want: []string{"kolejka_task.json", "environment"}},
		{id: "BW19", name: "no image", task: `{"args": ["true"]}`,
			want: []string{"kolejka_task.json", "image: missing"}},
		{id: "BW20", name: "no kolejka_task.json at all", task: "", files: []string{"notes.txt", "hello"},
			want: []string{"kolejka_task.json"}},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			r := caseOf(t, hardening.BadInput, c.id, "task folder: "+c.name,
				"the worker refuses it, naming kolejka_task.json and the field; the folder is unchanged, no result folder, nothing left")
			dir := t.TempDir()
			if c.task != "" {
				os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(c.task), 0o644)
			}
			for i := 0; i+1 < len(c.files); i += 2 {
				os.WriteFile(filepath.Join(dir, c.files[i]), []byte(c.files[i+1]), 0o644)
			}
			if c.setup != nil {
				c.setup(t, dir)
			}
			before := treeDigest(t, dir)
			resultDir, res, err := e.Run(t, dir, worker.Options{})
			if res != nil || err == nil {
				t.Fatalf("accepted: result %+v, error %v", res, err)
			}
			r.Observe("error %s", short(err.Error(), 300))
			checkFragments(t, err.Error(), c.want)
			after := treeDigest(t, dir)
			if after != before {
				t.Errorf("the task folder changed: digest %s → %s", before, after)
			}
			if _, serr := os.Stat(resultDir); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("a result folder appeared: %v", serr)
			}
			e.AssertClean(t)
			r.Observe("task folder digest %s unchanged, no result folder, no scratch/mount/cgroup left", before)
		})
	}

	t.Run("BW21", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BW21", "result folder in the way (not empty)",
			"the worker refuses it, naming the folder; the files in it and the task folder are untouched, nothing ran")
		dir := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "echo ran > /var/lib/kolejka/task/ran"], "stdout": "out"}`)
		resultDir := filepath.Join(t.TempDir(), "result")
		os.Mkdir(resultDir, 0o755)
		os.WriteFile(filepath.Join(resultDir, "precious"), []byte("keep me"), 0o600)
		beforeTask, beforeResult := treeDigest(t, dir), treeDigest(t, resultDir)
		res, err := e.W.Execute(context.Background(), dir, resultDir, worker.Options{})
		if res != nil || err == nil {
			t.Fatalf("accepted: %+v %v", res, err)
		}
		r.Observe("error %s", short(err.Error(), 300))
		checkFragments(t, err.Error(), []string{resultDir})
		if got := treeDigest(t, resultDir); got != beforeResult {
			t.Errorf("the result folder changed: %s → %s (%v)", beforeResult, got, entries(resultDir))
		}
		if got := treeDigest(t, dir); got != beforeTask {
			t.Errorf("the task folder changed")
		}
		e.AssertClean(t)
		r.Observe("result folder digest %s and task folder digest %s unchanged", beforeResult, beforeTask)
	})

	t.Run("BW22", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BW22", "symlink escapes in collect: a link to /etc/passwd and a link to /etc matched by the globs",
			"the task runs (OK); neither link is followed: nothing from outside the task folder is in the result, links inside it are")
		dir := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c",
			"mkdir out && echo mine > out/mine.txt && ln -s /etc/passwd out/passwd.txt && ln -s /etc out/etc && ln -s mine.txt out/inside.txt"],
			"collect": [{"glob": "out/**"}, {"glob": "out/etc/*"}], "limits": {"time": "10s"}}`)
		resultDir, res, err := e.Run(t, dir, worker.Options{})
		if err != nil || res == nil || res.Status != spec.StatusOK {
			t.Fatalf("%+v %v", res, err)
		}
		var got []string
		filepath.WalkDir(resultDir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(resultDir, p)
				got = append(got, rel)
			}
			return nil
		})
		r.Observe("verdict %s; result files %v", res.Status, got)
		for _, f := range got {
			if strings.Contains(f, "passwd") || strings.HasPrefix(f, "out/etc") {
				t.Errorf("collected through a link leaving the folder: %s", f)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(resultDir, "out", "inside.txt")); string(b) != "mine\n" {
			t.Errorf("a link inside the folder was not collected: %q", b)
		}
		if b, _ := os.ReadFile(filepath.Join(resultDir, "out", "mine.txt")); string(b) != "mine\n" {
			t.Errorf("out/mine.txt not collected: %q", b)
		}
		e.AssertClean(t)
		r.Observe("nothing from outside collected; nothing left behind")
	})

	t.Run("BW27", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BW27", "an image that is no image name (Bad::Name, a digest not in hex, an empty tag, a path of 256 characters, a leading separator)",
			"SE (image unavailable) naming the image and what is wrong with the name; the task folder is unchanged; nothing left")
		for _, name := range []string{"Bad::Name", "busybox@sha256:zz", "busybox:", strings.Repeat("a", 256), "-busybox"} {
			dir := gridtest.WriteTask(t, `{"image": "`+name+`", "args": ["true"]}`)
			before := treeDigest(t, dir)
			_, res, err := e.Run(t, dir, worker.Options{})
			if res == nil || res.Status != spec.StatusSE || !errors.Is(err, worker.ErrImage) {
				t.Fatalf("%s: result %+v, error %v: want SE with ErrImage", short(name, 40), res, err)
			}
			checkFragments(t, err.Error(), []string{"invalid image name", name[:min(len(name), 40)]})
			r.Observe("%s: SE, %s", short(name, 40), short(err.Error(), 200))
			if after := treeDigest(t, dir); after != before {
				t.Errorf("%s: the task folder changed: digest %s → %s", short(name, 40), before, after)
			}
		}
		e.AssertClean(t)
		r.Observe("task folders unchanged; nothing left behind")
	})
}

// checkFragments fails t unless msg contains every fragment.
func checkFragments(t testing.TB, msg string, want []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("the error %q does not name %q", msg, w)
		}
	}
}

// TestBadInputClient: kolejka-client, the binary, against a real server
// (httptest, real SQLite): bad task folders, options, credentials and a
// download whose bytes do not match its hash are refused with the exit code
// of their kind, naming the problem, and change nothing on the server or on
// the user's disk.
func TestBadInputClient(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(bins(t), "kolejka-client")
	s := newAPIServer(t, nil)
	conf := filepath.Join(t.TempDir(), "empty.conf")
	os.WriteFile(conf, nil, 0o644)
	base := []string{"--config-file", conf, "--server", s.ts.URL}
	asAlice := append(append([]string{}, base...), "--token", s.tokens["alice"])
	// A blob alice owns, whose file on the server's disk is then damaged.
	ref, content := s.bearer("alice").upload(t, []byte("the bytes alice uploaded\n"))
	// A task of alice's with a result.
	a := s.bearer("alice").mustPost(t, "/task/task/", `{"image": "kolejka-test:latest", "args": ["true"]}`)
	resolved := a.json["task"].(map[string]any)["id"].(string)
	s.bearer("node").mustPost(t, "/queue/dequeue/", `{"concurency": 1}`)
	s.bearer("node").mustPost(t, "/task/result/", fmt.Sprintf(`{"id": %q, "result": 0, "status": "OK"}`, resolved))

	type clientCase struct {
		id, name, expect string
		args             func(t *testing.T) ([]string, string) // argv, a folder that must stay unchanged ("" none)
		code             int
		want             []string
	}
	goodTask := func(t *testing.T, extra string) string {
		return gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["cat", "in"], "files": {"in": "in"}`+extra+`}`, "in", "input\n")
	}
	cases := []clientCase{
		{"BC01", "task put: malformed kolejka_task.json", "exit 2 naming the file; nothing uploaded",
			func(t *testing.T) ([]string, string) {
				dir := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["cat", "in"], "files": {"in": "in"`, "in", "input\n")
				return append(append([]string{}, asAlice...), "task", "put", dir), dir
			}, 2, []string{"kolejka_task.json"}},
		{"BC02", "task put: an input that is a symlink to /etc/shadow", "exit 2 naming the file and the escape; nothing uploaded",
			func(t *testing.T) ([]string, string) {
				dir := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["cat", "in"], "files": {"in": "link"}}`)
				os.Symlink("/etc/shadow", filepath.Join(dir, "link"))
				return append(append([]string{}, asAlice...), "task", "put", dir), dir
			}, 2, []string{"kolejka_task.json", "leads outside the folder"}},
		{"BC03", "task put: bad unit in a limit option (--memory 64MiB)", "exit 2 naming --memory; nothing uploaded",
			func(t *testing.T) ([]string, string) {
				dir := goodTask(t, "")
				return append(append([]string{}, asAlice...), "task", "put", "--memory", "64MiB", dir), dir
			}, 2, []string{"memory", "64MiB"}},
		{"BC04", "wrong password", "exit 5 (login failed); no session made",
			func(t *testing.T) ([]string, string) {
				dir := goodTask(t, "")
				return append(append([]string{}, base...), "--username", "alice", "--password", "guess", "task", "put", dir), dir
			}, 5, []string{"login failed"}},
		{"BC05", "bad bearer token", "exit 5 (not allowed), saying the token is invalid; nothing uploaded",
			func(t *testing.T) ([]string, string) {
				dir := goodTask(t, "")
				return append(append([]string{}, base...), "--token", "kt_"+strings.Repeat("0", 64), "task", "put", dir), dir
			}, 5, []string{"invalid bearer token"}},
		{"BC06", "execute: a task with an unknown limit", "exit 2 naming the field; nothing submitted, nothing written",
			func(t *testing.T) ([]string, string) {
				dir := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["true"], "limits": {"memmory": "1G"}}`)
				return append(append([]string{}, asAlice...), "execute", dir, filepath.Join(t.TempDir(), "result")), dir
			}, 2, []string{"kolejka_task.json", "limits.memmory"}},
		{"BC07", "result get into a folder that is not empty", "exit 2 (bad input, as the README says) naming the folder; its files untouched",
			func(t *testing.T) ([]string, string) {
				dir := t.TempDir()
				os.WriteFile(filepath.Join(dir, "precious"), []byte("keep"), 0o600)
				return append(append([]string{}, asAlice...), "result", "get", resolved, dir), dir
			}, 2, []string{"not empty"}},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			r := caseOf(t, hardening.BadInput, c.id, "kolejka-client: "+c.name, c.expect)
			args, keep := c.args(t)
			var keepDigest string
			if keep != "" {
				keepDigest = treeDigest(t, keep)
			}
			before := s.state(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, errOut, code := gridtest.RunCommand(ctx, bin, args...)
			r.Observe("exit %d: %s", code, short(errOut, 300))
			if code != c.code {
				t.Errorf("exit %d, want %d: %s", code, c.code, errOut)
			}
			checkFragments(t, errOut, c.want)
			if keep != "" {
				if got := treeDigest(t, keep); got != keepDigest {
					t.Errorf("the folder %s changed", keep)
				}
			}
			if after := s.state(t); !after.equal(before) {
				t.Errorf("the server changed (tables %v): %v → %v", before.changed(after), before, after)
			}
			r.Observe("server %s unchanged; the user's folder unchanged", before)
		})
	}

	t.Run("BC08", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BC08", "blob get: the server's bytes no longer match the blob's hash (damaged on its disk)",
			"exit 8 (integrity); nothing at the target path, no partial file beside it; the server unchanged")
		blobFile := filepath.Join(s.data, server.BlobsDir, content[0:2], content[2:4], content)
		if err := os.WriteFile(blobFile, []byte("the bytes someone changed\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		before := s.state(t)
		outDir := t.TempDir()
		target := filepath.Join(outDir, "download")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, errOut, code := gridtest.RunCommand(ctx, bin, append(append([]string{}, asAlice...), "blob", "get", ref, target)...)
		r.Observe("exit %d: %s", code, short(errOut, 300))
		if code != 8 {
			t.Errorf("exit %d, want 8: %s", code, errOut)
		}
		checkFragments(t, errOut, []string{"does not match"})
		if left := entries(outDir); len(left) != 0 {
			t.Errorf("files left in the target folder: %v", left)
		}
		if after := s.state(t); !after.equal(before) {
			t.Errorf("the server changed (tables %v): %v → %v", before.changed(after), before, after)
		}
		r.Observe("target folder empty; server %s unchanged", before)
	})

	t.Run("BC09", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BC09", "a server that is not there (connection refused)",
			"exit 4 (cannot connect), naming the server; the task folder unchanged")
		dir := goodTask(t, "")
		before := treeDigest(t, dir)
		dead := httptest.NewServer(nil)
		url := dead.URL
		dead.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, errOut, code := gridtest.RunCommand(ctx, bin, "--config-file", conf, "--server", url, "--token", s.tokens["alice"], "task", "put", dir)
		r.Observe("exit %d: %s", code, short(errOut, 300))
		if code != 4 {
			t.Errorf("exit %d, want 4: %s", code, errOut)
		}
		checkFragments(t, errOut, []string{strings.TrimPrefix(url, "http://")})
		if treeDigest(t, dir) != before {
			t.Error("the task folder changed")
		}
		r.Observe("task folder digest %s unchanged", before)
	})
}

// BW28: the docker runtime's engine named by an environment its client
// does not serve, or not there at all.
func TestBadInputDockerEnvironment(t *testing.T) {
	testenv.RequireRoot(t)
	r := caseOf(t, hardening.BadInput, "BW28", "`execute --runtime docker` with DOCKER_HOST=ssh://…, DOCKER_HOST=tcp:// (no host), DOCKER_TLS_VERIFY=1, DOCKER_API_VERSION=one, or a socket that does not exist",
		"exit 2 before the task is taken, the error naming the variable (or the socket) and the problem; the task folder unchanged, no result folder")
	bin := bins(t)
	dir := t.TempDir()
	conf := workerConf(t, dir, filepath.Join(dir, "scratch"))
	task := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["true"]}`)
	before := treeDigest(t, task)
	for i, c := range []struct{ env, want string }{
		{"DOCKER_HOST=ssh://judge@example.org", "DOCKER_HOST=ssh://judge@example.org"},
		{"DOCKER_HOST=tcp://", "want tcp://host:port"},
		{"DOCKER_TLS_VERIFY=1", "DOCKER_TLS_VERIFY"},
		{"DOCKER_API_VERSION=one", "DOCKER_API_VERSION=one"},
		{"DOCKER_HOST=unix:///nonexistent/docker.sock", "/nonexistent/docker.sock"},
	} {
		resultDir := filepath.Join(dir, fmt.Sprint("result", i))
		cmd := exec.Command(filepath.Join(bin, "kolejka-worker"), "--config-file", conf, "execute", "--runtime", "docker", task, resultDir)
		cmd.Env = append(gridtest.ChildEnv(), c.env)
		out, err := cmd.CombinedOutput()
		code := cmd.ProcessState.ExitCode()
		r.Observe("%s: exit %d, %s", c.env, code, short(string(out), 200))
		if err == nil || code != 2 {
			t.Errorf("%s: exit %d (%v), want 2", c.env, code, err)
		}
		checkFragments(t, string(out), []string{c.want})
		if _, serr := os.Stat(resultDir); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("%s: a result folder appeared: %v", c.env, serr)
		}
	}
	if after := treeDigest(t, task); after != before {
		t.Errorf("the task folder changed: digest %s → %s", before, after)
	}
	r.Observe("task folder digest %s unchanged; no result folder", before)
}
