package daemon

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
)

// The server against real unix sockets, with callers that are real
// processes sending the exact bytes Kolejka's Python clients send.

// serve starts a Server of e's registry on a fresh socket.
// openConns is how many connections s holds open.
func (s *Server) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (e *env) serve(o ServerOptions) string {
	e.t.Helper()
	socket := filepath.Join(e.t.TempDir(), "socket")
	l, err := Listen(socket)
	if err != nil {
		e.t.Fatal(err)
	}
	if o.Logger == nil {
		o.Logger = testLogger(e.t)
	}
	srv := NewServer(e.r, o)
	e.srv = srv
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			e.t.Errorf("server Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			e.t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return socket
}

// kv is one key of a Python dict, in insertion order.
type kv struct {
	k string
	v any
}

// pyDumps is Python's json.dumps of a dict: keys in insertion order, ", "
// and ": " separators, floats in repr form.
func pyDumps(pairs ...kv) string {
	var b strings.Builder
	b.WriteString("{")
	for i, p := range pairs {
		if i > 0 {
			b.WriteString(", ")
		}
		k, _ := json.Marshal(p.k)
		b.Write(k)
		b.WriteString(": ")
		switch v := p.v.(type) {
		case string:
			s, _ := json.Marshal(v)
			b.Write(s)
		case int:
			b.WriteString(strconv.Itoa(v))
		case float64:
			s := strconv.FormatFloat(v, 'f', -1, 64)
			if !strings.ContainsAny(s, ".e") {
				s += ".0"
			}
			b.WriteString(s)
		case bool:
			b.WriteString(map[bool]string{true: "true", false: "false"}[v])
		case []kv:
			b.WriteString(pyDumps(v...))
		}
	}
	b.WriteString("}")
	return b.String()
}

// answer is a decoded answer, as Kolejka's client sees it.
type answer struct {
	status int
	fields map[string]json.RawMessage
	raw    string
}

func (a answer) str(key string) string {
	var s string
	_ = json.Unmarshal(a.fields[key], &s)
	return s
}

// wire makes the helper send the Python request for command with body.
func (p *helper) wire(socket, command, body string) answer {
	p.t.Helper()
	line := p.do("wire %s %s %s", socket, command, base64.StdEncoding.EncodeToString([]byte(body)))
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "resp" {
		p.t.Fatalf("helper %d: %s", p.pid, line)
	}
	status, _ := strconv.Atoi(f[1])
	b, _ := base64.StdEncoding.DecodeString(f[2])
	a := answer{status: status, raw: string(b)}
	if err := json.Unmarshal(b, &a.fields); err != nil {
		p.t.Fatalf("%s: answer %q is not a JSON object: %v", command, b, err)
	}
	return a
}

// wantOK checks a 200 with "status": "ok".
func wantOK(t testing.TB, what string, a answer) {
	t.Helper()
	if a.status != 200 || a.str("status") != "ok" {
		t.Fatalf("%s: %d %s, want 200 with status ok", what, a.status, a.raw)
	}
}

// wantStats checks a stats answer parses as Kolejka's stats.
func wantStats(t testing.TB, what string, a answer) spec.Stats {
	t.Helper()
	wantOK(t, what, a)
	delete(a.fields, "status")
	b, _ := json.Marshal(a.fields)
	st, err := spec.ParseStats(b, what)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return st
}

func ids(id, secret string) []kv { return []kv{{"session_id", id}, {"secret", secret}} }

// TestPythonWire drives every command with the bytes Kolejka's clients
// send: http.client through HTTPUnixConnection (Host: <socket>:None,
// Accept-Encoding: identity, the client's headers in its order, a
// json.dumps body), stage2's target without a slash, and runner.py's
// hand-written attach that echoes the "status" of the open answer.
func TestPythonWire(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	socket := e.serve(ServerOptions{})
	owner, worker := e.caller(), e.caller()

	a := owner.wire(socket, "GET", "")
	wantOK(t, "GET /", a)
	if string(a.fields["sessions"]) != "0" {
		t.Errorf("GET / sessions = %s, want 0", a.fields["sessions"])
	}
	// KolejkaObserverClient.open(): post('/open') with an empty dict.
	a = owner.wire(socket, "open", "{}")
	wantOK(t, "open", a)
	id, secret := a.str("session_id"), a.str("secret")
	if !isSessionID(id) || len(secret) < 32 {
		t.Fatalf("open answered session_id %q, secret %q", id, secret)
	}
	// KolejkaObserverClient.limits(KolejkaLimits): limits.dump() holds
	// sizes and times as strings, and always "gpus": 0.
	a = owner.wire(socket, "limits", pyDumps(kv{"limits", []kv{{"cpus", 1}, {"memory", "268435456b"}, {"pids", 100}, {"time", "60.0s"}, {"gpus", 0}}},
		kv{"session_id", id}, kv{"secret", secret}))
	wantOK(t, "limits (client)", a)
	// runner.py: the child attaches itself by hand, sending back the
	// whole open answer, "status" included.
	raw := pyDumps(kv{"session_id", id}, kv{"secret", secret}, kv{"status", "ok"})
	req := "POST /attach HTTP/1.1\r\nHost: kolejka-observer\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: " +
		strconv.Itoa(len(raw)) + "\r\n\r\n" + raw
	line := worker.do("raw %s %s", socket, base64.StdEncoding.EncodeToString([]byte(req)))
	resp, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(line, "raw "))
	status, _, body, err := readAnswer(bufio.NewReader(strings.NewReader(string(resp))))
	if err != nil || status != 200 || !strings.Contains(string(body), `"ok"`) {
		t.Fatalf("runner.py's attach: %v %d %s", err, status, body)
	}
	if got := pathOf(t, h, worker.pid); !strings.HasSuffix(got, groupPrefix+id) {
		t.Fatalf("after attach the worker is in %s", got)
	}
	// stage2: attach (no slash) from inside the session makes a
	// session below it; then limits with its numbers (time a float),
	// stats, detach, close, on one connection each as http.client does
	// once the server closes after each answer.
	a = worker.wire(socket, "!attach", "{}")
	wantOK(t, "stage2 attach", a)
	id2, secret2 := a.str("session_id"), a.str("secret")
	a = worker.wire(socket, "!limits", pyDumps(kv{"limits", []kv{{"memory", 134217728}, {"pids", 50}, {"time", 30.0}}},
		kv{"session_id", id2}, kv{"secret", secret2}))
	wantOK(t, "stage2 limits", a)
	worker.do("spin 20ms")
	st := wantStats(t, "stage2 stats", worker.wire(socket, "!stats", pyDumps(ids(id2, secret2)...)))
	if cpuOf(st) < 15*time.Millisecond {
		t.Errorf("stats CPU %v after a 20ms spin", cpuOf(st))
	}
	wantOK(t, "stage2 detach", worker.wire(socket, "!detach", pyDumps(ids(id2, secret2)...)))
	if got := pathOf(t, h, worker.pid); !strings.HasSuffix(logicalGroup(got), groupPrefix+id) {
		t.Errorf("after detach the worker is in %s, want back in the outer session", got)
	}
	final := wantStats(t, "stage2 close", worker.wire(socket, "!close", pyDumps(ids(id2, secret2)...)))
	if cpuOf(final) < cpuOf(st) {
		t.Errorf("final CPU %v below the earlier %v", cpuOf(final), cpuOf(st))
	}
	// FIX: stats needs the secret.
	if a := owner.wire(socket, "stats", pyDumps(kv{"session_id", id})); a.status != 403 {
		t.Errorf("stats without the secret: %d %s, want 403", a.status, a.raw)
	}
	// freeze, stats, thaw, kill, close by the owner, outside.
	worker.send("spinforever")
	// Spinning before the freeze, or "no CPU while frozen" proves nothing.
	running := cpuOf(wantStats(t, "stats", owner.wire(socket, "stats", pyDumps(ids(id, secret)...))))
	testenv.WaitFor(t, 10*time.Second, "the spinner uses CPU", func() bool {
		return cpuOf(wantStats(t, "stats", owner.wire(socket, "stats", pyDumps(ids(id, secret)...)))) > running+10*time.Millisecond
	})
	wantOK(t, "freeze", owner.wire(socket, "freeze", pyDumps(ids(id, secret)...)))
	s1 := wantStats(t, "stats", owner.wire(socket, "stats", pyDumps(ids(id, secret)...)))
	// The wait is the test: a frozen session uses no CPU however long.
	time.Sleep(100 * time.Millisecond)
	s2 := wantStats(t, "stats", owner.wire(socket, "stats", pyDumps(ids(id, secret)...)))
	if d := cpuOf(s2) - cpuOf(s1); d > 5*time.Millisecond {
		t.Errorf("frozen, the session used %v of CPU", d)
	}
	wantOK(t, "thaw", owner.wire(socket, "thaw", pyDumps(ids(id, secret)...)))
	wantOK(t, "kill", owner.wire(socket, "kill", pyDumps(ids(id, secret)...)))
	if status := worker.Wait(); !status.Signaled() {
		t.Errorf("after kill the worker ended with %v", status)
	}
	wantStats(t, "close", owner.wire(socket, "close", pyDumps(ids(id, secret)...)))
	a = owner.wire(socket, "GET", "")
	if string(a.fields["sessions"]) != "0" {
		t.Errorf("sessions after close = %s", a.fields["sessions"])
	}
	// POST / answers the count too, as in Kolejka.
	wantOK(t, "POST /", owner.wire(socket, "/", "{}"))
}

