package server_test

// Tests of the web UI over real HTTP: sign-in with the CSRF token, the
// same refusals as the API, escaping of what users wrote, paging, the
// actions, and the live stream.

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
)

// browser is a web browser's way with the UI: cookies, forms carrying the
// CSRF token from the page, Referer, and redirects seen rather than
// followed.
type browser struct {
	t    testing.TB
	e    *env
	root string // the server's URL with prefix
	jar  *cookiejar.Jar
	hc   *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: e.t, e: e, root: e.base, jar: jar, hc: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// page is a UI answer: status, Location of a redirect, body.
type page struct {
	code     int
	location string
	body     string
	header   http.Header
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	req.Header.Set("Referer", b.root+"ui/")
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{code: resp.StatusCode, location: resp.Header.Get("Location"), body: string(body), header: resp.Header}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.root+path, nil)
	return b.do(req)
}

// post sends form as a browser submits a form: with the token the page
// put in it, when token is true.
func (b *browser) post(path string, form url.Values, token bool) page {
	b.t.Helper()
	if token {
		form.Set("csrfmiddlewaretoken", b.cookie("csrftoken"))
	}
	req, _ := http.NewRequest("POST", b.root+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *browser) cookie(name string) string {
	for _, c := range b.jar.Cookies(mustURL(b.root)) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// csrfField is the token a page's form carries.
var csrfField = regexp.MustCompile(`name="csrfmiddlewaretoken" value="([^"]+)"`)

// signIn fills in the sign-in form as a person does.
func (b *browser) signIn(name string) {
	b.t.Helper()
	p := b.get("ui/login/")
	m := csrfField.FindStringSubmatch(p.body)
	if p.code != 200 || m == nil {
		b.t.Fatalf("sign-in form: %d, token %v\n%s", p.code, m, p.body)
	}
	if m[1] != b.cookie("csrftoken") {
		b.t.Fatalf("the form's token %q is not the cookie's %q", m[1], b.cookie("csrftoken"))
	}
	form := url.Values{"username": {name}, "password": {password(name)}, "csrfmiddlewaretoken": {m[1]}}
	req, _ := http.NewRequest("POST", b.root+"ui/login/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if p := b.do(req); p.code != http.StatusSeeOther {
		b.t.Fatalf("sign in as %s: %d\n%s", name, p.code, p.body)
	}
}

func TestUISignIn(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	b := e.browser()

	p := b.get("ui/tasks/?state=queued")
	if p.code != http.StatusSeeOther || !strings.Contains(p.location, "ui/login/?next=") {
		t.Fatalf("anonymous: %d to %q, want the sign-in form", p.code, p.location)
	}
	// A sign-in without the form's token is a forged post.
	b.get("ui/login/")
	if p := b.post("ui/login/", url.Values{"username": {"alice"}, "password": {password("alice")}}, false); p.code != http.StatusForbidden || !strings.Contains(p.body, "CSRF") {
		t.Fatalf("sign-in without token: %d %s", p.code, p.body)
	}
	if p := b.post("ui/login/", url.Values{"username": {"alice"}, "password": {"wrong"}}, true); p.code != http.StatusForbidden || !strings.Contains(p.body, "invalid username or password") {
		t.Fatalf("wrong password: %d", p.code)
	}
	b.signIn("alice")
	if p := b.get("ui/"); p.code != 200 || !strings.Contains(p.body, "alice") || !strings.Contains(p.body, "Queues") {
		t.Fatalf("overview after sign-in: %d\n%s", p.code, p.body)
	}
	// The same session signs in the API.
	req, _ := http.NewRequest("GET", e.base+"settings/", nil)
	if p := b.do(req); p.code != 200 || !strings.Contains(p.body, `"status": "OK"`) && !strings.Contains(p.body, `"status":"OK"`) {
		t.Fatalf("API with the UI's session: %d %s", p.code, p.body)
	}
	// Back to where one was going, and nowhere else.
	b2 := e.browser()
	b2.get("ui/login/")
	form := url.Values{"username": {"bob"}, "password": {password("bob")}, "next": {"https://evil.example/"}}
	if p := b2.post("ui/login/", form, true); p.location != e.ts.URL[len(e.ts.URL):]+"/kolejka/ui/" && p.location != "/kolejka/ui/" {
		t.Fatalf("sign-in with a foreign next goes to %q", p.location)
	}
	// Sign-out ends the session for the API too.
	if p := b.post("ui/logout/", url.Values{}, true); p.code != http.StatusSeeOther {
		t.Fatalf("sign out: %d", p.code)
	}
	req, _ = http.NewRequest("GET", e.base+"settings/", nil)
	if p := b.do(req); p.code != http.StatusForbidden {
		t.Fatalf("API after sign-out: %d", p.code)
	}
}

func TestUITaskRules(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	key := e.tok("alice").submit(simpleTask(), nil)

	bob := e.browser()
	bob.signIn("bob")
	// As GET /task/task/<key>/ answers bob: 403; an unknown task 404.
	if p := bob.get("ui/task/" + key + "/"); p.code != http.StatusForbidden {
		t.Fatalf("bob opens alice's task: %d", p.code)
	}
	if api := e.tok("bob").do("GET", "/task/task/"+key+"/", nil); api.code != http.StatusForbidden {
		t.Fatalf("the API answers bob %d", api.code)
	}
	if p := bob.get("ui/task/nosuchtask/"); p.code != http.StatusNotFound {
		t.Fatalf("unknown task: %d", p.code)
	}
	if p := bob.post("ui/task/"+key+"/cancel/", url.Values{}, true); p.code != http.StatusForbidden {
		t.Fatalf("bob cancels alice's task: %d", p.code)
	}
	if p := bob.get("ui/tasks/?owner=alice"); p.code != http.StatusForbidden {
		t.Fatalf("bob lists alice's tasks: %d", p.code)
	}
	if p := bob.get("ui/tasks/"); p.code != 200 || strings.Contains(p.body, key) {
		t.Fatalf("bob's table shows alice's task (%d)", p.code)
	}

	alice := e.browser()
	alice.signIn("alice")
	// A forged post: no token in the form.
	if p := alice.post("ui/task/"+key+"/cancel/", url.Values{}, false); p.code != http.StatusForbidden || !strings.Contains(p.body, "CSRF") {
		t.Fatalf("cancel without the token: %d %s", p.code, p.body)
	}
	if st := mustOK(t, e.tok("alice").do("GET", "/task/task/"+key+"/", nil)).json["state"]; st != "queued" {
		t.Fatalf("after the forged post the task is %v", st)
	}
	// Clone, then cancel, with the token.
	p := alice.post("ui/task/"+key+"/clone/", url.Values{}, true)
	if p.code != http.StatusSeeOther || strings.Contains(p.location, key) {
		t.Fatalf("clone: %d to %q", p.code, p.location)
	}
	clone := strings.TrimSuffix(strings.TrimPrefix(p.location, "/kolejka/ui/task/"), "/")
	if st := mustOK(t, e.tok("alice").do("GET", "/task/task/"+clone+"/", nil)).json["state"]; st != "queued" {
		t.Fatalf("the clone %s is %v", clone, st)
	}
	if p := alice.post("ui/task/"+key+"/cancel/", url.Values{}, true); p.code != http.StatusSeeOther {
		t.Fatalf("cancel: %d %s", p.code, p.body)
	}
	if st := mustOK(t, e.tok("alice").do("GET", "/task/task/"+key+"/", nil)).json["state"]; st != "cancelled" {
		t.Fatalf("after cancel the task is %v", st)
	}
	if p := alice.get("ui/task/" + key + "/"); p.code != 200 || !strings.Contains(p.body, ">cancelled<") || strings.Contains(p.body, `class="cancel"`) {
		t.Fatalf("a cancelled task's page: %d (a cancel button?)", p.code)
	}
	// Inspectors read every task but change none.
	ivy := e.browser()
	ivy.signIn("ivy")
	if p := ivy.get("ui/task/" + clone + "/"); p.code != 200 || strings.Contains(p.body, `class="cancel"`) {
		t.Fatalf("ivy on alice's task: %d", p.code)
	}
	if p := ivy.post("ui/task/"+clone+"/cancel/", url.Values{}, true); p.code != http.StatusForbidden {
		t.Fatalf("ivy cancels: %d", p.code)
	}
}

func TestUIEscapes(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	const evil = `<script>alert("x")</script>`
	task := simpleTask()
	task["args"] = []string{"echo", evil}
	key := e.tok("alice").submit(task, nil)
	node := e.py("node")
	taskKeys(t, node.dequeue(1, map[string]any{}, []string{}))
	name := `<img src=x onerror=alert(1)>.txt`
	mustOK(t, node.resultPut(map[string]any{"id": key, "result": 0, "status": "OK", "stdout": "stdout", "tags": []string{}},
		map[string][]byte{"stdout": []byte("out: " + evil), name: []byte("x")}))

	b := e.browser()
	b.signIn("alice")
	p := b.get("ui/task/" + key + "/")
	if p.code != 200 {
		t.Fatalf("task page: %d", p.code)
	}
	for _, raw := range []string{"<script>alert", "<img src=x"} {
		if strings.Contains(p.body, raw) {
			t.Errorf("the page holds %q unescaped", raw)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", "out: &lt;script&gt;", "&lt;img src=x onerror=alert(1)&gt;.txt"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// The file downloads as bytes, never as a page.
	f := b.get("ui/task/" + key + "/file/" + url.PathEscape(name))
	if f.code != 200 || f.body != "x" {
		t.Fatalf("download %q: %d %q", name, f.code, f.body)
	}
	if cd, ct := f.header.Get("Content-Disposition"), f.header.Get("Content-Type"); !strings.HasPrefix(cd, "attachment;") || ct != "application/octet-stream" {
		t.Fatalf("download served as %q, %q", ct, cd)
	}
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Fatalf("the page's Content-Security-Policy is %q", csp)
	}
	bob := e.browser()
	bob.signIn("bob")
	if f := bob.get("ui/task/" + key + "/file/stdout"); f.code != http.StatusForbidden {
		t.Fatalf("bob downloads alice's result: %d", f.code)
	}
}

func TestUITaskPaging(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	var keys []string
	for range 7 {
		keys = append(keys, e.tok("alice").submit(simpleTask(), nil))
	}
	e.tok("bob").submit(simpleTask(), nil)
	b := e.browser()
	b.signIn("alice")
	next := "ui/tasks/?limit=3"
	var seen []string
	row := regexp.MustCompile(`<tr data-task="([^"]+)">`)
	link := regexp.MustCompile(`class="next" href="/kolejka/([^"]+)"`)
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatal("more pages than tasks")
		}
		p := b.get(next)
		if p.code != 200 {
			t.Fatalf("%s: %d", next, p.code)
		}
		for _, m := range row.FindAllStringSubmatch(p.body, -1) {
			seen = append(seen, m[1])
		}
		next = ""
		if m := link.FindStringSubmatch(p.body); m != nil {
			next = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if len(seen) != 7 {
		t.Fatalf("paged through %d tasks, want alice's 7: %v", len(seen), seen)
	}
	for i, k := range seen {
		if k != keys[6-i] {
			t.Fatalf("row %d is %s, want %s (newest first)", i, k, keys[6-i])
		}
	}
	// A manager's table is everyone's; owner and state filter it.
	m := e.browser()
	m.signIn("max")
	if p := m.get("ui/tasks/?owner=bob&state=queued"); len(row.FindAllString(p.body, -1)) != 1 {
		t.Fatalf("max's table of bob's queued tasks: %d rows", len(row.FindAllString(p.body, -1)))
	}
	if p := m.get("ui/tasks/?state=nonsense"); p.code != http.StatusBadRequest || !strings.Contains(p.body, "state") {
		t.Fatalf("a bad state: %d", p.code)
	}
}

func TestUIQueuePause(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	alice, max := e.browser(), e.browser()
	alice.signIn("alice")
	max.signIn("max")
	if p := alice.post("ui/queue/default/pause/", url.Values{}, true); p.code != http.StatusForbidden {
		t.Fatalf("alice pauses a queue: %d", p.code)
	}
	if p := max.post("ui/queue/default/pause/", url.Values{}, false); p.code != http.StatusForbidden {
		t.Fatalf("a forged pause: %d", p.code)
	}
	if p := max.post("ui/queue/default/pause/", url.Values{}, true); p.code != http.StatusSeeOther {
		t.Fatalf("max pauses: %d %s", p.code, p.body)
	}
	qs := mustOK(t, e.tok("alice").do("GET", "/queue/stats/", nil)).json["queues"].(map[string]any)
	if !qs["default"].(map[string]any)["paused"].(bool) {
		t.Fatal("the queue is not paused")
	}
	if p := max.get("ui/queues/"); !strings.Contains(p.body, "Resume") {
		t.Fatal("the queues page offers no resume")
	}
	if p := max.post("ui/queue/nosuch/pause/", url.Values{}, true); p.code != http.StatusNotFound {
		t.Fatalf("pausing an unknown queue: %d", p.code)
	}
}

func TestUILiveStream(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { server.SetUIPoll(c, 20*time.Millisecond) })
	e.standardUsers()
	key := e.tok("alice").submit(simpleTask(), nil)
	b := e.browser()
	b.signIn("alice")
	req, _ := http.NewRequest("GET", b.root+"ui/events/?tasks="+key+"+someoneelses", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := b.hc.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := bufio.NewScanner(resp.Body)
	next := func() string {
		for lines.Scan() {
			if d, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
				return d
			}
		}
		t.Fatalf("the stream ended: %v", lines.Err())
		return ""
	}
	if d := next(); !strings.Contains(d, `"state":"queued"`) {
		t.Fatalf("first event %s", d)
	}
	taskKeys(t, e.py("node").dequeue(1, map[string]any{}, []string{}))
	if d := next(); !strings.Contains(d, `"state":"running"`) || !strings.Contains(d, `"node":"node"`) {
		t.Fatalf("after dequeue: %s", d)
	}
	mustOK(t, e.tok("node").postJSON("/task/result/", map[string]any{"id": key, "result": 0, "status": "OK"}))
	if d := next(); !strings.Contains(d, `"state":"done"`) || !strings.Contains(d, `"status":"OK"`) {
		t.Fatalf("after the result: %s", d)
	}
	// Shutdown ends the stream (a long-lived request must not hold it).
	done := make(chan struct{})
	go func() {
		for lines.Scan() {
		}
		close(done)
	}()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := e.srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the stream outlived the server's shutdown")
	}
}

func TestUIWorkflow(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	alice := e.tok("alice")
	wf := `{"tasks": {
		"a": {"task": "x"},
		"b": {"task": "x", "after": ["a"]},
		"c": {"task": "x", "after_failed": ["a"]},
		"d": {"task": "x", "after_any": ["b", "c"]}}}`
	key := putRun(t, alice, wf, map[string]any{"x": wfTask(alice, []string{"true"}, nil, nil)})

	b := e.browser()
	b.signIn("alice")
	p := b.get("ui/workflow/" + key + "/")
	if p.code != 200 {
		t.Fatalf("run page: %d", p.code)
	}
	for _, want := range []string{`class="step st-submitted" data-step="a"`, `class="step st-waiting" data-step="b"`,
		`class="edge e-after"`, `class="edge e-after_failed"`, `class="edge e-after_any"`, `data-step="d"`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the graph lacks %s", want)
		}
	}
	if n := strings.Count(p.body, `<line class="edge`); n != 4 {
		t.Errorf("%d edges, want 4", n)
	}
	bob := e.browser()
	bob.signIn("bob")
	if p := bob.get("ui/workflow/" + key + "/"); p.code != http.StatusForbidden {
		t.Fatalf("bob opens alice's run: %d", p.code)
	}
	if p := bob.post("ui/workflow/"+key+"/cancel/", url.Values{}, true); p.code != http.StatusForbidden {
		t.Fatalf("bob cancels alice's run: %d", p.code)
	}
	if p := b.post("ui/workflow/"+key+"/cancel/", url.Values{}, true); p.code != http.StatusSeeOther {
		t.Fatalf("cancel: %d %s", p.code, p.body)
	}
	if st, _ := runShow(t, alice, key); st != "cancelled" {
		t.Fatalf("after the UI's cancel the run is %s", st)
	}
	if p := b.post("ui/workflow/"+key+"/cancel/", url.Values{}, true); p.code != http.StatusBadRequest || !strings.Contains(p.body, "has ended") {
		t.Fatalf("cancelling an ended run: %d", p.code)
	}
	if p := b.get("ui/workflows/"); !strings.Contains(p.body, key) {
		t.Fatal("the run is not listed")
	}
}

