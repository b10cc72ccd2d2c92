package daemon

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// The test binary doubles as every process the tests need besides
// themselves (testenv.RunHelpers): callers of the observer (a session's
// caller is a process, and the test process must never be moved into a
// session), the processes measured in sessions (helperMain), and a
// separately running daemon for the restart test (runTestDaemon).
const (
	observerHelper = "observer"
	daemonHelper   = "daemon" // its argument: socket,state,sweep
)

// testRootName is the group every test's cgroups live in (testRootBase);
// TestMain checks that no session cgroup is left anywhere after the tests.
const testRootName = "kolejka-test-observer"

// testRootBase is where the tests make their groups: testRootName below
// the group delegated to this process (the root of the hierarchy without
// one), once this process's own processes have left the way, as a
// service's would (cgroup.Hierarchy.MakeRoom).
func testRootBase(t testing.TB, h *cgroup.Hierarchy) string {
	t.Helper()
	d, err := h.Delegation(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	base := path.Join(d, testRootName)
	if _, err := h.MakeRoom(base, os.Getpid(), "supervisor"); err != nil {
		t.Fatal(err)
	}
	return base
}

func TestMain(m *testing.M) {
	testenv.RunHelpers(testenv.Helpers{
		observerHelper: func(string) int { return helperMain() },
		daemonHelper:   runTestDaemon,
	})
	before := leftovers()
	code := m.Run()
	if leaks := newLeftovers(before, leftovers()); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: session cgroups left behind by the tests: %v\n", leaks)
		code = 1
	}
	os.Exit(code)
}

// leftovers lists every cgroup folder named like a session's (or a
// procsLeaf, or a test root) on this host, v1 hierarchies and cgroup2
// mounts alike.
func leftovers() map[string]bool {
	out := map[string]bool{}
	if os.Geteuid() != 0 {
		return out
	}
	mounts, err := mountinfo.GetMounts(func(i *mountinfo.Info) (bool, bool) {
		return i.FSType != "cgroup" && i.FSType != "cgroup2", false
	})
	if err != nil {
		return out
	}
	for _, m := range mounts {
		_ = filepath.WalkDir(m.Mountpoint, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil //nolint:nilerr // a group gone meanwhile (removed by tests beside) is no leftover
			}
			name := d.Name()
			if strings.HasPrefix(name, groupPrefix) || name == testRootName {
				out[p] = true
				if name != testRootName {
					return filepath.SkipDir
				}
			}
			return nil
		})
	}
	return out
}

// otherTestBase is the group cmd/kolejka-observer's tests, which may run
// at the same time, make their sessions in.
const otherTestBase = "/kolejka-test-observer-cmd"