// TestRealPython runs Python's own http.client, as Kolejka's stage2 and
// observer client use it, against the server: attach without a slash,
// limits, stats, detach and close on one HTTPConnection without reading
// the detach answer (which only works because the server closes after each
// answer), and the client's open/stats/close.
func TestRealPython(t *testing.T) {
	h := requireHost(t)
	python, err := exec.LookPath("python3")
	if err != nil {
		testenv.Missing(t, "python3, to run Kolejka's own client code (apt-get install python3; TestPythonWire sends its bytes without it)")
	}
	e := newEnv(t, h, Options{})
	socket := e.serve(ServerOptions{})
	script := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(script, []byte(pythonClient), 0o644); err != nil {
		t.Fatal(err)
	}
	// The shell waits until it is in the callers group, then becomes
	// Python.
	sh := exec.Command("/bin/sh", "-c", `read x; exec "$0" "$@"`, python, script, socket)
	stdin, _ := sh.StdinPipe()
	var out strings.Builder
	sh.Stdout, sh.Stderr = &out, &out
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	g, err := h.Load(e.callers)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Add(sh.Process.Pid); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "go\n")
	stdin.Close()
	if err := sh.Wait(); err != nil {
		t.Fatalf("python client: %v\n%s", err, out.String())
	}
	t.Logf("python says:\n%s", out.String())
	var st spec.Stats
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &st); err != nil {
		t.Fatalf("python's last line is not stats: %v", err)
	}
	if e.r.Count() != 0 {
		t.Errorf("%d sessions left open by the python client", e.r.Count())
	}
}

