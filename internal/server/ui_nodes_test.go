package server_test

// Tests of the web UI's nodes: the list and a node's page with what the
// node's dequeue said, health by the injected clock, drain by a manager
// (CSRF and the API's rule), and who sees what.

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
)

// nodeRow is the nodes table's row of node name ("" when absent).
func nodeRow(body, name string) string {
	return regexp.MustCompile(`(?s)<tr data-node="` + regexp.QuoteMeta(name) + `">.*?</tr>`).FindString(body)
}

// healthOf is the health a row or page shows.
var healthCell = regexp.MustCompile(`class="health h-(\w+)">(\w+)<`)

func healthOf(t *testing.T, html string) string {
	t.Helper()
	m := healthCell.FindStringSubmatch(html)
	if m == nil || m[1] != m[2] {
		t.Fatalf("no health shown in\n%s", html)
	}
	return m[1]
}

func TestUINodes(t *testing.T) {
	clk := newClock()
	e := newEnv(t, withClock(clk), func(c *server.Config) { c.LeaseTime = 60 * time.Second })
	e.standardUsers()
	a, n := e.tok("alice"), e.tok("node")
	const evilTag = `<script>alert("t")</script>`
	t0 := clk.Now()

	running := a.submit(task(nil), nil)
	got := ids(dequeue(t, n, map[string]any{"concurency": 2, "limits": map[string]any{"cpus": 3, "memory": "2G"},
		"capacity": map[string]any{"cpus": 4, "memory": "8G"}, "tags": []string{"gpu", evilTag}}))
	if !slices.Equal(got, []string{running}) {
		t.Fatalf("the node got %v", got)
	}

	max := e.browser()
	max.signIn("max")
	p := max.get("ui/nodes/")
	row := nodeRow(p.body, "node")
	if p.code != 200 || row == "" {
		t.Fatalf("nodes page: %d\n%s", p.code, p.body)
	}
	for _, want := range []string{"cpus=4 memory=8G", "cpus=3 memory=2G", "<code>gpu</code>", "&lt;script&gt;",
		`href="/kolejka/ui/task/` + running + `/"`, `<td class="drained">no</td>`, "0 s ago", `/node/node/drain/`} {
		if !strings.Contains(row, want) {
			t.Errorf("the node's row lacks %q:\n%s", want, row)
		}
	}
	if strings.Contains(p.body, "<script>alert") {
		t.Errorf("the nodes page holds the tag unescaped")
	}
	if healthOf(t, row) != "ok" {
		t.Errorf("health after the dequeue: %s", row)
	}
	// A node's page says the same, escaped too.
	np := max.get("ui/node/node/")
	if np.code != 200 || healthOf(t, np.body) != "ok" || !strings.Contains(np.body, "cpus=4 memory=8G") ||
		!strings.Contains(np.body, `/kolejka/ui/task/`+running+`/`) || strings.Contains(np.body, "<script>alert") {
		t.Errorf("node page: %d\n%s", np.code, np.body)
	}
	if p := max.get("ui/node/nobody/"); p.code != http.StatusNotFound {
		t.Errorf("an unknown node's page: %d", p.code)
	}

	// Health by the clock: ok under 40 s, warn under 60 s, crit beyond; on
	// the list, the node's page and the overview's panel alike.
	for _, c := range []struct {
		advance time.Duration
		health  string
		counts  string
	}{{39 * time.Second, "ok", "1 ok"}, {time.Second, "warn", "1 warn"}, {20 * time.Second, "crit", "1 crit"}} {
		clk.Advance(c.advance)
		if h := healthOf(t, nodeRow(max.get("ui/nodes/").body, "node")); h != c.health {
			t.Errorf("list %v after the dequeue: %s, want %s", clk.Now().Sub(t0), h, c.health)
		}
		if h := healthOf(t, max.get("ui/node/node/").body); h != c.health {
			t.Errorf("node page: %s, want %s", h, c.health)
		}
		ov := max.get("ui/")
		if !strings.Contains(ov.body, `<span class="h-`+c.health+`">`+c.counts+`</span>`) || !strings.Contains(ov.body, `data-node="node"`) {
			t.Errorf("overview's node panel lacks %q:\n%s", c.counts, ov.body)
		}
	}
	if row := nodeRow(max.get("ui/nodes/").body, "node"); !strings.Contains(row, "1 min ago") {
		t.Errorf("last contact after 60 s:\n%s", row)
	}

	// A forged drain (no token) is refused and changes nothing.
	if p := max.post("ui/node/node/drain/", url.Values{}, false); p.code != http.StatusForbidden || !strings.Contains(p.body, "CSRF") {
		t.Fatalf("drain without the token: %d %s", p.code, p.body)
	}
	if d := nodesOf(t, e.tok("max"))["node"].Drained; d {
		t.Fatalf("the forged post drained the node")
	}
	// The inspector sees the nodes but no drain button, and a drain post
	// is refused as the API refuses it.
	ivy := e.browser()
	ivy.signIn("ivy")
	ip := ivy.get("ui/nodes/")
	if ip.code != 200 || nodeRow(ip.body, "node") == "" || strings.Contains(ip.body, "/drain/") || !strings.Contains(ivy.get("ui/").body, `id="nodepanel"`) {
		t.Errorf("inspector's nodes page: %d\n%s", ip.code, ip.body)
	}
	if p := ivy.post("ui/node/node/drain/", url.Values{}, true); p.code != http.StatusForbidden || !strings.Contains(p.body, "only managers drain") {
		t.Errorf("inspector drains: %d %s", p.code, p.body)
	}
	if p := ivy.get("ui/node/node/"); p.code != 200 || strings.Contains(p.body, "/drain/") || !strings.Contains(p.body, `href="/kolejka/ui/nodes/"`) {
		t.Errorf("inspector's node page: %d", p.code)
	}
	// A client: 403 as GET /node/ answers, no panel, no link.
	alice := e.browser()
	alice.signIn("alice")
	if p := alice.get("ui/nodes/"); p.code != http.StatusForbidden {
		t.Errorf("client opens the nodes page: %d", p.code)
	}
	if p := alice.get("ui/node/node/"); p.code != http.StatusForbidden {
		t.Errorf("client opens a node's page: %d", p.code)
	}
	if p := alice.post("ui/node/node/drain/", url.Values{}, true); p.code != http.StatusForbidden {
		t.Errorf("client drains: %d", p.code)
	}
	if ov := alice.get("ui/"); ov.code != 200 || strings.Contains(ov.body, "nodepanel") || strings.Contains(ov.body, "ui/nodes/") {
		t.Errorf("a client's overview shows nodes")
	}
	// A processor sees itself only, and drains nothing.
	n2 := e.browser()
	n2.signIn("node2")
	if p := n2.get("ui/nodes/"); p.code != 200 || nodeRow(p.body, "node2") == "" || nodeRow(p.body, "node") != "" {
		t.Errorf("node2's nodes page: %d\n%s", p.code, p.body)
	}
	if ov := n2.get("ui/"); !strings.Contains(ov.body, `href="/kolejka/ui/nodes/"`) || !strings.Contains(ov.body, `data-node="node2"`) || strings.Contains(ov.body, `data-node="node"`) {
		t.Errorf("node2's overview:\n%s", ov.body)
	}
	if p := n2.get("ui/node/node/"); p.code != http.StatusForbidden {
		t.Errorf("node2 opens node's page: %d", p.code)
	}
	if nodesOf(t, e.tok("max"))["node"].Drained {
		t.Fatalf("a refused post drained the node")
	}

	// The manager's drain: the next dequeue gets nothing; undrain from the
	// node's page hands out again and goes back there.
	if p := max.post("ui/node/node/drain/", url.Values{}, true); p.code != http.StatusSeeOther || p.location != "/kolejka/ui/nodes/" {
		t.Fatalf("drain: %d to %q %s", p.code, p.location, p.body)
	}
	if row := nodeRow(max.get("ui/nodes/").body, "node"); !strings.Contains(row, `<td class="drained">drained</td>`) || !strings.Contains(row, "/node/node/undrain/") {
		t.Errorf("after drain the row is\n%s", row)
	}
	waiting := a.submit(task(nil), nil)
	if got := dequeue(t, n, map[string]any{}); len(got) != 0 {
		t.Fatalf("a node drained through the UI got %v", ids(got))
	}
	if p := max.post("ui/node/node/undrain/", url.Values{"back": {"node"}}, true); p.code != http.StatusSeeOther || p.location != "/kolejka/ui/node/node/" {
		t.Fatalf("undrain: %d to %q", p.code, p.location)
	}
	if got := ids(dequeue(t, n, map[string]any{})); !slices.Equal(got, []string{waiting}) {
		t.Errorf("undrained, the node got %v, want [%s]", got, waiting)
	}
	if p := max.post("ui/node/nobody/drain/", url.Values{}, true); p.code != http.StatusNotFound {
		t.Errorf("drain an unknown node: %d", p.code)
	}
}
