package hardening_test

// Nodes as the server knows them (extension "nodes"): a processor or a
// client that reaches for another node's drain, or a node declaring a
// capacity that is not one, is refused, and nothing changes (which nodes
// are drained: the state a request may change; stateOf leaves out what a
// node's own requests note of it). A dequeue's room_wake is a boolean,
// and only the node's own results end its wait.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/tests/hardening"
)

func TestBadInputNodes(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	node, node2, alice := s.bearer("node"), s.bearer("node2"), s.bearer("alice")
	// Both nodes have been seen.
	for _, c := range []*apiClient{node, node2} {
		if a := c.do(t, "POST", "/queue/dequeue/", []byte(`{"concurency": 1, "limits": {}, "tags": []}`)); a.status() != "OK" {
			t.Fatalf("dequeue: %v", a)
		}
	}
	t.Run("BN01", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BN01", "nodes: a node drains another node, or itself; a client drains a node or lists the nodes",
			"403 naming who may; no node drained; a node's list shows only itself")
		unchanged(t, s, r, func() answer { return node2.do(t, "POST", "/node/node/drain/", nil) }, 403, "", []string{"only managers"})
		unchanged(t, s, r, func() answer { return node.do(t, "POST", "/node/node/drain/", nil) }, 403, "", []string{"only managers"})
		unchanged(t, s, r, func() answer { return alice.do(t, "POST", "/node/node/drain/", nil) }, 403, "", nil)
		unchanged(t, s, r, func() answer { return alice.do(t, "GET", "/node/", nil) }, 403, "", nil)
		a := node2.do(t, "GET", "/node/", nil)
		r.Observe("node2's list: %v", a)
		if a.status() != "OK" || strings.Contains(a.text(), `"name":"node"`) || !strings.Contains(a.text(), `"node2"`) {
			t.Errorf("node2's list of nodes: %v; want itself only", a)
		}
	})
	t.Run("BN02", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BN02", "nodes: a dequeue whose capacity is not a set of limits (memory \"lots\", cpus -1)",
			"FAIL naming capacity; no task handed out; nothing changed")
		for _, body := range []string{
			`{"concurency": 1, "limits": {}, "tags": [], "capacity": {"memory": "lots"}}`,
			`{"concurency": 1, "limits": {}, "tags": [], "capacity": {"cpus": -1}}`,
		} {
			unchanged(t, s, r, func() answer { return node.do(t, "POST", "/queue/dequeue/", []byte(body)) }, 200, "FAIL", []string{"capacity"})
		}
	})
	t.Run("BN04", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BN04", "nodes: a dequeue whose room_wake is not a boolean (\"yes\", 1, a list)",
			"FAIL naming room_wake; no task handed out; nothing changed")
		for _, body := range []string{
			`{"concurency": 1, "limits": {}, "tags": [], "wait": 1, "room_wake": "yes"}`,
			`{"concurency": 1, "limits": {}, "tags": [], "wait": 1, "room_wake": 1}`,
			`{"concurency": 1, "limits": {}, "tags": [], "wait": 1, "room_wake": [null]}`,
		} {
			unchanged(t, s, r, func() answer { return node.do(t, "POST", "/queue/dequeue/", []byte(body)) }, 200, "FAIL", []string{"room_wake"})
		}
	})
	t.Run("BN05", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BN05", "nodes: node2 posts a result for a task node holds, every 100 ms while node's dequeue waits with room_wake (2 s)",
			"403 naming the assignment, every time; nothing changed; node's dequeue is not ended by them (it answers at its wait)")
		a := alice.mustPost(t, "/task/task/", `{"image": "kolejka-test:latest", "args": ["true"], "requires": ["bn05"]}`)
		key, _ := a.json["task"].(map[string]any)["id"].(string)
		if got := node.mustPost(t, "/queue/dequeue/", `{"concurency": 1, "limits": {}, "tags": ["bn05"]}`); !strings.Contains(got.text(), key) {
			t.Fatalf("node's dequeue: %v; want task %s", got, key)
		}
		const wait = 2 * time.Second
		ended := make(chan time.Duration, 1)
		start := time.Now()
		go func() {
			node.do(t, "POST", "/queue/dequeue/", []byte(`{"concurency": 1, "limits": {}, "tags": ["bn05"], "wait": 2, "room_wake": true}`))
			ended <- time.Since(start)
		}()
		post := func() answer {
			return node2.do(t, "POST", "/task/result/", []byte(fmt.Sprintf(`{"id": %q, "result": 0}`, key)))
		}
		unchanged(t, s, r, post, 403, "", []string{"not assigned to you"})
		// Again and again while the poll waits, so that some posts come
		// after it listens for node's results whatever the scheduling.
		posts := 1
		var d time.Duration
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
	poll:
		for {
			select {
			case d = <-ended:
				break poll
			case <-tick.C:
				if a := post(); a.code != 403 {
					t.Fatalf("node2's post of node's result: %v", a)
				}
				posts++
			}
		}
		r.Observe("%d refused posts; node's dequeue answered %v after it began (its wait: %v)", posts, d.Round(time.Millisecond), wait)
		if d < wait {
			t.Errorf("node's dequeue answered after %v, before its wait of %v: node2's refused post ended it", d, wait)
		}
	})
}