// pythonClient calls the observer the ways Kolejka's Python code does
// (stage2's functions and KolejkaObserverClient), written afresh for this
// test with the same http.client calls.
const pythonClient = `
import http.client, json, socket, sys

class UnixConnection(http.client.HTTPConnection):
    def _get_hostport(self, host, port):
        return (self.socket_path, None)
    def __init__(self, socket_path):
        self.socket_path = socket_path
        super().__init__(self, socket_path)
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.socket_path)

path = sys.argv[1]
headers = {'Content-Type': 'application/json; charset=utf-8', 'Content-Length': '2'}
conn = UnixConnection(path)
conn.request('POST', 'attach', '{}', headers)
with conn.getresponse() as r:
    s = json.loads(r.read().decode('utf-8'))
params = {'limits': {'memory': 268435456, 'pids': 64, 'time': 20.0}, 'session_id': s['session_id'], 'secret': s['secret']}
body = bytes(json.dumps(params), 'utf-8')
headers['Content-Length'] = str(len(body))
conn.request('POST', 'limits', body, headers)
with conn.getresponse() as r:
    assert json.loads(r.read().decode('utf-8'))['status'] == 'ok'
conn.close()
x = 0
for i in range(200000):
    x += i
body = bytes(json.dumps({'session_id': s['session_id'], 'secret': s['secret']}), 'utf-8')
headers['Content-Length'] = str(len(body))
conn = UnixConnection(path)
conn.request('POST', 'stats', body, headers)
with conn.getresponse() as r:
    stats = json.loads(r.read().decode('utf-8'))
conn.request('POST', 'detach', body, headers)
conn.getresponse()
conn.request('POST', 'close', body, headers)
conn.getresponse()
conn.close()
assert stats['status'] == 'ok', stats
print('stage2 ok, cpu', stats['cpu'])

# KolejkaObserverClient: post() with session and secret; reads every answer.
conn = UnixConnection(path)
def post(path, params):
    body = bytes(json.dumps(params), 'utf-8')
    conn.request('POST', path, body, {'Content-Type': 'application/json; charset=utf-8', 'Content-Length': len(body)})
    with conn.getresponse() as r:
        return json.loads(r.read().decode('utf-8'))
o = post('/open', {})
st = post('/stats', {'session_id': o['session_id'], 'secret': o['secret']})
c = post('/close', {'session_id': o['session_id'], 'secret': o['secret']})
assert o['status'] == st['status'] == c['status'] == 'ok'
del st['status']
print(json.dumps(st))
`

