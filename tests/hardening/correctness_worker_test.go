package hardening_test

// Correctness of the worker: what leaves a task is bounded by
// what it could write (a sparse file, a file linked many times), --consume
// never loses the user's files (a mistyped image, a worker killed mid-run),
// one output the result cannot name costs only itself, an argument list
// too long for exec is the task's failure (RE), and a killed worker's
// unfinished result folder is swept by the next. Each row runs the real
// runtimes (runc and Docker) or the real kolejka-worker binary.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/tests/hardening"
	"github.com/kolejka-go/kolejka/worker"
)

// cwNodes is one node per runtime: runc, and Docker where an engine runs.
// Without one the Docker node is empty and its subtests skip (fail under
// KOLEJKA_REQUIRE_PRIVILEGED=1): see cwNeed.
func cwNodes(t *testing.T) []*hostNode {
	t.Helper()
	out := []*hostNode{runcNode(t)}
	if exec.Command("docker", "info").Run() != nil {
		return append(out, &hostNode{name: "docker"})
	}
	return append(out, dockerNode(t))
}

// cwNeed skips (or fails) a subtest of a node that could not be made.
func cwNeed(t *testing.T, n *hostNode) {
	t.Helper()
	if n.e == nil {
		testenv.RequireDocker(t)
	}
}

// diskUsage is the space a folder tree takes on disk, in bytes.
func diskUsage(dir string) int64 {
	var total int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			}
		}
		return nil
	})
	return total
}

