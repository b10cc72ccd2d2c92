package server_test

// The web UI in a real browser: Debian's headless Chromium driven by
// go-rod. A person's session: sign in, watch a task submitted through
// the client package go queued → running → done without reloading (the
// test plays the node through the API, choosing when), open its result,
// cancel a running task, pause a queue as a manager, follow a workflow's
// graph, drain a node. It saves screenshots into docs/ui/.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/launcher"
	"github.com/go-rod/rod/lib/proto"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv"
)

// chromium is Debian's package's binary (testdata/host-deps.sh installs it).
const chromium = "/usr/bin/chromium"

// uiWait bounds each wait for the page to show something.
const uiWait = 20 * time.Second

// openBrowser starts headless Chromium, stopped when the test ends.
func openBrowser(t *testing.T) *rod.Browser {
	t.Helper()
	if _, err := exec.LookPath(chromium); err != nil {
		testenv.Missing(t, "%s (Debian's chromium package) for the UI's browser test", chromium)
	}
	l := launcher.New().Bin(chromium).NoSandbox(true).Headless(true).Leakless(false)
	ctrl, err := l.Launch()
	if err != nil {
		t.Fatalf("unable to start chromium: %v", err)
	}
	t.Cleanup(func() { l.Kill(); l.Cleanup() })
	br := rod.New().ControlURL(ctrl)
	if err := br.Connect(); err != nil {
		t.Fatalf("unable to connect to chromium: %v", err)
	}
	t.Cleanup(func() { _ = br.Close() })
	return br
}

// uiPage opens a tab of br (1280×800) at url.
func uiPage(t *testing.T, br *rod.Browser, url string) *rod.Page {
	t.Helper()
	p, err := br.Page(proto.TargetCreateTarget{})
	if err != nil {
		t.Fatal(err)
	}
	p.MustSetViewport(1280, 800, 1, false)
	p.MustNavigate(url).MustWaitLoad()
	return p
}

// see waits (at most uiWait) for an element sel whose text matches re.
func see(p *rod.Page, sel, re string) *rod.Element {
	return p.Timeout(uiWait).MustElementR(sel, re)
}

// has waits (at most uiWait) for an element sel.
func has(p *rod.Page, sel string) *rod.Element {
	return p.Timeout(uiWait).MustElement(sel)
}

// signInPage fills the sign-in form the UI sends an anonymous visitor to.
func signInPage(t *testing.T, p *rod.Page, name string) {
	t.Helper()
	if !strings.Contains(p.MustInfo().URL, "/ui/login/") {
		t.Fatalf("an anonymous visitor is at %s, not the sign-in form", p.MustInfo().URL)
	}
	p.MustElement(`input[name=username]`).MustInput(name)
	p.MustElement(`input[name=password]`).MustInput(password(name))
	wait := p.MustWaitNavigation()
	p.MustElement(`form.signin button`).MustClick()
	wait()
	see(p, "header .who span", name)
}

// click clicks what sel finds and waits for the page it leads to.
func click(p *rod.Page, sel string) {
	wait := p.MustWaitNavigation()
	p.MustElement(sel).MustClick()
	wait()
}

// screenshot saves the page's viewport as docs/ui/name.png.
func screenshot(t *testing.T, p *rod.Page, name string) {
	t.Helper()
	dir := filepath.Join(testenv.RepoRoot(t), "docs", "ui")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.MustScreenshot(filepath.Join(dir, name+".png"))
}