func newLeftovers(before, after map[string]bool) []string {
	var out []string
	for p := range after {
		if !before[p] && !strings.HasSuffix(p, "/"+testRootName) && !strings.Contains(p, otherTestBase+"/") {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// requireHost returns the host's cgroup hierarchy if this process can make
// groups in it (root); otherwise the test skips, or fails under
// KOLEJKA_REQUIRE_PRIVILEGED=1.
func requireHost(t testing.TB) *cgroup.Hierarchy {
	t.Helper()
	testenv.RequireRoot(t)
	h, err := cgroup.Host()
	if err != nil {
		testenv.Missing(t, "no usable cgroup hierarchy: %v", err)
	}
	return h
}

// requireHybrid returns the kernel's controller-less cgroup2 of a hybrid
// host (/sys/fs/cgroup/unified), where the v2 code paths (moves, procsLeaf,
// cgroup.freeze, cgroup.kill, cpu.stat) run for real. On a v2 host the
// other tests cover them and this skips.
func requireHybrid(t testing.TB) *cgroup.Hierarchy {
	t.Helper()
	host := requireHost(t)
	if host.Mode() == cgroup.Unified {
		t.Skip("the host runs cgroup v2: the host tests cover the v2 code paths")
	}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup2"))
	if err != nil || len(mounts) == 0 {
		t.Skip("pure cgroup v1 host: no cgroup2 mount to test the v2 code paths on")
	}
	return cgroup.NewUnified(mounts[0].Mountpoint)
}

func randomName() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// env is one test's cgroups and registry: a fresh root group, a group the
// callers start in, and a registry over the hierarchy.
type env struct {
	t       testing.TB
	h       *cgroup.Hierarchy
	root    string // the test's root group
	callers string // the group helpers start in
	r       *Registry
	srv     *Server // the last one serve started
}

// newEnv makes the test's groups and a registry (opts may be zero). At
// cleanup the registry shuts down and the groups go, processes included.
func newEnv(t testing.TB, h *cgroup.Hierarchy, opts Options) *env {
	t.Helper()
	e := &env{t: t, h: h, root: testRootBase(t, h) + "/" + randomName()}
	e.callers = e.root + "/callers"
	if _, err := h.Create(e.callers, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeGroup(t, h, e.root) })
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	r, err := NewRegistry(h, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return e
}

// removeGroup deletes a test's group tree and, if no other test uses it,
// the shared base.
func removeGroup(t testing.TB, h *cgroup.Hierarchy, p string) {
	if g, err := h.Load(p); err == nil {
		if err := g.Delete(); err != nil {
			t.Errorf("cleanup of %s: %v", p, err)
		}
	}
	base := path.Dir(p)
	if g, err := h.Load(base); err == nil && path.Base(base) == testRootName {
		if kids, err := h.Children(base); err == nil && len(kids) == 0 {
			_ = g.Delete()
		}
	}
}

// group makes a sub-group of the test's root.
func (e *env) group(name string) string {
	e.t.Helper()
	p := path.Join(e.root, name)
	if _, err := e.h.Create(p, nil); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// testLogger sends the registry's log to the test's.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// helper is a running helper process: it obeys commands on its stdin, one
// per line, and answers on its stdout (see helperMain).
type helper struct {
	*testenv.Helper
	t   testing.TB
	pid int
}

// startHelper starts a helper and, if group is not "", moves it into that
// cgroup before it does anything. It is killed at cleanup.
func (e *env) startHelper(group string) *helper {
	e.t.Helper()
	p := startHelperWith(e.t, nil)
	if !hostRoot(p.pid, -1) {
		e.t.Fatalf("the test's helpers should run as host root")
	}
	if group != "" {
		// Where a process of group forks into: on v2, once sessions were
		// made below it, its processes live in its procsLeaf.
		g, err := e.r.home(group)
		if err != nil {
			e.t.Fatal(err)
		}
		if err := g.Add(p.pid); err != nil {
			e.t.Fatal(err)
		}
	}
	return p
}

// caller is a helper in the test's callers group.
func (e *env) caller() *helper { return e.startHelper(e.callers) }

// contained is a helper like a task container's process: in cgroup group,
// root, but in a pid namespace of its own (CLONE_NEWPID), so not host
// root. The helpers of the tests run as root, which may act on any
// session; this one may not.
func (e *env) contained(group string) *helper {
	e.t.Helper()
	p := startHelperWith(e.t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID})
	if hostRoot(p.pid, -1) {
		e.t.Fatalf("a helper in a new pid namespace counts as host root")
	}
	g, err := e.r.home(group) // as in startHelper
	if err != nil {
		e.t.Fatal(err)
	}
	if err := g.Add(p.pid); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// startHelperWith starts a helper with extra process attributes and waits
// for its "ready".
func startHelperWith(t testing.TB, sys *syscall.SysProcAttr) *helper {
	t.Helper()
	h := testenv.StartHelper(t, observerHelper, "", func(cmd *exec.Cmd) { cmd.SysProcAttr = sys })
	if got := h.Line(); got != "ready" {
		t.Fatalf("helper said %q, want ready", got)
	}
	return &helper{Helper: h, t: t, pid: h.Pid()}
}

// do sends a command line and returns the answer line.
func (p *helper) do(format string, args ...any) string {
	p.t.Helper()
	p.Send(fmt.Sprintf(format, args...))
	return p.Line()
}

// send sends a command line without waiting for an answer.
func (p *helper) send(format string, args ...any) {
	p.t.Helper()
	p.Send(fmt.Sprintf(format, args...))
}

// helperMain is the helper process. Commands:
//
//	wire SOCKET COMMAND BODY64  the request Python's http.client sends (see
//	                            pythonRequest), on a new connection
//	                            → "resp STATUS BODY64"
//	raw SOCKET BYTES64          those bytes, then read until the server
//	                            closes → "raw RESPONSE64"
//	spin DURATION               use that much CPU → "spun NANOSECONDS"
//	spinforever                 use CPU until killed
//	alloc BYTES                 map and touch that much → "allocated"
//	fork N                      start N sleepers → "forked OK FAILED"
//	cpus                        → "cpus " + Cpus_allowed_list
//	exec ARGS...                execve(2) ARGS
//	goclient SOCKET ACTION ARGS one call of the Go Client (one client per
//	                            socket, kept) → "ok JSON64" or "err KIND MSG64"
//	benchwire SOCKET WHAT N     N rounds of a command through the Go Client
//	                            → "took NANOSECONDS"
//	exit                        exit 0
func helperMain() int {
	clients := map[string]*observer.Client{}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	fmt.Println("ready")
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "wire":
			var body []byte
			if len(f) > 3 {
				body, _ = base64.StdEncoding.DecodeString(f[3])
			}
			status, answer, err := pythonPost(f[1], f[2], body)
			if err != nil {
				fmt.Println("error", err)
				continue
			}
			fmt.Println("resp", status, base64.StdEncoding.EncodeToString(answer))
		case "raw":
			req, _ := base64.StdEncoding.DecodeString(f[2])
			answer, err := rawExchange(f[1], req)
			if err != nil {
				fmt.Println("error", err)
				continue
			}
			fmt.Println("raw", base64.StdEncoding.EncodeToString(answer))
		case "spin":
			d, _ := time.ParseDuration(f[1])
			fmt.Println("spun", int64(spinFor(d)))
		case "spinforever":
			for {
				spin(1 << 20)
			}
		case "alloc":
			n, _ := strconv.Atoi(f[1])
			b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				fmt.Println("error", err)
				continue
			}
			for i := 0; i < n; i += os.Getpagesize() {
				b[i] = 1
			}
			fmt.Println("allocated")
		case "fork":
			n, _ := strconv.Atoi(f[1])
			ok, failed := 0, 0
			for i := 0; i < n; i++ {
				c := exec.Command("sleep", "1000")
				if c.Start() != nil {
					failed++
				} else {
					ok++
				}
			}
			fmt.Println("forked", ok, failed)
		case "cpus":
			b, _ := os.ReadFile("/proc/self/status")
			for _, l := range strings.Split(string(b), "\n") {
				if v, found := strings.CutPrefix(l, "Cpus_allowed_list:"); found {
					fmt.Println("cpus", strings.TrimSpace(v))
				}
			}
		case "exec":
			path, err := exec.LookPath(f[1])
			if err == nil {
				err = unix.Exec(path, f[1:], os.Environ())
			}
			fmt.Println("error", err)
		case "goclient":
			fmt.Println(goClientDo(clients, f[1], f[2], f[3:]))
		case "benchwire":
			n, _ := strconv.Atoi(f[3])
			fmt.Println(benchWire(f[1], f[2], n))
		case "exit":
			return 0
		default:
			fmt.Println("error unknown helper command", f[0])
		}
	}
	return 0
}

var sink uint64

func spin(n int) {
	x := sink
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	sink = x
}

// spinFor uses d of CPU (by this process's own account) and returns how
// much exactly.
func spinFor(d time.Duration) time.Duration {
	before := cpuTime()
	for cpuTime()-before < d {
		spin(1 << 16)
	}
	return cpuTime() - before
}

func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pythonRequest is, byte for byte, what Python's http.client sends for
// conn.request('POST', target, body, headers) through Kolejka's
// HTTPUnixConnection (kolejka/common/http_socket.py), as Kolejka's
// observer client and stage2 call it (captured from Python 3.11):
//
//	POST /attach HTTP/1.1
//	Host: /var/run/kolejka/observer/socket:None   (the socket path as host, port None)
//	Accept-Encoding: identity
//	Content-Type: application/json; charset=utf-8
//	Content-Length: 2
//
//	{}
//
// target is used as given: stage2 sends "attach", without the slash. A GET
// has neither Content-Type nor Content-Length.
func pythonRequest(socket, method, target string, body []byte) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s:None\r\nAccept-Encoding: identity\r\n", method, target, socket)
	if method == "POST" {
		fmt.Fprintf(&b, "Content-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return []byte(b.String())
}

// pythonPost sends pythonRequest on a new connection and reads the answer
// as http.client does (status line, headers, Content-Length body); the
// caller decodes it as cgi.parse_header and json.loads would. A command
// written "GET" is a GET of /; one written with a leading "!" is sent
// without the slash, as stage2 does.
func pythonPost(socket, command string, body []byte) (int, []byte, error) {
	method, target := "POST", "/"+command
	switch {
	case command == "GET":
		method, target = "GET", "/"
	case command == "/":
		target = "/"
	case strings.HasPrefix(command, "!"):
		target = command[1:]
	}
	c, err := net.Dial("unix", socket)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testenv.HelperTimeout))
	if _, err := c.Write(pythonRequest(socket, method, target, body)); err != nil {
		return 0, nil, err
	}
	return readPythonAnswer(bufio.NewReader(c))
}