func TestUITypesAndTriggers(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	alice := e.tok("alice")
	mustOK(t, putType(alice, "secret", false, simpleTask()))
	mustOK(t, putType(alice, "shared", true, map[string]any{"image": "busybox:latest", "args": []string{"echo", "{who}"},
		"params": map[string]any{"who": map[string]any{"default": "<b>world</b>"}}}))
	mustOK(t, alice.postJSON("/schedule/", map[string]any{"name": "nightly", "cron": "0 3 * * *", "target": map[string]any{"type": "secret"}}))

	a, bob, ivy := e.browser(), e.browser(), e.browser()
	a.signIn("alice")
	bob.signIn("bob")
	ivy.signIn("ivy")
	if p := a.get("ui/types/"); !strings.Contains(p.body, `href="/kolejka/ui/type/secret/"`) || !strings.Contains(p.body, `href="/kolejka/ui/type/shared/"`) {
		t.Fatalf("alice's types: %d\n%s", p.code, p.body)
	}
	if p := a.get("ui/type/shared/"); p.code != 200 || !strings.Contains(p.body, "&lt;b&gt;world&lt;/b&gt;") {
		t.Fatalf("the shared type's page: %d", p.code)
	}
	// As GET /type/<name>/: another's private type does not exist.
	if p := bob.get("ui/type/secret/"); p.code != http.StatusNotFound {
		t.Fatalf("bob opens alice's private type: %d", p.code)
	}
	if p := bob.get("ui/type/shared/"); p.code != 200 {
		t.Fatalf("bob opens a public type: %d", p.code)
	}
	if p := bob.get("ui/types/"); strings.Contains(p.body, "type/secret/") {
		t.Fatal("bob's list shows alice's private type")
	}
	if p := a.get("ui/triggers/"); !strings.Contains(p.body, `href="/kolejka/ui/trigger/alice/nightly/"`) || !strings.Contains(p.body, "0 3 * * *") {
		t.Fatalf("alice's schedules: %s", p.body)
	}
	if p := a.get("ui/trigger/alice/nightly/"); p.code != 200 || !strings.Contains(p.body, "None yet.") {
		t.Fatalf("the schedule's page: %d", p.code)
	}
	// Naming another user's schedule: inspectors and managers only.
	if p := bob.get("ui/trigger/alice/nightly/"); p.code != http.StatusForbidden {
		t.Fatalf("bob opens alice's schedule: %d", p.code)
	}
	if p := bob.get("ui/triggers/"); strings.Contains(p.body, "nightly") {
		t.Fatal("bob's list shows alice's schedule")
	}
	if p := ivy.get("ui/trigger/alice/nightly/"); p.code != 200 {
		t.Fatalf("ivy opens alice's schedule: %d", p.code)
	}
	if p := ivy.get("ui/trigger/alice/nosuch/"); p.code != http.StatusNotFound {
		t.Fatalf("an unknown schedule: %d", p.code)
	}
}

// Live streams are capped: one more than allowed is 503 (the browser's
// EventSource tries again), and a closed stream frees its place.
func TestUIStreamCap(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { server.SetUIStreams(c, 1) })
	e.standardUsers()
	key := e.tok("alice").submit(simpleTask(), nil)
	b := e.browser()
	b.signIn("alice")
	open := func() (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", b.root+"ui/events/?tasks="+key, nil)
		resp, err := b.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, cancel
	}
	first, stop := open()
	if first.StatusCode != 200 {
		t.Fatalf("the first stream: %d", first.StatusCode)
	}
	second, stop2 := open()
	body, _ := io.ReadAll(second.Body)
	second.Body.Close()
	stop2()
	if second.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "too many live streams") {
		t.Fatalf("a stream over the cap: %d %s", second.StatusCode, body)
	}
	stop()
	first.Body.Close()
	waitFor(t, "the closed stream frees its place", func() bool {
		r, c := open()
		defer c()
		defer r.Body.Close()
		return r.StatusCode == 200
	})
}