// TestHostileCallers: a guessed id, a right id and secret from another
// container, /adopt from a container's root, are all 403, over the wire.
func TestHostileCallers(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	socket := e.serve(ServerOptions{})
	owner := e.caller()
	a := owner.wire(socket, "open", "{}")
	wantOK(t, "open", a)
	id, secret := a.str("session_id"), a.str("secret")

	// A guessed id (well-formed) and a malformed one: 403, not 404.
	for _, guess := range []string{newID(), "nonsense", ""} {
		if a := owner.wire(socket, "stats", pyDumps(ids(guess, secret)...)); a.status != 403 && !(guess == "" && a.status == 400) {
			t.Errorf("stats of id %q: %d %s, want 403", guess, a.status, a.raw)
		}
	}
	// Another container (cgroup and pid namespace) with the right id and
	// secret.
	stranger := e.contained(e.group("another-container"))
	for _, cmd := range []string{"stats", "attach", "limits", "freeze", "kill", "close"} {
		if a := stranger.wire(socket, cmd, pyDumps(ids(id, secret)...)); a.status != 403 || a.str("error") != "forbidden" {
			t.Errorf("%s from another container: %d %s, want 403", cmd, a.status, a.raw)
		}
	}
	// A container's root may not adopt, even a process of its own.
	inside := e.contained(e.callers)
	adopt := pyDumps(kv{"pid", inside.pid}, kv{"path", e.root + "/adopted"})
	if a := inside.wire(socket, "adopt", adopt); a.status != 403 {
		t.Errorf("adopt from a container's root: %d %s, want 403", a.status, a.raw)
	}
	// Host root may.
	a = owner.wire(socket, "adopt", pyDumps(kv{"pid", inside.pid}, kv{"path", e.root + "/adopted"}, kv{"limits", []kv{{"pids", 100}}}))
	wantOK(t, "adopt by host root", a)
	if got := pathOf(t, h, inside.pid); got != e.root+"/adopted" {
		t.Errorf("the adopted process is in %s", got)
	}
	// The adopted process may not touch its own session.
	if a2 := inside.wire(socket, "limits", pyDumps(kv{"limits", []kv{{"pids", 1000}}}, kv{"session_id", a.str("session_id")}, kv{"secret", a.str("secret")})); a2.status != 403 {
		t.Errorf("limits by the adopted process: %d %s, want 403", a2.status, a2.raw)
	}
	if a := owner.wire(socket, "stats", pyDumps(ids(id, secret)...)); a.status != 200 {
		t.Errorf("the owner's own stats after all that: %d %s", a.status, a.raw)
	}
	wantStats(t, "close adopted", owner.wire(socket, "close", pyDumps(ids(a.str("session_id"), a.str("secret"))...)))
}

// rawRequest sends bytes from the test process and returns the status of
// the answer (0 if the server closed without one) and its body.
func rawRequest(t testing.TB, socket, req string) (int, string) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	status, _, body, err := readAnswer(bufio.NewReader(c))
	if err != nil {
		return 0, err.Error()
	}
	return status, string(body)
}

