package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
)

// limits is the start of every step's kolejka_task.json here: the test
// image, and limits no step comes near (the abort's long step is killed
// by its cancel, never by its time limit).
const limits = `"image": "kolejka-test:latest", "limits": {"time": "120s", "memory": "64M"}`

// writeFolder writes files (path → content) under a new temporary folder.
func writeFolder(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The example workflow on a grid of real processes, through
// `kolejka-client workflow execute`: compile builds a.out; test runs once
// per item with it bound as prog (by reference, from compile's result);
// report runs after every test item and reads each item's out.txt from a
// folder with one entry per item. A second run has a failing step, retried
// once and then failed: the step after it is skipped, its after_failed
// step and the final step run, and the run's verdict is failed.
func TestGridWorkflow(t *testing.T) {
	g := newGrid(t)
	g.StartForeman("a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := writeFolder(t, map[string]string{
		"kolejka_workflow.json": `{"tasks": {
			"compile": {"task": "compile"},
			"test":    {"task": "test", "after": ["compile"], "items": ["1", "2", "3"], "inputs": {"prog": "compile:a.out"}},
			"report":  {"task": "report", "after_any": ["test"], "inputs": {"results": "test:out.txt"}}
		}, "on_failure": "continue"}`,
		"compile/kolejka_task.json": `{` + limits + `, "args": ["sh", "-c", "echo built > a.out"], "collect": [{"glob": "a.out"}]}`,
		"test/kolejka_task.json":    `{` + limits + `, "args": ["sh", "-c", "cat prog; echo item {item}"], "stdout": "out.txt"}`,
		"report/kolejka_task.json":  `{` + limits + `, "args": ["sh", "-c", "cat results/1 results/2 results/3"], "stdout": "out.txt"}`,
	})
	out := filepath.Join(t.TempDir(), "out")
	if _, errOut, code := g.KolejkaClient(ctx, "workflow", "execute", dir, out); code != 0 {
		t.Fatalf("workflow execute: exit %d: %s", code, errOut)
	}
	report, err := os.ReadFile(filepath.Join(out, "report", "out.txt"))
	if want := "built\nitem 1\nbuilt\nitem 2\nbuilt\nitem 3\n"; err != nil || string(report) != want {
		t.Errorf("report's output %q (%v), want %q", report, err, want)
	}
	for _, item := range []string{"1", "2", "3"} {
		if b, err := os.ReadFile(filepath.Join(out, "test", item, "out.txt")); err != nil || string(b) != "built\nitem "+item+"\n" {
			t.Errorf("test item %s's result: %q (%v)", item, b, err)
		}
	}
	var summary map[string]any
	if b, err := os.ReadFile(filepath.Join(out, "kolejka_workflow_result.json")); err != nil || json.Unmarshal(b, &summary) != nil {
		t.Fatalf("kolejka_workflow_result.json: %v", err)
	}
	if summary["state"] != "ok" {
		t.Errorf("the run's state %v, want ok: %v", summary["state"], summary)
	}

	// A failing step: retried twice on RE, then failed; its after_failed
	// step and the final step run; the step after it is skipped.
	dir = writeFolder(t, map[string]string{
		"kolejka_workflow.json": `{"tasks": {
			"flaky":   {"task": "fail", "retry": {"attempts": 2, "on": ["RE"]}},
			"next":    {"task": "ok", "after": ["flaky"]},
			"rescue":  {"task": "ok", "after_failed": ["flaky"]},
			"cleanup": {"task": "ok"}
		}, "final": "cleanup"}`,
		"fail/kolejka_task.json": `{` + limits + `, "args": ["sh", "-c", "exit 3"]}`,
		"ok/kolejka_task.json":   `{` + limits + `, "args": ["true"]}`,
	})
	key, errOut, code := g.KolejkaClient(ctx, "workflow", "put", dir)
	key = strings.TrimSpace(key)
	if code != 0 || key == "" {
		t.Fatalf("workflow put: exit %d: %s", code, errOut)
	}
	out = filepath.Join(t.TempDir(), "out")
	if _, errOut, code := g.KolejkaClient(ctx, "workflow", "get", key, out); code != 0 && code != 1 {
		t.Fatalf("workflow get: exit %d: %s", code, errOut)
	}
	show, _, code := g.KolejkaClient(ctx, "workflow", "show", "--json", key)
	var run struct {
		State string `json:"state"`
		Steps []struct {
			Name      string `json:"name"`
			Instances []struct {
				State   string   `json:"state"`
				Status  string   `json:"status"`
				Earlier []string `json:"earlier"` // the keys of earlier tries
			} `json:"instances"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(show), &run); code != 0 || err != nil {
		t.Fatalf("workflow show --json: exit %d %v: %s", code, err, show)
	}
	states := map[string]string{}
	for _, s := range run.Steps {
		if len(s.Instances) == 1 {
			states[s.Name] = s.Instances[0].State + "/" + s.Instances[0].Status
		}
		if s.Name == "flaky" && (len(s.Instances) != 1 || len(s.Instances[0].Earlier) != 1) {
			t.Errorf("flaky ran %+v: want two tries (one earlier key)", s.Instances)
		}
	}
	if run.State != "failed" || !strings.HasPrefix(states["flaky"], "failed/RE") || !strings.HasPrefix(states["next"], "skipped") ||
		states["rescue"] != "ok/OK" || states["cleanup"] != "ok/OK" {
		t.Errorf("the failing run: %s %v\n%s", run.State, states, show)
	}
}

// A fan-out decided at run time, on a grid of real processes: plan writes
// a list of 100 items, work runs once per item (items_from), and sum reads
// every item's output from a folder with one entry per item.
func TestGridWorkflowFanOut100(t *testing.T) {
	g := newGrid(t)
	g.StartForeman("a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	dir := writeFolder(t, map[string]string{
		"kolejka_workflow.json": `{"tasks": {
			"plan": {"task": "plan"},
			"work": {"task": "work", "after": ["plan"], "items_from": "plan:list.json"},
			"sum":  {"task": "sum", "after": ["work"], "inputs": {"outs": "work:out.txt"}}
		}}`,
		"plan/kolejka_task.json": `{` + limits + `, "args": ["sh", "plan.sh"], "files": {"plan.sh": {"path": "plan.sh"}},
			"collect": [{"glob": "list.json"}]}`,
		"plan/plan.sh": `i=1; sep=""; printf "[" > list.json
while [ $i -le 100 ]; do printf '%s"%d"' "$sep" $i >> list.json; sep=","; i=$((i+1)); done
printf "]" >> list.json
`,
		"work/kolejka_task.json": `{` + limits + `, "args": ["sh", "-c", "echo {item}"], "stdout": "out.txt"}`,
		"sum/kolejka_task.json":  `{` + limits + `, "args": ["sh", "-c", "cat outs/* | sort -n | tr '\\n' ' '"], "stdout": "out.txt"}`,
	})
	out := filepath.Join(t.TempDir(), "out")
	if _, errOut, code := g.KolejkaClient(ctx, "workflow", "execute", dir, out); code != 0 {
		t.Fatalf("workflow execute: exit %d: %s", code, errOut)
	}
	var want strings.Builder
	for i := 1; i <= 100; i++ {
		want.WriteString(strconv.Itoa(i) + " ")
	}
	if sum, err := os.ReadFile(filepath.Join(out, "sum", "out.txt")); err != nil || string(sum) != want.String() {
		t.Errorf("sum's output %q (%v), want every item once: %q", sum, err, want.String())
	}
	items, err := os.ReadDir(filepath.Join(out, "work"))
	if err != nil || len(items) != 100 {
		t.Errorf("%d result folders of work (%v), want 100", len(items), err)
	}
}

// A run that grows while it goes, and a resume, on a grid of real
// processes: gen's result holds a kolejka_workflow.json and the folder of
// the step it adds, which then runs; a failed run retried keeps its OK
// step's task and result and runs the failed step again as a new task.
func TestGridWorkflowAppendAndRetry(t *testing.T) {
	g := newGrid(t)
	g.StartForeman("a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := writeFolder(t, map[string]string{
		"kolejka_workflow.json": `{"tasks": {"gen": {"task": "gen"}}}`,
		"gen/kolejka_task.json": `{` + limits + `, "args": ["sh", "-c", "mkdir x && cp x.json x/kolejka_task.json && cp wf.json kolejka_workflow.json"],
			"files": {"x.json": {"path": "x.json"}, "wf.json": {"path": "wf.json"}},
			"collect": [{"glob": "kolejka_workflow.json"}, {"glob": "x/kolejka_task.json"}]}`,
		"gen/wf.json": `{"tasks": {"extra": {"task": "x", "after": ["gen"]}}}`,
		"gen/x.json":  `{` + limits + `, "args": ["sh", "-c", "echo appended"], "stdout": "out.txt"}`,
	})
	out := filepath.Join(t.TempDir(), "out")
	if _, errOut, code := g.KolejkaClient(ctx, "workflow", "execute", dir, out); code != 0 {
		t.Fatalf("workflow execute: exit %d: %s", code, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(out, "extra", "out.txt")); err != nil || string(b) != "appended\n" {
		t.Errorf("the appended step's output %q (%v)", b, err)
	}

	dir = writeFolder(t, map[string]string{
		"kolejka_workflow.json":  `{"tasks": {"good": {"task": "ok"}, "bad": {"task": "fail", "after": ["good"]}}}`,
		"fail/kolejka_task.json": `{` + limits + `, "args": ["sh", "-c", "exit 3"]}`,
		"ok/kolejka_task.json":   `{` + limits + `, "args": ["true"]}`,
	})
	key, errOut, code := g.KolejkaClient(ctx, "workflow", "put", dir)
	key = strings.TrimSpace(key)
	if code != 0 {
		t.Fatalf("workflow put: exit %d: %s", code, errOut)
	}
	type instance struct {
		State   string   `json:"state"`
		TaskKey string   `json:"task_key"`
		Earlier []string `json:"earlier"`
	}
	shown := func() (string, map[string]instance) {
		t.Helper()
		g.KolejkaClient(ctx, "workflow", "get", key, filepath.Join(t.TempDir(), "out")) // waits for the end
		show, _, code := g.KolejkaClient(ctx, "workflow", "show", "--json", key)
		var run struct {
			State string `json:"state"`
			Steps []struct {
				Name      string     `json:"name"`
				Instances []instance `json:"instances"`
			} `json:"steps"`
		}
		if err := json.Unmarshal([]byte(show), &run); code != 0 || err != nil {
			t.Fatalf("workflow show --json: exit %d %v: %s", code, err, show)
		}
		out := map[string]instance{}
		for _, s := range run.Steps {
			out[s.Name] = s.Instances[0]
		}
		return run.State, out
	}
	state, before := shown()
	if state != "failed" || before["good"].State != "ok" || before["bad"].State != "failed" {
		t.Fatalf("the first run: %s %+v", state, before)
	}
	if _, errOut, code := g.KolejkaClient(ctx, "workflow", "retry", key); code != 0 {
		t.Fatalf("workflow retry: exit %d: %s", code, errOut)
	}
	state, after := shown()
	if state != "failed" || after["good"].TaskKey != before["good"].TaskKey || after["bad"].TaskKey == before["bad"].TaskKey ||
		len(after["bad"].Earlier) != len(before["bad"].Earlier)+1 {
		t.Errorf("after retry: %s %+v; before %+v: the OK step must keep its task, the failed one run again", state, after, before)
	}
}

// kill -9 of the server in the middle of a run, with real foremen: after
// the restart the run ends ok, every instance ran as exactly one task, and
// the step after the fan-out got every item's output.
func TestGridWorkflowServerKill9(t *testing.T) {
	g := newGrid(t)
	g.StartForeman("a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	items := make([]string, 20)
	for i := range items {
		items[i] = strconv.Quote(strconv.Itoa(i + 1))
	}
	dir := writeFolder(t, map[string]string{
		"kolejka_workflow.json": `{"tasks": {
			"work": {"task": "work", "items": [` + strings.Join(items, ",") + `]},
			"sum":  {"task": "sum", "after": ["work"], "inputs": {"outs": "work:out.txt"}}
		}}`,
		"work/kolejka_task.json": `{` + limits + `, "args": ["sh", "-c", "sleep 0.3; echo {item}"], "stdout": "out.txt"}`,
		"sum/kolejka_task.json":  `{` + limits + `, "args": ["sh", "-c", "cat outs/* | wc -l"], "stdout": "out.txt"}`,
	})
	key, errOut, code := g.KolejkaClient(ctx, "workflow", "put", dir)
	key = strings.TrimSpace(key)
	if code != 0 {
		t.Fatalf("workflow put: exit %d: %s", code, errOut)
	}
	type run struct {
		State string `json:"state"`
		Steps []struct {
			Name      string `json:"name"`
			Instances []struct {
				State   string   `json:"state"`
				Earlier []string `json:"earlier"`
			} `json:"instances"`
		} `json:"steps"`
	}
	show := func() (r run) {
		out, _, _ := g.KolejkaClient(ctx, "workflow", "show", "--json", key)
		json.Unmarshal([]byte(out), &r)
		return r
	}
	gridtest.WaitFor(t, "five items done", time.Minute, func() bool {
		n := 0
		for _, s := range show().Steps {
			for _, i := range s.Instances {
				if i.State == "ok" {
					n++
				}
			}
		}
		return n >= 5
	})
	g.Server.Kill9()
	g.StartServer()

	out := filepath.Join(t.TempDir(), "out")
	if _, errOut, code := g.KolejkaClient(ctx, "workflow", "get", key, out); code != 0 {
		t.Fatalf("workflow get after the restart: exit %d: %s", code, errOut)
	}
	r := show()
	instances := 0
	for _, s := range r.Steps {
		for _, i := range s.Instances {
			instances++
			if i.State != "ok" || len(i.Earlier) != 0 {
				t.Errorf("step %s: an instance %s after %d earlier tasks, want ok at its first", s.Name, i.State, len(i.Earlier))
			}
		}
	}
	if r.State != "ok" || instances != 21 {
		t.Errorf("after kill -9: run %s with %d instances, want ok with 21", r.State, instances)
	}
	if b, err := os.ReadFile(filepath.Join(out, "sum", "out.txt")); err != nil || strings.TrimSpace(string(b)) != "20" {
		t.Errorf("sum saw %q lines (%v), want 20", b, err)
	}
	list, _, _ := g.KolejkaClient(ctx, "task", "ls", "--json", "--limit", "1000")
	if n := strings.Count(list, `"key"`); n != 21 {
		t.Errorf("%d tasks on the server, want 21 (one per instance)", n)
	}
}

// on_failure "abort" on a grid of real processes: the first failure
// cancels what has not ended (a long task, queued or running on its node),
// the final step still runs, and the run is failed.
func TestGridWorkflowAbort(t *testing.T) {
	g := newGrid(t)
	g.StartForeman("a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := writeFolder(t, map[string]string{
		"kolejka_workflow.json": `{"tasks": {
			"bad":     {"task": "fail"},
			"slow":    {"task": "slow"},
			"cleanup": {"task": "ok"}
		}, "on_failure": "abort", "final": "cleanup"}`,
		"fail/kolejka_task.json": `{` + limits + `, "args": ["sh", "-c", "exit 3"]}`,
		"slow/kolejka_task.json": `{` + limits + `, "args": ["sleep", "100"]}`,
		"ok/kolejka_task.json":   `{` + limits + `, "args": ["true"]}`,
	})
	out := filepath.Join(t.TempDir(), "out")
	_, errOut, code := g.KolejkaClient(ctx, "workflow", "execute", dir, out)
	var summary struct {
		State string `json:"state"`
		Steps []struct {
			Name      string `json:"name"`
			Instances []struct {
				State string `json:"state"`
			} `json:"instances"`
		} `json:"steps"`
	}
	b, err := os.ReadFile(filepath.Join(out, "kolejka_workflow_result.json"))
	if err != nil || json.Unmarshal(b, &summary) != nil {
		t.Fatalf("workflow execute: exit %d %s; no summary: %v", code, errOut, err)
	}
	states := map[string]string{}
	for _, s := range summary.Steps {
		states[s.Name] = s.Instances[0].State
	}
	if summary.State != "failed" || states["bad"] != "failed" || states["slow"] != "cancelled" || states["cleanup"] != "ok" {
		t.Errorf("after abort: run %s, steps %v; want failed, bad failed, slow cancelled, cleanup ok", summary.State, states)
	}
}