// A node configured to offer no memory, or no processes, could take no
// task: kolejka-foreman refuses to start, naming the resource, rather than
// wait for work forever asking for none.
func TestBadInputNodeCapacity(t *testing.T) {
	r := caseOf(t, hardening.BadInput, "BN03", "kolejka-foreman: [foreman] memory = 0, or pids = 0 (a capacity no task fits)",
		"exit 2 before taking work, naming the resource (\"the node offers memory 0\"); no task taken")
	g := newGrid(t, "", "")
	key := g.Put(gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["true"], "limits": {"time": "10s"}}`))
	for _, c := range []struct{ line, says string }{
		{"memory = 0", "the node offers memory 0"},
		{"pids = 0", "the node offers pids 0"},
	} {
		dir := t.TempDir()
		conf := filepath.Join(dir, "foreman.conf")
		text := fmt.Sprintf("[client]\nserver = http://%s\ntoken = %s\n\n[foreman]\ntemp = %s\nruntime = runc\nauto_tags = no\n%s\n",
			g.Addr, g.Tokens["a"], filepath.Join(dir, "node"), c.line)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, filepath.Join(bins(t), "kolejka-foreman"), "--config-file", conf).CombinedOutput()
		cancel()
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		msg := strings.TrimSpace(string(out))
		r.Observe("%s: exit %d: %s", c.line, code, msg[strings.LastIndexByte(msg, '\n')+1:])
		if code != 2 || !strings.Contains(msg, c.says) {
			t.Errorf("%s: exit %d (%v), output %q; want exit 2 saying %q", c.line, code, err, msg, c.says)
		}
	}
	if assigned := g.Admin("lstask", "--assigned"); strings.Contains(assigned, key) {
		t.Errorf("the task %s was taken: lstask --assigned says %q", key, assigned)
	}
}

// Two kolejka-foremen on one processor account, which docs/grid-node.md
// says never to do: each one's result posts end the other's room_wake
// dequeue too. They slow each other at most; every task still runs once
// and gets its result.
func TestBadInputSharedAccount(t *testing.T) {
	r := caseOf(t, hardening.BadInput, "BN06", "nodes: two kolejka-foremen share one processor account (so each one's results end the other's room_wake dequeue); 20 trivial tasks",
		"every task gets its result (OK) within a minute, handed out once (attempts 1); both foremen take tasks")
	g := newGrid(t, "", "")
	first := g.startForeman("a")
	conf, err := os.ReadFile(first.Conf)
	if err != nil {
		t.Fatal(err)
	}
	twin := &gridtest.Node{Name: "a (twin)", Temp: filepath.Join(g.Dir, "node-a-twin"), Log: filepath.Join(g.Dir, "foreman-a-twin.log"),
		Conf: filepath.Join(g.Dir, "foreman-a-twin.conf")}
	text := strings.Replace(string(conf), "temp = "+first.Temp+"\n", "temp = "+twin.Temp+"\n", 1)
	if text == string(conf) {
		t.Fatalf("no temp line in %s", first.Conf)
	}
	if err := os.WriteFile(twin.Conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	twin.Argv = []string{filepath.Join(bins(t), "kolejka-foreman"), "--config-file", twin.Conf}
	g.Nodes[twin.Name] = twin // stopped with the grid
	twin.P = gridtest.Start(t, "kolejka-foreman "+twin.Name, twin.Log, twin.Argv...)
	if !twin.P.Logged("foreman running", 30*time.Second) {
		t.Fatalf("the twin foreman did not start; log:\n%s", gridtest.Tail(twin.Log))
	}
	var keys []string
	for range 20 {
		keys = append(keys, g.Put(gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["true"], "limits": {"time": "10s"}}`)))
	}
	start := time.Now()
	for _, key := range keys {
		_, res, err := g.waitResult(key, time.Minute)
		if err != nil || res.Status != spec.StatusOK {
			t.Fatalf("task %s: %v %v", key, res, err)
		}
		if a := g.TaskInfo(key)["attempts"]; fmt.Sprint(a) != "1" {
			t.Errorf("task %s handed out %v times", key, a)
		}
	}
	took := func(n *gridtest.Node) int {
		log, _ := os.ReadFile(n.Log)
		return strings.Count(string(log), `msg="task taken"`)
	}
	r.Observe("20 results in %v; tasks taken: %d by one foreman, %d by its twin", time.Since(start).Round(time.Millisecond), took(first), took(twin))
	if took(first) == 0 || took(twin) == 0 {
		t.Errorf("tasks taken: %d and %d; want both foremen to take some", took(first), took(twin))
	}
}