// TestMalformedRequests: what no client should send is answered with a
// 4xx and a message, never a crash; the server goes on serving. None of
// these makes a session, so the test process sends them itself.
func TestMalformedRequests(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	socket := e.serve(ServerOptions{MaxBodyBytes: 1024, MaxHeaderBytes: 2048})
	post := func(target, body string, extra ...string) string {
		return "POST " + target + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json; charset=utf-8\r\n" +
			strings.Join(extra, "") + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	for _, c := range []struct {
		name, req string
		status    int
	}{
		{"bad JSON", post("/stats", `{"session_id": `), 400},
		{"not an object", post("/stats", `[1, 2]`), 400},
		{"null", post("/stats", `null`), 400},
		{"two values", post("/stats", `{} {}`), 400},
		{"id a number", post("/stats", `{"session_id": 5, "secret": "x"}`), 400},
		{"secret a list", post("/stats", `{"session_id": "x", "secret": []}`), 400},
		{"bad limits", post("/limits", `{"session_id": "x", "secret": "y", "limits": {"memory": "64MiB"}}`), 400},
		{"unknown limit", post("/limits", `{"session_id": "x", "secret": "y", "limits": {"memmory": 1}}`), 400},
		{"pid a string", post("/adopt", `{"pid": "1", "path": "/x"}`), 400},
		{"missing session_id", post("/kill", `{"secret": "y"}`), 400},
		{"no Content-Length: an empty body", "POST /stats HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"chunked", "POST /open HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411},
		{"huge body", "POST /open HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n", 413},
		{"bad Content-Length", "POST /open HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400},
		{"two Content-Lengths", "POST /open HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400},
		{"huge headers", "POST /open HTTP/1.1\r\nX: " + strings.Repeat("a", 10000) + "\r\n\r\n", 431},
		{"header without colon", "POST /open HTTP/1.1\r\nnonsense\r\n\r\n", 400},
		{"bad request line", "HELLO\r\n\r\n", 400},
		{"HTTP/2", "POST /open HTTP/2.0\r\n\r\n", 505},
		{"unknown command", post("/explode", `{}`), 404},
		{"unknown GET", "GET /stats HTTP/1.1\r\n\r\n", 404},
		{"PUT", "PUT /open HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405},
		{"not JSON", "POST /stats HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}", 415},
		{"latin-1", "POST /stats HTTP/1.1\r\nContent-Type: application/json; charset=latin-1\r\nContent-Length: 2\r\n\r\n{}", 415},
		{"expect", "POST /stats HTTP/1.1\r\nExpect: magic\r\nContent-Length: 2\r\n\r\n{}", 417},
	} {
		status, body := rawRequest(t, socket, c.req)
		if status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, body, c.status)
			continue
		}
		var fields map[string]string
		if err := json.Unmarshal([]byte(body), &fields); err != nil || fields["status"] != "error" || fields["message"] == "" {
			t.Errorf("%s: body %s, want a JSON error with a message", c.name, body)
		}
	}
	// 100-continue is honoured.
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
	br := bufio.NewReader(c)
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Errorf("Expect: 100-continue answered %q", line)
	}
	br.ReadString('\n')
	io.WriteString(c, "{}")
	if status, _, _, err := readAnswer(br); err != nil || status != 200 {
		t.Errorf("after 100 Continue: %d, %v", status, err)
	}
	if status, body := rawRequest(t, socket, "GET / HTTP/1.1\r\n\r\n"); status != 200 {
		t.Errorf("after all that GET / = %d %s", status, body)
	}
}

// TestKeepAlive: a client asking for keep-alive gets several answers on
// one connection, and pipelined requests are answered in order; without
// asking, the connection closes after one answer.
func TestKeepAlive(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	socket := e.serve(ServerOptions{})
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	get := "GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
	io.WriteString(c, get+get+"GET / HTTP/1.1\r\n\r\n")
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		status, header, _, err := readAnswer(br)
		if err != nil || status != 200 {
			t.Fatalf("answer %d: %d, %v", i, status, err)
		}
		want := "keep-alive"
		if i == 2 {
			want = "close"
		}
		if header["connection"] != want {
			t.Errorf("answer %d: Connection %q, want %q", i, header["connection"], want)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close the server sent %q, %v", n, err)
	}
}

// TestSlowloris: a request that trickles in loses its connection while it
// still trickles (ReadTimeout bounds the request's head, not each read),
// and others are served meanwhile.
func TestSlowloris(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	socket := e.serve(ServerOptions{ReadTimeout: 300 * time.Millisecond})
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		_, _ = io.Copy(io.Discard, c)
		closed <- time.Since(start)
	}()
	// A head that never ends, a byte every 20ms, for at most 30s: far
	// longer than ReadTimeout, each byte well within it.
	head := []byte("POST /open HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	for i := 0; i < 1500; i++ {
		b := byte('a')
		if i < len(head) {
			b = head[i]
		}
		if _, err := c.Write([]byte{b}); err != nil {
			// The server closed the connection: a write can see that
			// before the reader above does.
			select {
			case d := <-closed:
				t.Logf("the slow connection was closed after %v", d)
				return
			case <-time.After(10 * time.Second):
				t.Fatalf("a write failed (%v) but the connection did not close", err)
			}
		}
		if status, _ := rawRequest(t, socket, "GET / HTTP/1.1\r\n\r\n"); status != 200 {
			t.Errorf("GET / while a slow client trickles: %d", status)
		}
		select {
		case d := <-closed:
			t.Logf("the slow connection was closed after %v", d)
			return
		case <-time.After(20 * time.Millisecond): // the trickle's pace is the test
		}
	}
	t.Fatal("a slow client kept its connection while it trickled")
}