// workerConf writes a kolejka.conf for the kolejka-worker binary with its
// scratch in temp.
func workerConf(t *testing.T, dir, temp string) string {
	t.Helper()
	conf := filepath.Join(dir, "kolejka.conf")
	if err := os.MkdirAll(temp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("[worker]\nimages = "+gridtest.Images(t)+"\ntemp = "+temp+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

// H16, H17: outputs bounded by the workspace.
func TestCorrectnessWorkerSparseOutputs(t *testing.T) {
	testenv.RequireRoot(t)
	ns := cwNodes(t)
	limits := `"limits": {"workspace": "16M", "memory": "256M", "time": "20s"}`
	cases := []struct {
		id, name, expect, task string
		check                  func(t *testing.T, r *hardening.Row, rt, resultDir string, res *spec.Result)
	}{
		{"H16", "a sparse 1 GiB file in its result folder under workspace 16M (`truncate -s 1G`), beside a small output",
			"OLE; the 1 GiB file is not collected and \"omitted\" says why (its size, the bound); the small output delivered; the result folder takes < 1 MiB of disk",
			`{"image": "kolejka-test:latest", "args": ["sh", "-c", "truncate -s 1G /var/lib/kolejka/result/big && echo kept > /var/lib/kolejka/result/small && ls -ls /var/lib/kolejka/result/big"], "stdout": "out", ` + limits + `}`,
			func(t *testing.T, r *hardening.Row, rt, resultDir string, res *spec.Result) {
				du := diskUsage(resultDir)
				small, _ := os.ReadFile(filepath.Join(resultDir, "small"))
				r.Observe("%s: %s; omitted[big] %s; small %q; result folder %d bytes on disk", rt, verdict(res), short(res.Omitted["big"], 200), small, du)
				if res.Status != spec.StatusOLE {
					t.Errorf("status %s, want OLE", res.Status)
				}
				if _, listed := res.Files["big"]; listed || fileExists(filepath.Join(resultDir, "big")) {
					t.Error("the sparse file was collected")
				}
				if !strings.Contains(res.Omitted["big"], "1073741824 bytes") || !strings.Contains(res.Omitted["big"], "16777216 bytes") {
					t.Errorf("omitted[big] = %q: want its size and the workspace limit", res.Omitted["big"])
				}
				if string(small) != "kept\n" {
					t.Errorf("small is %q", small)
				}
				if du > 1<<20 {
					t.Errorf("the result folder takes %d bytes of disk", du)
				}
			}},
		{"H17", "one 6 MiB file hard-linked 7 times more into its result folder under workspace 16M (48 MiB to copy from 6 MiB written)",
			"OLE; files are collected in name order while they total ≤ 16 MiB (two), the others are left out and named in \"omitted\"",
			`{"image": "kolejka-test:latest", "args": ["sh", "-c", "cd /var/lib/kolejka/result && dd if=/dev/zero of=f0 bs=1M count=6 2>/dev/null && for i in 1 2 3 4 5 6 7; do ln f0 f$i; done"], ` + limits + `}`,
			func(t *testing.T, r *hardening.Row, rt, resultDir string, res *spec.Result) {
				var total int64
				for name := range res.Files {
					if fi, err := os.Stat(filepath.Join(resultDir, name)); err == nil {
						total += fi.Size()
					}
				}
				r.Observe("%s: %s; %d files collected (%d bytes), %d omitted", rt, verdict(res), len(res.Files), total, len(res.Omitted))
				if res.Status != spec.StatusOLE || len(res.Files) != 2 || len(res.Omitted) != 6 || total > 16<<20 {
					t.Errorf("status %s, %d files (%d bytes), omitted %v: want OLE, f0 and f1 collected, 6 left out", res.Status, len(res.Files), total, res.Omitted)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			r := caseOf(t, hardening.Hostile, c.id, c.name+" (runc, docker)", c.expect+"; the node healthy after it")
			for _, n := range ns {
				t.Run(n.name, func(t *testing.T) {
					cwNeed(t, n)
					mark := c.id + "-" + n.name + "-" + randomHex(6)
					resultDir, res, _, err := n.run(t, markedCopy(t, gridtest.WriteTask(t, c.task), mark), mark)
					if res == nil || err != nil {
						t.Fatalf("result %+v, error %v", res, err)
					}
					if back, err := spec.LoadResult(resultDir); err != nil || len(back.Omitted) != len(res.Omitted) {
						t.Errorf("the result on disk: %v (omitted %v)", err, back)
					}
					c.check(t, r, n.name, resultDir, res)
					r.Observe("%s", n.healthy(t, mark))
				})
			}
		})
	}
}

// BW23: --consume with a mistyped image.
func TestCorrectnessWorkerConsumeFailure(t *testing.T) {
	testenv.RequireRoot(t)
	r := caseOf(t, hardening.BadInput, "BW23", "--consume with a mistyped image (kolejka-tset:latest), the task with input files in a subfolder (runc, docker)",
		"SE naming the image; the task folder is as it was, byte for byte, and runs again with the image corrected (OK, then consumed)")
	for _, n := range cwNodes(t) {
		t.Run(n.name, func(t *testing.T) {
			cwNeed(t, n)
			dir := gridtest.WriteTask(t, `{"image": "kolejka-tset:latest", "args": ["sh", "-c", "cat in.txt sub/data | wc -c"], "files": {"in.txt": null, "sub/data": "data.bin"}, "stdout": "out", "limits": {"time": "10s"}}`,
				"in.txt", "precious\n", "data.bin", strings.Repeat("d", 1<<20))
			before := treeDigest(t, dir)
			_, res, err := n.e.Run(t, dir, worker.Options{Consume: true})
			if res == nil || res.Status != spec.StatusSE || !errors.Is(err, worker.ErrImage) || !strings.Contains(err.Error(), "kolejka-tset") {
				t.Fatalf("result %+v, error %v: want SE with ErrImage naming the image", res, err)
			}
			after := treeDigest(t, dir)
			r.Observe("%s: SE, %s; task folder digest %s → %s", n.name, short(err.Error(), 160), before, after)
			if after != before {
				t.Fatalf("the consumed task folder changed on a failed run")
			}
			data, _ := os.ReadFile(filepath.Join(dir, spec.TaskFile))
			os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(strings.Replace(string(data), "kolejka-tset", "kolejka-test", 1)), 0o644)
			resultDir, res, err := n.e.Run(t, dir, worker.Options{Consume: true})
			out, _ := os.ReadFile(filepath.Join(resultDir, "out"))
			_, serr := os.Stat(dir)
			r.Observe("%s: corrected and run again: %s, out %q, task folder gone: %v", n.name, verdict(res), strings.TrimSpace(string(out)), os.IsNotExist(serr))
			if err != nil || res.Status != spec.StatusOK || strings.TrimSpace(string(out)) != fmt.Sprint(len("precious\n")+1<<20) || !os.IsNotExist(serr) {
				t.Errorf("the retry: %+v %v, out %q, task folder %v", res, err, out, serr)
			}
			n.e.AssertClean(t)
		})
	}
}

// F16: kill -9 of kolejka-worker --consume mid-task.
func TestCorrectnessWorkerConsumeKilled(t *testing.T) {
	r := caseOf(t, hardening.Fault, "F16", "kill -9 of `kolejka-worker execute --consume` while its task runs (inputs in the task folder, scratch on the same file system)",
		"the task folder is as it was, byte for byte; the next worker sweeps the dead run and runs the same folder with --consume: OK, then consumed")
	bin := bins(t)
	dir := t.TempDir()
	temp := filepath.Join(dir, "scratch")
	conf := workerConf(t, dir, temp)
	mark := "F16-" + randomHex(6)
	task := markedCopy(t, gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "cat in.txt; test -e again || sleep 1000"], "files": {"in.txt": null}, "stdout": "out", "limits": {"time": "60s"}}`,
		"in.txt", "precious\n"), mark)
	before := treeDigest(t, task)
	w := gridtest.StartOwned(t, "kolejka-worker", filepath.Join(dir, "worker.log"), filepath.Join(bin, "kolejka-worker"), "--config-file", conf, "execute", "--consume", task, filepath.Join(dir, "result"))
	gridtest.WaitFor(t, "the task running", 30*time.Second, func() bool { return len(markedProcs(mark)) > 0 })
	w.Kill9()
	after := treeDigest(t, task)
	r.Observe("killed with its task running; task folder digest %s → %s", before, after)
	if after != before {
		t.Fatal("the consumed task folder changed when its worker was killed")
	}
	// The same folder, told not to sleep this time.
	data, _ := os.ReadFile(filepath.Join(task, spec.TaskFile))
	os.WriteFile(filepath.Join(task, spec.TaskFile), []byte(strings.Replace(string(data), `"in.txt": null`, `"in.txt": null, "again": "in.txt"`, 1)), 0o644)
	_, errOut, code := gridtest.RunCommand(context.Background(), filepath.Join(bin, "kolejka-worker"), "--config-file", conf, "execute", "--consume", task, filepath.Join(dir, "result2"))
	out, _ := os.ReadFile(filepath.Join(dir, "result2", "out"))
	_, serr := os.Stat(task)
	r.Observe("the next worker: exit %d, out %q, task folder gone: %v, scratch left: %v", code, out, os.IsNotExist(serr), entries(temp))
	if code != 0 || string(out) != "precious\n" || !os.IsNotExist(serr) || len(entries(temp)) > 0 {
		t.Errorf("the next worker: exit %d %s, out %q, task folder %v, scratch %v", code, errOut, out, serr, entries(temp))
	}
	if p := markedProcs(mark); len(p) > 0 {
		t.Errorf("processes of the killed run left: %v", p)
	}
}

// BW24: an output named with invalid UTF-8.
func TestCorrectnessWorkerOutputNames(t *testing.T) {
	r := caseOf(t, hardening.BadInput, "BW24", "the task leaves outputs the result cannot name: `bad\\xff` (invalid UTF-8) and kolejka_result.json/z, beside good ones (`kolejka-worker execute --consume`, runc; and the Docker runtime)",
		"exit 0: the result folder is written and readable, the good outputs and stdout delivered, \"omitted\" names the two with why; the verdict is the task's own (OK); with --consume the task folder goes only after that")
	bin := bins(t)
	dir := t.TempDir()
	conf := workerConf(t, dir, filepath.Join(dir, "scratch"))
	taskJSON := `{"image": "kolejka-test:latest", "args": ["sh", "-c", "cd /var/lib/kolejka/result && echo x > \"$(printf 'bad\\377')\" && mkdir kolejka_result.json && echo y > kolejka_result.json/z && echo kept > good && echo hi"], "stdout": "out", "limits": {"time": "10s"}}`
	check := func(t *testing.T, who, resultDir string) {
		res, err := spec.LoadResult(resultDir)
		if err != nil {
			t.Fatalf("%s: no readable result folder: %v", who, err)
		}
		good, _ := os.ReadFile(filepath.Join(resultDir, "good"))
		out, _ := os.ReadFile(filepath.Join(resultDir, "out"))
		r.Observe("%s: %s; files %d, good %q, out %q; omitted %s", who, verdict(res), len(res.Files), good, out, short(fmt.Sprint(res.Omitted), 260))
		if res.Status != spec.StatusOK || string(good) != "kept\n" || string(out) != "hi\n" || len(res.Files) != 2 {
			t.Errorf("%s: %s, files %v, good %q, out %q", who, res.Status, res.Files, good, out)
		}
		if !strings.Contains(res.Omitted[`"bad\xff"`], "not valid UTF-8") || !strings.Contains(res.Omitted["kolejka_result.json/z"], "clashes") {
			t.Errorf("%s: omitted %v", who, res.Omitted)
		}
	}
	task := gridtest.WriteTask(t, taskJSON)
	_, errOut, code := gridtest.RunCommand(context.Background(), filepath.Join(bin, "kolejka-worker"), "--config-file", conf, "execute", "--consume", task, filepath.Join(dir, "result"))
	_, serr := os.Stat(task)
	r.Observe("kolejka-worker (runc): exit %d; task folder consumed: %v", code, os.IsNotExist(serr))
	if code != 0 {
		t.Fatalf("kolejka-worker: exit %d: %s", code, errOut)
	}
	check(t, "runc", filepath.Join(dir, "result"))
	if !os.IsNotExist(serr) {
		t.Errorf("the task folder was not consumed after a delivered result: %v", serr)
	}
	if exec.Command("docker", "info").Run() != nil {
		testenv.RequireDocker(t)
		return
	}
	n := dockerNode(t)
	resultDir, res, err := n.e.Run(t, gridtest.WriteTask(t, taskJSON), worker.Options{})
	if res == nil || err != nil {
		t.Fatalf("docker: %+v %v", res, err)
	}
	check(t, "docker", resultDir)
}

// BW25, BW26: argument lists too long for exec.
func TestCorrectnessWorkerArgMax(t *testing.T) {
	testenv.RequireRoot(t)
	ns := cwNodes(t)
	var env []string
	for i := range 30 {
		env = append(env, fmt.Sprintf(`"V%d": "%s"`, i, strings.Repeat("v", 100<<10)))
	}
	cases := []struct{ id, name, task string }{
		{"BW25", "one argument of 200 KiB (past Linux's 128 KiB per argument)",
			`{"image": "kolejka-test:latest", "args": ["echo", "` + strings.Repeat("a", 200<<10) + `"], "stdout": "out", "stderr": "err", "limits": {"time": "10s"}}`},
		{"BW26", "an environment of 3 MiB (30 variables of 100 KiB: past a quarter of the 8 MiB stack limit)",
			`{"image": "kolejka-test:latest", "args": ["true"], "environment": {` + strings.Join(env, ", ") + `}, "stdout": "out", "stderr": "err", "limits": {"time": "10s"}}`},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			r := caseOf(t, hardening.BadInput, c.id, c.name+" (runc, docker)",
				"RE with exit 126 (the command cannot be executed, as in a shell), stderr saying the list is too long and Linux's limits; not SE; nothing left")
			for _, n := range ns {
				t.Run(n.name, func(t *testing.T) {
					cwNeed(t, n)
					resultDir, res, err := n.e.Run(t, gridtest.WriteTask(t, c.task), worker.Options{})
					if res == nil {
						t.Fatalf("no result: %v", err)
					}
					stderr, _ := os.ReadFile(filepath.Join(resultDir, "err"))
					r.Observe("%s: %s; stderr %s", n.name, verdict(res), short(string(stderr), 260))
					if err != nil {
						t.Errorf("system error: %v", err)
					}
					if res.Status != spec.StatusRE || res.Result == nil || *res.Result != 126 {
						t.Errorf("%s, want RE 126", verdict(res))
					}
					if !strings.Contains(string(stderr), "argument list too long") || !strings.Contains(string(stderr), "Linux takes at most") {
						t.Errorf("stderr %q does not say why", stderr)
					}
					n.e.AssertClean(t)
				})
			}
		})
	}
}

// F15: the killed worker's unfinished result folder.
func TestCorrectnessWorkerKilledStage(t *testing.T) {
	r := caseOf(t, hardening.Fault, "F15", "kill -9 of kolejka-worker while its task runs: its unfinished result folder .kolejka-result-<run> is left beside the result folder, next to the user's own files (one named .kolejka-result-mine)",
		"the next worker's sweep removes the unfinished result folder; the user's files and folders beside it are untouched; no result folder appears")
	bin := bins(t)
	dir := t.TempDir()
	temp := filepath.Join(dir, "scratch")
	conf := workerConf(t, dir, temp)
	parent := filepath.Join(dir, "results")
	os.MkdirAll(filepath.Join(parent, ".kolejka-result-mine"), 0o755)
	os.WriteFile(filepath.Join(parent, ".kolejka-result-mine", "keep"), []byte("mine"), 0o644)
	os.WriteFile(filepath.Join(parent, "notes.txt"), []byte("mine"), 0o644)
	mine := treeDigest(t, filepath.Join(parent, ".kolejka-result-mine"))
	mark := "F15-" + randomHex(6)
	task := markedCopy(t, gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "echo started; sleep 1000"], "stdout": "out", "limits": {"time": "60s"}}`), mark)
	w := gridtest.StartOwned(t, "kolejka-worker", filepath.Join(dir, "worker.log"), filepath.Join(bin, "kolejka-worker"), "--config-file", conf, "execute", task, filepath.Join(parent, "result"))
	gridtest.WaitFor(t, "the task running", 30*time.Second, func() bool { return len(markedProcs(mark)) > 0 })
	w.Kill9()
	stages, _ := filepath.Glob(filepath.Join(parent, ".kolejka-result-[0-9a-f]*"))
	r.Observe("killed with its task running; beside the result: %v", entries(parent))
	if len(stages) != 1 {
		t.Fatalf("want the dead run's unfinished result folder beside the result, found %v (the row would prove nothing)", entries(parent))
	}
	next := markedCopy(t, gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "echo next"], "stdout": "out"}`), mark+"-next")
	_, errOut, code := gridtest.RunCommand(context.Background(), filepath.Join(bin, "kolejka-worker"), "--config-file", conf, "execute", next, filepath.Join(dir, "result2"))
	if code != 0 {
		t.Fatalf("the next worker: exit %d: %s", code, errOut)
	}
	left := entries(parent)
	r.Observe("after the next worker's sweep, beside the result: %v; .kolejka-result-mine digest %s → %s", left, mine, treeDigest(t, filepath.Join(parent, ".kolejka-result-mine")))
	if fileExists(stages[0]) {
		t.Errorf("%s survived the sweep", stages[0])
	}
	if fileExists(filepath.Join(parent, "result")) {
		t.Error("a result appeared for the killed run")
	}
	if treeDigest(t, filepath.Join(parent, ".kolejka-result-mine")) != mine || !fileExists(filepath.Join(parent, "notes.txt")) || len(left) != 2 {
		t.Errorf("the user's files beside the result changed: %v", left)
	}
	if p := markedProcs(mark); len(p) > 0 {
		t.Errorf("processes of the killed run left: %v", p)
	}
}
