package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server"
)

// `kolejka-server node`: ls shows a node that dequeued (table and JSON,
// as GET /node/); drain and undrain change it; a name that is not a
// processor exits 2 naming it and changes nothing.
func TestNodeCommands(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KOLEJKA_SERVER_CONFIG_FILE", filepath.Join(dir, "none.conf"))
	os.WriteFile(filepath.Join(dir, "none.conf"), nil, 0o644)
	data := filepath.Join(dir, "data")
	cmd := func(want int, args ...string) (string, string) {
		t.Helper()
		code, out, errOut := runStderr(t, append([]string{"--data", data}, args...)...)
		if code != want {
			t.Fatalf("%v: exit %d, want %d; stdout %q stderr %q", args, code, want, out, errOut)
		}
		return out, errOut
	}
	ls := func() map[string]api.Node {
		t.Helper()
		out, _ := cmd(0, "node", "ls", "--json")
		var nodes []api.Node
		if err := json.Unmarshal([]byte(out), &nodes); err != nil {
			t.Fatalf("node ls --json: %v: %q", err, out)
		}
		m := map[string]api.Node{}
		for _, n := range nodes {
			m[n.Name] = n
		}
		return m
	}
	cmd(0, "adduser", "--clients", "alice", "pw")
	cmd(0, "adduser", "--processors", "node", "pw")
	if got := ls(); len(got) != 0 {
		t.Fatalf("nodes before any came: %+v", got)
	}

	// The node dequeues once, through the API over the same folder.
	srv, err := server.OpenAdmin(server.Config{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := srv.NewToken(context.Background(), "node")
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	req, _ := http.NewRequest("POST", ts.URL+"/queue/dequeue/",
		strings.NewReader(`{"concurency": 1, "limits": {"cpus": 2, "memory": "1G"}, "tags": ["gpu"], "capacity": {"cpus": 4}}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("dequeue: %v %v", resp, err)
	}
	resp.Body.Close()
	ts.Close()
	srv.Close()

	n := ls()["node"]
	if n.Health != api.HealthOK || n.Drained || len(n.Tags) != 1 || n.Tags[0] != "gpu" || n.Capacity.CPUs == nil || *n.Capacity.CPUs != 4 {
		t.Errorf("node ls --json: %+v", n)
	}
	out, _ := cmd(0, "node", "ls")
	for _, want := range []string{"NAME", "HEALTH", "node", "ok", "cpus=2 memory=1G", "cpus=4", "gpu"} {
		if !strings.Contains(out, want) {
			t.Errorf("node ls does not show %q: %q", want, out)
		}
	}

	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"node", "drain", "nobody"}, `NAME: no node (processor) named "nobody"`},
		{[]string{"node", "drain", "alice"}, `NAME: no node (processor) named "alice"`},
		{[]string{"node", "undrain", "nobody"}, `NAME: no node (processor) named "nobody"`},
		{[]string{"node", "drain"}, "NAME"},
		{[]string{"node", "ls", "x"}, "node ls takes no arguments"},
	} {
		if _, errOut := cmd(2, c.args...); !strings.Contains(errOut, c.says) {
			t.Errorf("%v: %q does not say %q", c.args, errOut, c.says)
		}
	}
	if got := ls(); len(got) != 1 || got["node"].Drained {
		t.Errorf("refused drains changed the nodes: %+v", got)
	}

	if out, _ := cmd(0, "node", "drain", "node"); !strings.Contains(out, "Node 'node' drained") {
		t.Errorf("drain said %q", out)
	}
	if !ls()["node"].Drained {
		t.Error("node not drained")
	}
	cmd(0, "node", "undrain", "node")
	if ls()["node"].Drained {
		t.Error("node still drained")
	}
}