// writeTaskDir writes a task folder for client.TaskSubmit.
func writeTaskDir(t *testing.T, args string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kolejka_task.json"), []byte(`{"image": "busybox:latest", "args": `+args+`}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestUIBrowser(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { server.SetUIPoll(c, 100*time.Millisecond) })
	br := openBrowser(t) // after the server: it closes first, with its live streams
	e.standardUsers()
	ctx := context.Background()
	cl, err := client.New(ctx, client.Config{Server: e.base, Username: "alice", Password: password("alice")})
	if err != nil {
		t.Fatal(err)
	}
	node := e.py("node")

	// Sign in; the task table follows a task submitted through the client.
	p := uiPage(t, br, e.base+"ui/tasks/")
	signInPage(t, p, "alice")
	sub, err := cl.TaskSubmit(ctx, writeTaskDir(t, `["echo", "hello from the grid"]`), client.TaskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := sub.ID
	p.MustNavigate(e.base + "ui/tasks/").MustWaitLoad()
	row := `tr[data-task="` + key + `"] td.state`
	see(p, row, "^queued$")
	p.MustEval(`() => { window.stillHere = "yes" }`) // gone if the page reloads
	taskKeys(t, node.dequeue(1, map[string]any{}, []string{}))
	see(p, row, "^running$")
	mustOK(t, node.resultPut(map[string]any{"id": key, "result": 0, "status": "OK", "stdout": "stdout", "tags": []string{},
		"stats": map[string]any{"time": "0.25s", "cpu": map[string]any{"usage": "0.12s"}, "memory": map[string]any{"max_usage": "3M"}}},
		map[string][]byte{"stdout": []byte("hello from the grid\n")}))
	see(p, row, "^done$")
	see(p, `tr[data-task="`+key+`"] td.status`, "^OK$")
	see(p, `tr[data-task="`+key+`"] td.node`, "^node$")
	see(p, `tr[data-task="`+key+`"] td.finished`, `^\d{4}-\d\d-\d\d `)
	if v := p.MustEval(`() => window.stillHere`).Str(); v != "yes" {
		t.Fatal("the table reloaded instead of updating in place")
	}
	screenshot(t, p, "tasks")

	// Its page: the result, its output, the file to download.
	click(p, `tr[data-task="`+key+`"] td a`)
	see(p, "pre.preview", "hello from the grid")
	see(p, "table.stats", "memory.max_usage")
	if href := p.MustElement(`ul.files a`).MustProperty("href").Str(); !strings.HasSuffix(href, "/ui/task/"+key+"/file/stdout") {
		t.Fatalf("the result's file links to %s", href)
	}
	screenshot(t, p, "task")

	// A running task, watched on its page and cancelled there.
	sub2, err := cl.TaskSubmit(ctx, writeTaskDir(t, `["sleep", "3600"]`), client.TaskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.MustNavigate(e.base + "ui/task/" + sub2.ID + "/").MustWaitLoad()
	see(p, ".task dd.state", "^queued$")
	taskKeys(t, node.dequeue(1, map[string]any{}, []string{}))
	see(p, ".task dd.state", "^running$")
	see(p, ".attempts td", "node")
	click(p, "button.cancel")
	see(p, ".task dd.state", "^cancelled$")
	if st := mustOK(t, e.tok("alice").do("GET", "/task/task/"+sub2.ID+"/", nil)).json["state"]; st != "cancelled" {
		t.Fatalf("the API says the task is %v", st)
	}

	// A manager pauses a queue; the overview shows the finished task.
	mp := uiPage(t, br.MustIncognito(), e.base+"ui/queues/")
	signInPage(t, mp, "max")
	click(mp, `tr[data-queue="default"] button`)
	see(mp, `tr[data-queue="default"] td.paused`, "^paused$")
	screenshot(t, mp, "queues")
	qs := mustOK(t, e.tok("alice").do("GET", "/queue/stats/", nil)).json["queues"].(map[string]any)
	if !qs["default"].(map[string]any)["paused"].(bool) {
		t.Fatal("the API does not see the queue paused")
	}
	click(mp, `tr[data-queue="default"] button`) // resume, for the workflow below
	see(mp, `tr[data-queue="default"] td.paused`, "^no$")
	mp.MustNavigate(e.base + "ui/").MustWaitLoad()
	see(mp, "figcaption", `^2 finished`)
	screenshot(t, mp, "overview")

	// The manager drains the node on the nodes page; an undrain through the
	// API shows there without a reload (the table is fetched again).
	dequeue(t, e.tok("node2"), map[string]any{"concurency": 2, "limits": map[string]any{"cpus": 2, "memory": "6G"},
		"capacity": map[string]any{"cpus": 2, "memory": "6G"}, "tags": []string{"gpu", "fast"}, "queues": []string{"default"}})
	mp.MustNavigate(e.base + "ui/nodes/").MustWaitLoad()
	see(mp, `tr[data-node="node2"] td.capacity`, "^cpus=2 memory=6G$")
	see(mp, `tr[data-node="node"] td.health`, "^ok$")
	click(mp, `tr[data-node="node"] button`)
	see(mp, `tr[data-node="node"] td.drained`, "^drained$")
	screenshot(t, mp, "nodes")
	mp.MustEval(`() => { window.stillHere = "yes" }`)
	mustOK(t, e.tok("max").do("POST", "/node/node/undrain/", nil))
	see(mp, `tr[data-node="node"] td.drained`, "^no$")
	if v := mp.MustEval(`() => window.stillHere`).Str(); v != "yes" {
		t.Fatal("the nodes page reloaded instead of updating in place")
	}

	// A workflow's graph, its steps changing colour as they end.
	alice := e.tok("alice")
	run := putRun(t, alice, `{"tasks": {
		"build": {"task": "x"},
		"test": {"task": "x", "after": ["build"]},
		"lint": {"task": "x", "after": ["build"]},
		"report": {"task": "x", "after_any": ["test", "lint"]},
		"alert": {"task": "x", "after_failed": ["test"]}}}`, map[string]any{"x": wfTask(alice, []string{"true"}, nil, nil)})
	p.MustNavigate(e.base + "ui/workflow/" + run + "/").MustWaitLoad()
	has(p, `g.st-submitted[data-step="build"]`)
	nodeTok := e.tok("node")
	for _, tk := range take(t, nodeTok) {
		mustOK(t, finish(t, nodeTok, tk.key, "OK", nil))
	}
	has(p, `g.st-ok[data-step="build"]`)
	see(p, `table.steps tr:nth-child(2) td:nth-child(2)`, "^ok$") // build's row, refreshed in place
	has(p, `g.st-submitted[data-step="test"]`)
	for _, tk := range take(t, nodeTok) {
		mustOK(t, finish(t, nodeTok, tk.key, "OK", nil))
	}
	has(p, `g.st-ok[data-step="test"]`)
	has(p, `g.st-skipped[data-step="alert"]`)
	screenshot(t, p, "workflow")
}
