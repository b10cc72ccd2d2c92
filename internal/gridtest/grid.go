package gridtest

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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/spec"
)

// Grid is one kolejka-server process over a data folder, its users (client
// alice, processors a and b: one account per node) and kolejka-foreman
// nodes, all real processes on loopback, stopped at the end of the test
// with their logs shown if it failed.
type Grid struct {
	T          testing.TB
	Bin        string // the commands (testenv.Binaries)
	Dir        string
	Data       string
	Addr       string
	ServerArgs []string
	Server     *Proc
	Tokens     map[string]string
	Nodes      map[string]*Node
	Alice      *client.Client
	// OutputLimit is the foremen's output_limit.
	OutputLimit int64
	// NodeImages gives a node its own image store folder instead of the
	// shared one holding the test image (set before its first start).
	NodeImages map[string]string
	// Replicas are the servers of a grid of several (GridOptions.Replicas),
	// each on its own address and data folder, behind Proxy at Addr;
	// Server is the first.
	Replicas []*Replica
	Proxy    *Proxy
}

// Replica is one kolejka-server process of a grid of several.
type Replica struct {
	Addr, Data string
	P          *Proc
	// Wrap goes in front of its command (ip netns exec: a host of its
	// own).
	Wrap []string
}

// GridOptions shape a grid; the zero value is a server on a free loopback
// port over a new data folder.
type GridOptions struct {
	Addr        string   // "" picks a free loopback port
	Data        string   // "" is a folder of the test's
	ServerArgs  []string // extra `serve` flags
	OutputLimit int64    // the foremen's output_limit; 0 is 1 MiB
	// ServerConf is the servers' (and admin commands') kolejka.conf.
	ServerConf string
	// Replicas > 1 starts that many servers (one database and blob store
	// in ServerConf, each its own data folder) behind a round-robin Proxy.
	Replicas int
	// ReplicaHosts puts replica i on ReplicaHosts[i], a network namespace
	// of a Net, listening on its address there (port 8080).
	ReplicaHosts []*Host
}