// TestFlood: 1000 connections that send nothing; the server holds at most
// MaxConns of them (the longest waiting goes when a new one comes), answers
// a real client promptly all along, and its goroutines come back down.
func TestFlood(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	const maxConns = 64
	socket := e.serve(ServerOptions{MaxConns: maxConns, IdleTimeout: time.Minute, ReadTimeout: time.Minute})
	base := runtime.NumGoroutine()
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := 0; i < 1000; i++ {
		c, err := net.Dial("unix", socket)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		flood = append(flood, c)
		if i%250 == 249 {
			start := time.Now()
			if status, body := rawRequest(t, socket, "GET / HTTP/1.1\r\n\r\n"); status != 200 {
				t.Fatalf("GET / after %d idle connections: %d %s", i+1, status, body)
			}
			t.Logf("GET / after %d idle connections: %v", i+1, time.Since(start))
		}
	}
	testenv.WaitFor(t, 10*time.Second, "the server holds at most MaxConns connections", func() bool {
		return runtime.NumGoroutine() <= base+maxConns+10
	})
	// The evicted connections were closed by the server.
	evicted := 0
	for _, c := range flood[:900] {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			evicted++
		}
	}
	if evicted < 800 {
		t.Errorf("only %d of the first 900 idle connections were closed", evicted)
	}
	for _, c := range flood {
		c.Close()
	}
	flood = nil
	testenv.WaitFor(t, 10*time.Second, "goroutines come back down", func() bool { return runtime.NumGoroutine() <= base+5 })
	if status, _ := rawRequest(t, socket, "GET / HTTP/1.1\r\n\r\n"); status != 200 {
		t.Errorf("GET / after the flood: %d", status)
	}
}

// TestListen: the socket is 0777, a stale socket file is replaced, a live
// observer's is not, and a non-socket is never removed.
func TestListen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "observer")
	socket := filepath.Join(dir, "socket")
	l, err := Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(socket)
	if err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("socket mode %v, %v; want 0777", fi.Mode(), err)
	}
	if _, err := Listen(socket); err == nil || !strings.Contains(err.Error(), "another observer") {
		t.Errorf("Listen on a live socket = %v, want refused", err)
	}
	// A stale one: the file stays when the listener goes without unlinking.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l, err = Listen(socket)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l.Close()
	plain := filepath.Join(dir, "file")
	os.WriteFile(plain, []byte("x"), 0o644)
	if _, err := Listen(plain); err == nil {
		t.Error("Listen replaced a regular file")
	}
}

// TestCommandOf: targets as Kolejka's server reads them.
func TestCommandOf(t *testing.T) {
	for target, want := range map[string]string{
		"attach": "attach", "/attach": "attach", "/attach/": "attach", "/ATTACH": "attach",
		"/stats?x=1": "stats", "http://kolejka-observer/open": "open", "/": "", "//": "", "http://h": "",
	} {
		if got := commandOf(target); got != want {
			t.Errorf("commandOf(%q) = %q, want %q", target, got, want)
		}
	}
}

// TestPythonRequestBytes pins pythonRequest to what Python 3.11's
// http.client sent through Kolejka's HTTPUnixConnection (captured).
func TestPythonRequestBytes(t *testing.T) {
	got := string(pythonRequest("/tmp/pycap/sock", "POST", "attach", []byte("{}")))
	want := "POST attach HTTP/1.1\r\nHost: /tmp/pycap/sock:None\r\nAccept-Encoding: identity\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	body := pyDumps(kv{"limits", []kv{{"memory", 1024}}}, kv{"session_id", "ab"}, kv{"secret", "cd"})
	if body != `{"limits": {"memory": 1024}, "session_id": "ab", "secret": "cd"}` {
		t.Errorf("pyDumps = %s", body)
	}
	if got := pyDumps(kv{"time", 30.0}, kv{"x", 0.5}); got != `{"time": 30.0, "x": 0.5}` {
		t.Errorf("pyDumps floats = %s", got)
	}
	if got := string(pythonRequest("/s", "GET", "/", nil)); got != "GET / HTTP/1.1\r\nHost: /s:None\r\nAccept-Encoding: identity\r\n\r\n" {
		t.Errorf("GET = %q", got)
	}
}
