package hardening_test

// The web UI (/ui/) over real HTTP to a real server on a real SQLite
// file: another user's pages, forged form posts and HTML in what users
// wrote. Refusals are the API's (403, 404) and change nothing: every row
// of every table, the blob files and the temp files are the same before
// and after.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/tests/hardening"
)

func TestBadInputUI(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	if err := s.srv.AddUser(context.Background(), "max", "max-password", server.Managers); err != nil {
		t.Fatal(err)
	}
	if err := s.srv.AddUser(context.Background(), "ivy", "ivy-password", server.Inspectors); err != nil {
		t.Fatal(err)
	}
	alice, node := s.bearer("alice"), s.bearer("node")
	aliceUI, bobUI, maxUI, ivyUI := s.sessionOf(t, "alice"), s.sessionOf(t, "bob"), s.sessionOf(t, "max"), s.sessionOf(t, "ivy")
	const evil = `<script>alert("x")</script>`
	a := alice.mustPost(t, "/task/task/", `{"image": "kolejka-test:latest", "args": ["echo", "`+strings.ReplaceAll(evil, `"`, `\"`)+`"]}`)
	key := a.json["task"].(map[string]any)["id"].(string)
	const evilTag = `<b onmouseover=alert(1)>gpu</b>`
	node.mustPost(t, "/queue/dequeue/", `{"concurency": 1, "limits": {}, "tags": ["`+evilTag+`"]}`)
	out, _ := node.upload(t, []byte("output: "+evil))
	evilName := `<img src=x onerror=alert(1)>`
	node.mustPost(t, "/task/result/", fmt.Sprintf(`{"id": %q, "result": 0, "status": "OK", "stdout": "stdout", "files": {"stdout": {"reference": %q}, %q: {"reference": %q}}}`,
		key, out, evilName, out))
	queued := alice.mustPost(t, "/task/task/", `{"image": "kolejka-test:latest", "args": ["true"]}`).json["task"].(map[string]any)["id"].(string)
	form := func(fields url.Values) []byte { return []byte(fields.Encode()) }
	formType := header("Content-Type", "application/x-www-form-urlencoded")
	unchanged := func(t *testing.T, r *hardening.Row, fn func()) {
		t.Helper()
		before := s.state(t)
		fn()
		if after := s.state(t); !after.equal(before) {
			t.Errorf("the server changed (tables %v): %v → %v", before.changed(after), before, after)
		}
		r.Observe("server %s unchanged", s.state(t))
	}

	t.Run("BU01", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BU01", "web UI: a client opens another user's task page, result file, cancel",
			"403 as the API answers it (GET /task/task/<key>/ → 403), 404 for an unknown task; nothing changed")
		unchanged(t, r, func() {
			for _, c := range []struct {
				method, path string
				want         int
			}{
				{"GET", "/ui/task/" + key + "/", 403},
				{"GET", "/ui/task/" + key + "/file/stdout", 403},
				{"POST", "/ui/task/" + queued + "/cancel/", 403},
				{"GET", "/ui/task/nosuchtask/", 404},
				{"GET", "/ui/tasks/?owner=alice", 403},
			} {
				a := bobUI.do(t, c.method, c.path, nil, formType)
				r.Observe("bob %s %s: %d", c.method, c.path, a.code)
				if a.code != c.want {
					t.Errorf("bob %s %s: %d, want %d", c.method, c.path, a.code, c.want)
				}
			}
			if a := s.bearer("bob").do(t, "GET", "/task/task/"+key+"/", nil); a.code != 403 {
				t.Errorf("the API answers bob %d", a.code)
			}
		})
	})

	t.Run("BU02", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BU02", "web UI: forged form posts (no CSRF token, a wrong one, a foreign Referer)",
			"403 CSRF verification failed before anything happens: cancel, clone, sign-out, queue pause, node drain; nothing changed")
		unchanged(t, r, func() {
			for _, c := range []struct {
				who  *apiClient
				path string
				mods []func(*http.Request)
			}{
				{aliceUI, "/ui/task/" + queued + "/cancel/", nil},
				{aliceUI, "/ui/task/" + queued + "/clone/", nil},
				{aliceUI, "/ui/logout/", nil},
				{maxUI, "/ui/queue/default/pause/", nil},
				{maxUI, "/ui/node/node/drain/", nil},
			} {
				for name, body := range map[string][]byte{
					"no token":    form(url.Values{}),
					"wrong token": form(url.Values{"csrfmiddlewaretoken": {strings.Repeat("w", 32)}}),
				} {
					a := c.who.do(t, "POST", c.path, body, formType, header("X-CSRFToken", ""))
					r.Observe("%s %s: %d", name, c.path, a.code)
					if a.code != 403 || !strings.Contains(string(a.body), "CSRF") {
						t.Errorf("%s, %s: %d %s, want 403 CSRF", c.path, name, a.code, short(string(a.body), 200))
					}
				}
				a := c.who.do(t, "POST", c.path, form(url.Values{"csrfmiddlewaretoken": {c.who.cookie("csrftoken")}}), formType,
					header("X-CSRFToken", ""), header("Referer", "http://evil.example/"))
				r.Observe("foreign Referer %s: %d", c.path, a.code)
				if a.code != 403 {
					t.Errorf("%s from a foreign page: %d, want 403", c.path, a.code)
				}
			}
		})
	})

	t.Run("BU03", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BU03", "web UI: HTML and script in a task's arguments, a result's file names and its output",
			"shown as text (escaped by html/template), never as markup; the file with such a name downloads byte for byte")
		a := aliceUI.do(t, "GET", "/ui/task/"+key+"/", nil)
		page := string(a.body)
		r.Observe("task page: %d, %d bytes", a.code, len(page))
		for _, raw := range []string{"<script>alert", "<img src=x"} {
			if strings.Contains(page, raw) {
				t.Errorf("the page holds %q unescaped", raw)
			}
		}
		for _, esc := range []string{"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", "output: &lt;script&gt;", "&lt;img src=x onerror=alert(1)&gt;"} {
			if !strings.Contains(page, esc) {
				t.Errorf("the page lacks %q", esc)
			}
		}
		f := aliceUI.do(t, "GET", "/ui/task/"+key+"/file/"+url.PathEscape(evilName), nil)
		r.Observe("file: %d %s", f.code, f.body)
		if f.code != 200 || string(f.body) != "output: "+evil {
			t.Errorf("download: %d %q", f.code, f.body)
		}
	})
	t.Run("BU04", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BU04", "web UI: nodes: a client opens them, a client or an inspector drains, HTML in a node's tags",
			"403 as GET /node/ and POST /node/<name>/drain/ answer (an inspector reads, drains nothing, sees no drain button); tags shown escaped; nothing changed")
		unchanged(t, r, func() {
			for _, c := range []struct {
				who          *apiClient
				name, method string
				path         string
				want         int
			}{
				{aliceUI, "alice", "GET", "/ui/nodes/", 403},
				{aliceUI, "alice", "GET", "/ui/node/node/", 403},
				{aliceUI, "alice", "POST", "/ui/node/node/drain/", 403},
				{ivyUI, "ivy", "POST", "/ui/node/node/drain/", 403},
				{ivyUI, "ivy", "GET", "/ui/nodes/", 200},
			} {
				var body []byte
				if c.method == "POST" {
					body = form(url.Values{"csrfmiddlewaretoken": {c.who.cookie("csrftoken")}})
				}
				a := c.who.do(t, c.method, c.path, body, formType)
				r.Observe("%s %s %s: %d", c.name, c.method, c.path, a.code)
				if a.code != c.want {
					t.Errorf("%s %s %s: %d, want %d", c.name, c.method, c.path, a.code, c.want)
				}
				if c.want == 200 && strings.Contains(string(a.body), "/drain/") {
					t.Errorf("the inspector's nodes page has a drain form")
				}
			}
			for _, p := range []string{"/ui/nodes/", "/ui/node/node/"} {
				page := string(maxUI.do(t, "GET", p, nil).body)
				if strings.Contains(page, "<b onmouseover") || !strings.Contains(page, "&lt;b onmouseover=alert(1)&gt;gpu&lt;/b&gt;") {
					t.Errorf("%s does not show the tag escaped", p)
				}
				r.Observe("%s: the tag escaped", p)
			}
		})
	})
}