// NewGrid makes the users and starts the server with the commands in bin.
func NewGrid(t testing.TB, bin string, o GridOptions) *Grid {
	t.Helper()
	g := &Grid{T: t, Bin: bin, Dir: t.TempDir(), Data: o.Data, Addr: o.Addr, ServerArgs: o.ServerArgs,
		Tokens: map[string]string{}, Nodes: map[string]*Node{}, OutputLimit: o.OutputLimit, NodeImages: map[string]string{}}
	if g.Data == "" {
		g.Data = filepath.Join(g.Dir, "data")
	}
	if g.OutputLimit == 0 {
		g.OutputLimit = 1 << 20
	}
	if err := os.WriteFile(filepath.Join(g.Dir, "empty.conf"), []byte(o.ServerConf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, u := range [][]string{{"alice", "--clients"}, {"a", "--processors"}, {"b", "--processors"}} {
		g.Admin("adduser", u[1], u[0], u[0]+"-password")
		g.Tokens[u[0]] = strings.TrimSpace(g.Admin("token", u[0]))
	}
	t.Cleanup(g.StopAll)
	if o.Replicas > 1 {
		var addrs []string
		for i := range o.Replicas {
			r := &Replica{Data: filepath.Join(g.Dir, fmt.Sprintf("data-%d", i))}
			if i < len(o.ReplicaHosts) {
				// A namespace of its own: every port there is free.
				r.Addr, r.Wrap = net.JoinHostPort(o.ReplicaHosts[i].Addr, "8080"), o.ReplicaHosts[i].Wrap()
			} else {
				r.Addr = FreeAddr(t, "127.0.0.1")
			}
			if i == 0 {
				r.Data = g.Data
			}
			g.Replicas = append(g.Replicas, r)
			addrs = append(addrs, r.Addr)
			g.StartReplica(i)
		}
		g.Server = g.Replicas[0].P
		g.Proxy = NewProxy(t, addrs)
		g.Addr = g.Proxy.Addr()
	} else {
		if g.Addr == "" {
			g.Addr = FreeAddr(t, "127.0.0.1")
		}
		g.StartServer()
	}
	conf := fmt.Sprintf("[client]\nserver = http://%s\ntoken = %s\n", g.Addr, g.Tokens["alice"])
	if err := os.WriteFile(filepath.Join(g.Dir, "alice.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	g.Alice = g.Client("alice")
	return g
}

// FreeAddr is a free TCP address on host.
func FreeAddr(t testing.TB, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Client is a Go client signed in as user.
func (g *Grid) Client(user string) *client.Client {
	g.T.Helper()
	c, err := client.New(context.Background(), client.Config{Server: "http://" + g.Addr, Token: g.Tokens[user]})
	if err != nil {
		g.T.Fatalf("client %s: %v", user, err)
	}
	return c
}

// Admin runs an admin command of kolejka-server on the data folder and
// returns its output.
func (g *Grid) Admin(args ...string) string {
	g.T.Helper()
	argv := append([]string{"--config-file", filepath.Join(g.Dir, "empty.conf"), "--data", g.Data}, args...)
	cmd := exec.Command(filepath.Join(g.Bin, "kolejka-server"), argv...)
	cmd.Env = ChildEnv()
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			g.T.Fatalf("kolejka-server %v: %v: %s", args, err, ee.Stderr)
		}
		g.T.Fatalf("kolejka-server %v: %v", args, err)
	}
	return string(out)
}

// StartServer serves the data folder on the grid's address and waits until
// it answers.
func (g *Grid) StartServer() {
	g.T.Helper()
	g.Server = g.startServer(g.Data, g.Addr, filepath.Join(g.Dir, "server.log"))
}

// StartReplica (re)starts replica i of a grid of several and waits until
// it answers.
func (g *Grid) StartReplica(i int) {
	g.T.Helper()
	r := g.Replicas[i]
	r.P = g.startServer(r.Data, r.Addr, filepath.Join(g.Dir, fmt.Sprintf("server-%d.log", i)), r.Wrap...)
}

func (g *Grid) startServer(data, addr, log string, wrap ...string) *Proc {
	g.T.Helper()
	argv := append(append([]string{}, wrap...), filepath.Join(g.Bin, "kolejka-server"), "--config-file", filepath.Join(g.Dir, "empty.conf"),
		"--data", data, "serve", "--listen", addr)
	argv = append(argv, g.ServerArgs...)
	p := Start(g.T, "kolejka-server", log, argv...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if !p.Running() || time.Now().After(deadline) {
			g.T.Fatalf("the server did not come up (%v); log:\n%s", err, Tail(p.Log))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Node is one kolejka-foreman process.
type Node struct {
	Name string
	Conf string
	Temp string
	Argv []string
	Log  string
	P    *Proc
}

// StartForeman starts (or restarts, with the same folder and settings) node
// name: its own account, folder and tag node:<name>, the runc runtime over
// the shared image store, two tasks at a time. wrap goes in front of the
// command (taskset, nsenter); extra are more [foreman] lines.
func (g *Grid) StartForeman(name string, wrap []string, extra ...string) *Node {
	g.T.Helper()
	n := g.Nodes[name]
	if n == nil {
		n = &Node{Name: name, Temp: filepath.Join(g.Dir, "node-"+name), Log: filepath.Join(g.Dir, "foreman-"+name+".log")}
		n.Conf = filepath.Join(g.Dir, "foreman-"+name+".conf")
		images := g.NodeImages[name]
		if images == "" {
			images = Images(g.T)
		}
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
`, g.Addr, g.Tokens[name], n.Temp, images, g.OutputLimit, name)
		conf += strings.Join(extra, "\n") + "\n"
		if err := os.WriteFile(n.Conf, []byte(conf), 0o600); err != nil {
			g.T.Fatal(err)
		}
		n.Argv = append(append([]string{}, wrap...), filepath.Join(g.Bin, "kolejka-foreman"), "--config-file", n.Conf)
		g.Nodes[name] = n
	}
	n.P = Start(g.T, "kolejka-foreman "+name, n.Log, n.Argv...)
	if !n.P.Logged("foreman running", 30*time.Second) {
		g.T.Fatalf("foreman %s did not start; log:\n%s", name, Tail(n.Log))
	}
	return n
}

// StopAll ends every process: foremen by two SIGTERMs (kill their tasks,
// hand them back), then the server; whatever does not end is killed. If
// the test failed, the logs are shown.
func (g *Grid) StopAll() {
	for _, n := range g.Nodes {
		if n.P != nil && n.P.Running() {
			n.P.Signal(syscall.SIGTERM)
			time.Sleep(50 * time.Millisecond)
			n.P.Signal(syscall.SIGTERM)
			if _, ok := n.P.Wait(20 * time.Second); !ok {
				g.T.Errorf("foreman %s did not stop", n.Name)
				n.P.Kill9()
			}
		}
	}
	servers := []*Proc{g.Server}
	if len(g.Replicas) > 0 {
		servers = servers[:0]
		for _, r := range g.Replicas {
			servers = append(servers, r.P)
		}
	}
	if g.Proxy != nil {
		defer g.Proxy.Close() // after the servers: nodes and clients went through it
	}
	for _, p := range servers {
		if p != nil && p.Running() {
			p.Signal(syscall.SIGTERM)
			if _, ok := p.Wait(20 * time.Second); !ok {
				p.Kill9()
			}
		}
	}
	if g.T.Failed() {
		for _, p := range servers {
			if p != nil {
				g.T.Logf("server log %s:\n%s", p.Log, Tail(p.Log))
			}
		}
		for _, n := range g.Nodes {
			g.T.Logf("foreman %s log:\n%s", n.Name, Tail(n.Log))
		}
	}
}

// KolejkaClient runs kolejka-client as alice: stdout, stderr, exit code.
func (g *Grid) KolejkaClient(ctx context.Context, args ...string) (string, string, int) {
	return RunCommand(ctx, filepath.Join(g.Bin, "kolejka-client"), append([]string{"--config-file", filepath.Join(g.Dir, "alice.conf")}, args...)...)
}

// RunCommand runs a command to its end in ChildEnv: stdout, stderr, exit
// code (-1 if it could not start, the reason then in stderr, or was
// killed).
func RunCommand(ctx context.Context, name string, args ...string) (string, string, int) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = ChildEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		stderr.WriteString(err.Error())
	}
	return stdout.String(), stderr.String(), code
}

// Put submits a task folder with `kolejka-client task put` and returns its
// key.
func (g *Grid) Put(dir string) string {
	g.T.Helper()
	out, errOut, code := g.KolejkaClient(context.Background(), "task", "put", dir)
	if code != 0 {
		g.T.Fatalf("task put %s: exit %d: %s", dir, code, errOut)
	}
	return strings.TrimSpace(out)
}

// TaskInfo is the server's answer about a task (GET /task/task/<key>/):
// "resolved", "attempts", "assignee".
func (g *Grid) TaskInfo(key string) map[string]any {
	g.T.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+g.Addr+"/task/task/"+key+"/", nil)
	req.Header.Set("Authorization", "Bearer "+g.Tokens["alice"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.T.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		g.T.Fatalf("task %s: %v", key, err)
	}
	return m
}

// WriteTask makes a task folder from its JSON and files given as name,
// content pairs (names may hold folders).
func WriteTask(t testing.TB, taskJSON string, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(taskJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(files); i += 2 {
		p := filepath.Join(dir, files[i])
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(files[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
