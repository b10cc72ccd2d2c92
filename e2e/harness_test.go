package e2e

// The harness: binaries built once per test run, a runc image store with
// the test image, and grids of real processes — one kolejka-server on a
// loopback port over a data folder, kolejka-foreman nodes, and
// kolejka-client runs — with their logs shown when a test fails.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/testenv"
)

// OutputLimit is the foremen's output_limit: small, so that output_flood
// ends quickly at exactly this many bytes.
const OutputLimit = 1 << 20

func TestMain(m *testing.M) {
	code := m.Run()
	gridtest.Cleanup()
	os.Exit(code)
}

// bins returns the folder with every command, after checking that the
// machine can run a grid (root, cgroups, the test image).
func bins(t testing.TB) string {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.TestImage(t)
	return testenv.Binaries(t)
}

// grid is one server with its data folder and port, its users, and nodes.
type grid struct {
	t          testing.TB
	bin        string
	dir        string
	data       string
	addr       string
	serverArgs []string
	server     *gridtest.Proc
	tokens     map[string]string
	nodes      map[string]*node
	alice      *client.Client
}

// newGrid starts a server (with extra serve flags) and makes its users:
// alice (client), and processors a and b (one account per node).
func newGrid(t testing.TB, serverArgs ...string) *grid {
	t.Helper()
	g := &grid{t: t, bin: bins(t), dir: t.TempDir(), serverArgs: serverArgs, tokens: map[string]string{}, nodes: map[string]*node{}}
	g.data = filepath.Join(g.dir, "data")
	if err := os.WriteFile(filepath.Join(g.dir, "empty.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, u := range [][]string{{"alice", "--clients"}, {"a", "--processors"}, {"b", "--processors"}} {
		g.admin("adduser", u[1], u[0], u[0]+"-password")
		g.tokens[u[0]] = strings.TrimSpace(g.admin("token", u[0]))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	ln.Close()
	g.startServer()
	t.Cleanup(g.stopAll)
	conf := fmt.Sprintf("[client]\nserver = http://%s\ntoken = %s\n", g.addr, g.tokens["alice"])
	if err := os.WriteFile(filepath.Join(g.dir, "alice.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	g.alice, err = client.New(context.Background(), client.Config{Server: "http://" + g.addr, Token: g.tokens["alice"]})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// admin runs an admin command of kolejka-server on the data folder.
func (g *grid) admin(args ...string) string {
	g.t.Helper()
	argv := append([]string{"--config-file", filepath.Join(g.dir, "empty.conf"), "--data", g.data}, args...)
	cmd := exec.Command(filepath.Join(g.bin, "kolejka-server"), argv...)
	cmd.Env = gridtest.ChildEnv()
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			g.t.Fatalf("kolejka-server %v: %v: %s", args, err, ee.Stderr)
		}
		g.t.Fatalf("kolejka-server %v: %v", args, err)
	}
	return string(out)
}

// startServer serves the data folder on the grid's port and waits until it
// answers.
func (g *grid) startServer() {
	g.t.Helper()
	argv := append([]string{filepath.Join(g.bin, "kolejka-server"), "--config-file", filepath.Join(g.dir, "empty.conf"),
		"--data", g.data, "serve", "--listen", g.addr}, g.serverArgs...)
	g.server = gridtest.Start(g.t, "kolejka-server", filepath.Join(g.dir, "server.log"), argv...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + g.addr + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if !g.server.Running() || time.Now().After(deadline) {
			g.t.Fatalf("the server did not come up (%v); log:\n%s", err, gridtest.Tail(g.server.Log))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pin is the taskset core list of the i-th node: its own core, as if each
// node were a machine; "" (no pinning) on a machine with too few cores or
// without taskset.
func pin(i int) string {
	if _, err := exec.LookPath("taskset"); err != nil {
		return ""
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return ""
	}
	var cores []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			cores = append(cores, c)
		}
	}
	if len(cores) < 2 || i >= len(cores) {
		return ""
	}
	return strconv.Itoa(cores[i])
}

// node is one kolejka-foreman process.
type node struct {
	name string
	conf string
	temp string
	argv []string
	log  string
	p    *gridtest.Proc
}

// startForeman starts node name (its account, its folder, tag node:<name>)
// with the runc runtime; cores, if set, is the taskset list it is pinned
// to (its tasks then run on those cores only). extra adds [foreman] lines.
func (g *grid) startForeman(name, cores string, extra ...string) *node {
	g.t.Helper()
	n := g.nodes[name]
	if n == nil {
		n = &node{name: name, temp: filepath.Join(g.dir, "node-"+name), log: filepath.Join(g.dir, "foreman-"+name+".log")}
		n.conf = filepath.Join(g.dir, "foreman-"+name+".conf")
		conf := fmt.Sprintf(`[client]
server = http://%s
token = %s

[foreman]
temp = %s
runtime = runc
images = %s
output_limit = %d
concurency = 2
interval = 1
tags = node:%s
`, g.addr, g.tokens[name], n.temp, gridtest.Images(g.t), OutputLimit, name)
		conf += strings.Join(extra, "\n") + "\n"
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			g.t.Fatal(err)
		}
		n.argv = []string{filepath.Join(g.bin, "kolejka-foreman"), "--config-file", n.conf}
		if cores != "" {
			n.argv = append([]string{"taskset", "-c", cores}, n.argv...)
		}
		g.nodes[name] = n
	}
	n.p = gridtest.Start(g.t, "kolejka-foreman "+name, n.log, n.argv...)
	if !n.p.Logged("foreman running", 30*time.Second) {
		g.t.Fatalf("foreman %s did not start; log:\n%s", name, gridtest.Tail(n.log))
	}
	return n
}

// stopAll ends every process: foremen by two SIGTERMs (kill their tasks,
// hand them back), then the server; whatever does not end is killed. On
// failure the logs are shown.
func (g *grid) stopAll() {
	for _, n := range g.nodes {
		if n.p != nil && n.p.Running() {
			n.p.Signal(syscall.SIGTERM)
			time.Sleep(50 * time.Millisecond)
			n.p.Signal(syscall.SIGTERM)
			if _, ok := n.p.Wait(20 * time.Second); !ok {
				g.t.Errorf("foreman %s did not stop", n.name)
				n.p.Kill9()
			}
		}
	}
	if g.server != nil && g.server.Running() {
		g.server.Signal(syscall.SIGTERM)
		if _, ok := g.server.Wait(20 * time.Second); !ok {
			g.server.Kill9()
		}
	}
	if g.t.Failed() {
		g.t.Logf("server log:\n%s", gridtest.Tail(g.server.Log))
		for _, n := range g.nodes {
			g.t.Logf("foreman %s log:\n%s", n.name, gridtest.Tail(n.log))
		}
	}
}

// kolejkaClient runs kolejka-client as alice; it returns stdout, stderr and
// the exit code.
func (g *grid) kolejkaClient(ctx context.Context, args ...string) (string, string, int) {
	argv := append([]string{"--config-file", filepath.Join(g.dir, "alice.conf")}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(g.bin, "kolejka-client"), argv...)
	cmd.Env = gridtest.ChildEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return stdout.String(), stderr.String(), code
}

// put submits a task folder with kolejka-client task put and returns its key.
func (g *grid) put(dir string) string {
	g.t.Helper()
	out, errOut, code := g.kolejkaClient(context.Background(), "task", "put", dir)
	if code != 0 {
		g.t.Fatalf("task put %s: exit %d: %s", dir, code, errOut)
	}
	return strings.TrimSpace(out)
}

// taskInfo is the server's answer about a task (GET /task/task/<key>/):
// "resolved", "attempts", "assignee".
func (g *grid) taskInfo(key string) map[string]any {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+g.addr+"/task/task/"+key+"/", nil)
	req.Header.Set("Authorization", "Bearer "+g.tokens["alice"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		g.t.Fatalf("task %s: %v", key, err)
	}
	return m
}

// result waits for a task's result and downloads it into a new folder.
func (g *grid) result(key string, within time.Duration) (string, error) {
	dir := filepath.Join(g.t.TempDir(), "result")
	_, err := g.alice.ResultGet(context.Background(), key, dir, within)
	return dir, err
}

// writeTask makes a task folder.
func writeTask(t testing.TB, taskJSON string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kolejka_task.json"), []byte(taskJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// processes counts live processes whose command line contains s.
func processes(s string) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(strings.ReplaceAll(string(data), "\x00", " "), s) {
			n++
		}
	}
	return n
}
