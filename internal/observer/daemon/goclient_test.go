package daemon

import (
	"encoding/base64"
	"encoding/json"
	"path"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// goClient makes the helper call the Go Client; it returns the result's
// JSON, or the error kind ("" on success).
func (p *helper) goClient(socket, action string, args ...string) (string, json.RawMessage) {
	p.t.Helper()
	line := p.do("goclient %s %s %s", socket, action, strings.Join(args, " "))
	f := strings.Fields(line)
	switch {
	case len(f) == 2 && f[0] == "ok":
		b, _ := base64.StdEncoding.DecodeString(f[1])
		return "", b
	case len(f) == 3 && f[0] == "err":
		b, _ := base64.StdEncoding.DecodeString(f[2])
		return f[1], json.RawMessage(b)
	}
	p.t.Fatalf("goclient %s: %s", action, line)
	return "", nil
}

func (p *helper) goClientOK(socket, action string, args ...string) json.RawMessage {
	p.t.Helper()
	kind, out := p.goClient(socket, action, args...)
	if kind != "" {
		p.t.Fatalf("goclient %s: %s: %s", action, kind, out)
	}
	return out
}

func limits64(l spec.Limits) string {
	b, _ := l.MarshalJSON()
	return base64.StdEncoding.EncodeToString(b)
}

// TestGoClient exercises every method of the Go Client against the
// server, from real caller processes, on one kept-alive connection each
// that the server also closes under it (IdleTimeout).
func TestGoClient(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	socket := e.serve(ServerOptions{IdleTimeout: 200 * time.Millisecond})
	owner, worker := e.caller(), e.caller()

	if n := owner.goClientOK(socket, "sessions"); string(n) != "0" {
		t.Errorf("Sessions = %s", n)
	}
	var s observer.Session
	if err := json.Unmarshal(owner.goClientOK(socket, "open"), &s); err != nil || !isSessionID(s.ID) {
		t.Fatalf("Open = %+v, %v", s, err)
	}
	owner.goClientOK(socket, "limits", s.ID, s.Secret, limits64(spec.Limits{Memory: i64(256 << 20), Pids: i64(200)}))
	// The server drops idle kept-alive connections; the client redials.
	testenv.WaitFor(t, 10*time.Second, "the server closes the idle connection", func() bool { return e.srv.openConns() == 0 })
	if n := owner.goClientOK(socket, "sessions"); string(n) != "1" {
		t.Errorf("Sessions after an idle close = %s", n)
	}
	worker.goClientOK(socket, "attachto", s.ID, s.Secret)
	var s2 observer.Session
	json.Unmarshal(worker.goClientOK(socket, "attach"), &s2)
	if got := pathOf(t, h, worker.pid); got != path.Join(e.callers, groupPrefix+s.ID, groupPrefix+s2.ID) {
		t.Errorf("after Attach the worker is in %s", got)
	}
	worker.do("spin 20ms")
	worker.goClientOK(socket, "detach", s2.ID, s2.Secret)
	var st spec.Stats
	if err := json.Unmarshal(worker.goClientOK(socket, "stats", s2.ID, s2.Secret), &st); err != nil || cpuOf(st) < 15*time.Millisecond {
		t.Errorf("Stats = %v (CPU %v) after a 20ms spin", err, cpuOf(st))
	}
	if err := json.Unmarshal(worker.goClientOK(socket, "close", s2.ID, s2.Secret), &st); err != nil {
		t.Errorf("Close: %v", err)
	}
	worker.send("spinforever")
	owner.goClientOK(socket, "freeze", s.ID, s.Secret)
	owner.goClientOK(socket, "thaw", s.ID, s.Secret)
	owner.goClientOK(socket, "kill", s.ID, s.Secret)
	if status := worker.Wait(); status.Signal() != syscall.SIGKILL {
		t.Errorf("after Kill the worker ended with %v", status)
	}
	owner.goClientOK(socket, "close", s.ID, s.Secret)

	// Errors come back as the sentinels.
	for _, c := range []struct {
		action string
		args   []string
		kind   string
	}{
		{"stats", []string{s.ID, "wrong"}, "forbidden"},
		{"kill", []string{s.ID, s.Secret}, "not_found"},
		{"stats", []string{newID(), s.Secret}, "forbidden"},
		{"adopt", []string{"1", "relative/path", limits64(spec.Limits{})}, "bad_request"},
	} {
		if kind, msg := owner.goClient(socket, c.action, c.args...); kind != c.kind {
			t.Errorf("%s %v: %s %s, want %s", c.action, c.args, kind, msg, c.kind)
		}
	}
	var s3 observer.Session
	json.Unmarshal(owner.goClientOK(socket, "open"), &s3)
	if kind, msg := owner.goClient(socket, "limits", s3.ID, s3.Secret, limits64(spec.Limits{Storage: i64(1 << 20)})); kind != "unsupported" {
		t.Errorf("a storage limit: %s %s, want unsupported", kind, msg)
	}
	owner.goClientOK(socket, "close", s3.ID, s3.Secret)

	// Adopt, host root only.
	task := e.contained(e.callers)
	if kind, _ := task.goClient(socket, "adopt", itoa(task.pid), e.root+"/task", limits64(spec.Limits{})); kind != "forbidden" {
		t.Errorf("Adopt by a container's root: %s, want forbidden", kind)
	}
	var sa observer.Session
	json.Unmarshal(owner.goClientOK(socket, "adopt", itoa(task.pid), e.root+"/task", limits64(spec.Limits{Pids: i64(10)})), &sa)
	if got := pathOf(t, h, task.pid); got != e.root+"/task" {
		t.Errorf("the adopted process is in %s", got)
	}
	owner.goClientOK(socket, "close", sa.ID, sa.Secret)
	if n := owner.goClientOK(socket, "sessions"); string(n) != "0" {
		t.Errorf("Sessions at the end = %s", n)
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