// readPythonAnswer reads an HTTP/1.x answer as http.client's HTTPResponse
// does, and checks its Content-Type as Kolejka's client parses it
// (cgi.parse_header: application/json; charset=utf-8).
func readPythonAnswer(br *bufio.Reader) (int, []byte, error) {
	status, header, body, err := readAnswer(br)
	if err != nil {
		return 0, nil, err
	}
	if ct := header["content-type"]; ct != "application/json; charset=utf-8" {
		return 0, nil, fmt.Errorf("Content-Type %q", ct)
	}
	return status, body, nil
}

// readAnswer reads one HTTP/1.x answer with a Content-Length body.
func readAnswer(br *bufio.Reader) (int, map[string]string, []byte, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, nil, nil, err
	}
	f := strings.SplitN(strings.TrimRight(line, "\r\n"), " ", 3)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return 0, nil, nil, fmt.Errorf("status line %q", line)
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, nil, nil, fmt.Errorf("status line %q", line)
	}
	header := map[string]string{}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return 0, nil, nil, err
		}
		l = strings.TrimRight(l, "\r\n")
		if l == "" {
			break
		}
		k, v, _ := strings.Cut(l, ":")
		header[strings.ToLower(k)] = strings.TrimSpace(v)
	}
	n, err := strconv.Atoi(header["content-length"])
	if err != nil {
		return 0, nil, nil, fmt.Errorf("Content-Length %q", header["content-length"])
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, nil, nil, err
	}
	return status, header, body, nil
}

