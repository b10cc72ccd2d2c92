package hardening_test

// Helper processes (internal/testenv's): this test binary re-executed as
// a caller of the observer. The observer knows a caller by the process
// that connected, and makes sessions in that process's cgroup, so callers
// must be processes of their own (the test process must never be moved
// into a session) placed where a test wants them: in a cgroup of its
// choosing, in a pid namespace of their own (a container's root).

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/testenv"
)

// runCaller is the helper "caller". Commands, one per line on stdin:
//
//	req SOCKET COMMAND BODY64  POST /COMMAND with that JSON body on a new
//	                           connection → "resp STATUS BODY64"
//	get SOCKET                 GET / → "resp STATUS BODY64"
//
// It says "ready" first.
func runCaller(string) int {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	fmt.Println("ready")
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 4 && f[0] == "req":
			body, _ := base64.StdEncoding.DecodeString(f[3])
			status, answer, err := observerRequest(f[1], "POST", f[2], body)
			if err != nil {
				fmt.Println("error", base64.StdEncoding.EncodeToString([]byte(err.Error())))
				continue
			}
			fmt.Println("resp", status, base64.StdEncoding.EncodeToString(answer))
		case len(f) == 2 && f[0] == "get":
			status, answer, err := observerRequest(f[1], "GET", "", nil)
			if err != nil {
				fmt.Println("error", base64.StdEncoding.EncodeToString([]byte(err.Error())))
				continue
			}
			fmt.Println("resp", status, base64.StdEncoding.EncodeToString(answer))
		default:
			fmt.Println("error", base64.StdEncoding.EncodeToString([]byte("unknown command")))
		}
	}
	return 0
}

// observerRequest sends one request as Kolejka's clients do (a connection
// per request, closed by the server after the answer) and returns the
// answer's status and body.
func observerRequest(socket, method, command string, body []byte) (int, []byte, error) {
	c, err := net.DialTimeout("unix", socket, 10*time.Second)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	req := fmt.Sprintf("%s /%s HTTP/1.1\r\nHost: kolejka-observer\r\n", method, command)
	if method == "POST" {
		req += fmt.Sprintf("Content-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n", len(body))
	}
	if _, err := io.WriteString(c, req+"\r\n"+string(body)); err != nil {
		return 0, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	return resp.StatusCode, answer, err
}

// caller is a running helper process.
type caller struct {
	*testenv.Helper
	t   testing.TB
	pid int
}

// startCaller starts a helper, in a new pid namespace if newPidNS (so it
// is not host root: a container's root), and moves it into cgroup group
// (made if missing) before it does anything.
func startCaller(t testing.TB, h *cgroup.Hierarchy, group string, newPidNS bool) *caller {
	t.Helper()
	p := testenv.StartHelper(t, "caller", "", func(cmd *exec.Cmd) {
		if newPidNS {
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
		}
	})
	c := &caller{Helper: p, t: t, pid: p.Pid()}
	g, err := h.Create(group, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Add(c.pid); err != nil {
		t.Fatalf("moving the helper into %s: %v", group, err)
	}
	if l := c.line(); l != "ready" {
		t.Fatalf("helper said %q", l)
	}
	return c
}

func (c *caller) line() string { return c.Line() }

// post sends POST /command with body from the helper; it returns the
// answer's status and body.
func (c *caller) post(socket, command, body string) (int, string) {
	c.t.Helper()
	c.Send(fmt.Sprintf("req %s %s %s", socket, command, base64.StdEncoding.EncodeToString([]byte(body))))
	return c.answer()
}

func (c *caller) answer() (int, string) {
	c.t.Helper()
	f := strings.Fields(c.line())
	if len(f) == 2 && f[0] == "error" {
		msg, _ := base64.StdEncoding.DecodeString(f[1])
		c.t.Fatalf("helper %d: %s", c.pid, msg)
	}
	if len(f) != 3 || f[0] != "resp" {
		c.t.Fatalf("helper %d answered %q", c.pid, f)
	}
	status, _ := strconv.Atoi(f[1])
	body, _ := base64.StdEncoding.DecodeString(f[2])
	return status, string(body)
}