// rawExchange sends req and returns all the server sends until it closes.
func rawExchange(socket string, req []byte) ([]byte, error) {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testenv.HelperTimeout))
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	return io.ReadAll(c)
}

// runTestDaemon is the daemon of the restart test, a process of its own,
// started with "socket,state,sweep".
func runTestDaemon(spec string) int {
	f := strings.Split(spec, ",")
	if len(f) != 3 {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := Run(ctx, RunOptions{
		Socket: f[0], StateDir: f[1], Sweep: f[2],
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Ready:  func() { fmt.Println("ready") },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "daemon:", err)
		return 1
	}
	return 0
}

// goClientDo is one call of the Go Client in a helper.
func goClientDo(clients map[string]*observer.Client, socket, action string, args []string) string {
	c := clients[socket]
	if c == nil {
		var err error
		if c, err = observer.Dial(socket); err != nil {
			return "err dial " + base64.StdEncoding.EncodeToString([]byte(err.Error()))
		}
		clients[socket] = c
	}
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	limits := func(i int) spec.Limits {
		b, _ := base64.StdEncoding.DecodeString(arg(i))
		l, _ := spec.ParseLimits(b, "limits")
		return l
	}
	var out any
	var err error
	switch action {
	case "sessions":
		out, err = c.Sessions()
	case "open":
		out, err = c.Open()
	case "attach":
		out, err = c.Attach()
	case "attachto":
		err = c.AttachTo(arg(0), arg(1))
	case "detach":
		err = c.Detach(arg(0), arg(1))
	case "freeze":
		err = c.Freeze(arg(0), arg(1))
	case "thaw":
		err = c.Thaw(arg(0), arg(1))
	case "kill":
		err = c.Kill(arg(0), arg(1))
	case "limits":
		err = c.SetLimits(arg(0), arg(1), limits(2))
	case "stats":
		out, err = c.Stats(arg(0), arg(1))
	case "close":
		out, err = c.Close(arg(0), arg(1))
	case "adopt":
		pid, _ := strconv.Atoi(arg(0))
		out, err = c.Adopt(pid, arg(1), limits(2))
	case "hangup":
		c.CloseIdleConnections()
	default:
		err = fmt.Errorf("unknown action %q", action)
	}
	if err != nil {
		kind := "other"
		for k, s := range map[string]error{"forbidden": observer.ErrForbidden, "bad_request": observer.ErrBadRequest, "not_found": observer.ErrNotFound, "unsupported": observer.ErrUnsupported} {
			if errors.Is(err, s) {
				kind = k
			}
		}
		return "err " + kind + " " + base64.StdEncoding.EncodeToString([]byte(err.Error()))
	}
	b, _ := json.Marshal(out)
	return "ok " + base64.StdEncoding.EncodeToString(b)
}

// benchWire times n rounds of a command through the Go Client from this
// process: "session" is attach (a new session, this process in it) then
// close; "stats" reads the stats of one session; "get" is GET /.
func benchWire(socket, what string, n int) string {
	c, err := observer.Dial(socket)
	if err != nil {
		return "error " + err.Error()
	}
	defer c.CloseIdleConnections()
	var s *observer.Session
	if what == "stats" {
		if s, err = c.Open(); err != nil {
			return "error " + err.Error()
		}
		defer c.Close(s.ID, s.Secret)
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		switch what {
		case "session":
			s, err := c.Attach()
			if err != nil {
				return "error " + err.Error()
			}
			if _, err := c.Close(s.ID, s.Secret); err != nil {
				return "error " + err.Error()
			}
		case "stats":
			if _, err := c.Stats(s.ID, s.Secret); err != nil {
				return "error " + err.Error()
			}
		case "get":
			if _, err := c.Sessions(); err != nil {
				return "error " + err.Error()
			}
		}
	}
	return fmt.Sprintf("took %d", time.Since(start).Nanoseconds())
}
