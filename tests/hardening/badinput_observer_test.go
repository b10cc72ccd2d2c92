package hardening_test

// Bad input to the observer's socket: a real registry and server on a
// socket of the test's, callers that are real processes placed in cgroups
// of the test's (one of them in a pid namespace of its own, as a
// container's root is). Each request is refused with its status and a
// message, and nothing changed: the number of sessions, the session's
// cgroup and its memory limit, and where the processes involved are.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/observer/daemon"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/tests/hardening"
)

// observerEnv is a registry served on a socket, in a cgroup tree of the
// test's, removed (with whatever runs in it) at the end.
type observerEnv struct {
	h      *cgroup.Hierarchy
	root   string
	socket string
	reg    *daemon.Registry
}

func newObserverEnv(t *testing.T, so daemon.ServerOptions) *observerEnv {
	t.Helper()
	testenv.RequireRoot(t)
	h, err := cgroup.Host()
	if err != nil {
		testenv.Missing(t, "no usable cgroup hierarchy: %v", err)
	}
	e := &observerEnv{h: h, root: "/kolejka-hardening-" + randomHex(5)}
	g, err := h.Create(e.root, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Delete(); err != nil {
			t.Errorf("removing %s: %v", e.root, err)
		}
	})
	e.reg, err = daemon.NewRegistry(h, daemon.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.socket = filepath.Join(t.TempDir(), "observer.sock")
	ln, err := daemon.Listen(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := daemon.NewServer(e.reg, so)
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		e.reg.Shutdown(ctx)
	})
	return e
}

// sessions is GET / from the test process.
func (e *observerEnv) sessions(t testing.TB) int {
	t.Helper()
	status, body, err := observerRequest(e.socket, "GET", "", nil)
	if err != nil || status != 200 {
		t.Fatalf("GET /: %d %s %v", status, body, err)
	}
	var a struct{ Sessions int }
	json.Unmarshal(body, &a)
	return a.Sessions
}

// memoryLimit reads a cgroup's memory limit file.
func memoryLimit(path string) string {
	for _, d := range cgroupDirs(path) {
		for _, f := range []string{"memory.limit_in_bytes", "memory.max"} {
			if b, err := os.ReadFile(filepath.Join(d, f)); err == nil {
				return strings.TrimSpace(string(b))
			}
		}
	}
	return "(no memory limit file)"
}

// errorKind is the "error" of an observer's error answer.
func errorKind(body string) string {
	var a struct{ Error, Message string }
	json.Unmarshal([]byte(body), &a)
	return a.Error
}

// errorMessage is the "message" of an observer's error answer.
func errorMessage(body string) string {
	var a struct{ Error, Message string }
	json.Unmarshal([]byte(body), &a)
	return a.Message
}

// obsAnswer is one answer of the observer to a command.
type obsAnswer struct {
	command string
	status  int
	body    string
}

func (a obsAnswer) String() string {
	s := fmt.Sprintf("%d %s: %q", a.status, errorKind(a.body), errorMessage(a.body))
	if a.command != "" {
		s = a.command + " → " + s
	}
	return s
}

func TestBadInputObserver(t *testing.T) {
	t.Parallel()
	e := newObserverEnv(t, daemon.ServerOptions{MaxBodyBytes: 4096})
	owner := startCaller(t, e.h, e.root+"/owner", false)
	status, body := owner.post(e.socket, "open", "{}")
	if status != 200 {
		t.Fatalf("open: %d %s", status, body)
	}
	var s struct {
		SessionID string `json:"session_id"`
		Secret    string `json:"secret"`
	}
	if err := json.Unmarshal([]byte(body), &s); err != nil || s.SessionID == "" {
		t.Fatalf("open answered %s", body)
	}
	if status, body := owner.post(e.socket, "limits", fmt.Sprintf(`{"session_id": %q, "secret": %q, "limits": {"memory": "64M"}}`, s.SessionID, s.Secret)); status != 200 {
		t.Fatalf("limits: %d %s", status, body)
	}
	sessionPath := e.root + "/owner/kolejka_observer_" + s.SessionID
	ids := func(id, secret string) string { return fmt.Sprintf(`{"session_id": %q, "secret": %q}`, id, secret) }
	commands := []string{"stats", "attach", "limits", "freeze", "kill", "close"}
	where := func(pid int) string { p, _ := e.h.PathOf(pid); return p }

	// state is what must not change.
	state := func(t testing.TB) string {
		present := len(cgroupDirs(sessionPath)) > 0
		return fmt.Sprintf("%d sessions, session cgroup present %v, its memory limit %s, owner in %s", e.sessions(t), present, memoryLimit(sessionPath), where(owner.pid))
	}
	fromTest := func(command, body string) (int, string) {
		status, answer, err := observerRequest(e.socket, "POST", command, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return status, string(answer)
	}
	type obsCase struct {
		id, name, expect string
		send             func(t *testing.T) []obsAnswer
		status           int
		kind             string
		want             string // in every message
	}
	each := func(send func(command string) (int, string)) func(t *testing.T) []obsAnswer {
		return func(t *testing.T) []obsAnswer {
			var out []obsAnswer
			for _, c := range commands {
				status, body := send(c)
				out = append(out, obsAnswer{c, status, strings.TrimSpace(body)})
			}
			return out
		}
	}
	one := func(send func() (int, string)) func(t *testing.T) []obsAnswer {
		return func(t *testing.T) []obsAnswer {
			status, body := send()
			return []obsAnswer{{"", status, strings.TrimSpace(body)}}
		}
	}
	var stranger, containerRoot *caller
	cases := []obsCase{
		{"BO01", "a wrong secret, on every command (from host root, which may act on any session)", "403 forbidden for each; the session untouched",
			each(func(c string) (int, string) { return fromTest(c, ids(s.SessionID, randomHex(32))) }), 403, "forbidden", ""},
		{"BO02", "a guessed session id with the right secret", "403 forbidden, the same answer as a wrong secret (ids cannot be probed)",
			each(func(c string) (int, string) { return fromTest(c, ids(randomHex(16), s.Secret)) }), 403, "forbidden", ""},
		{"BO03", "no secret", "403 forbidden; the session untouched",
			one(func() (int, string) { return fromTest("stats", fmt.Sprintf(`{"session_id": %q}`, s.SessionID)) }), 403, "forbidden", ""},
		{"BO04", "the right id and secret, stolen by a process of another container (cgroup and pid namespace)", "403 forbidden on every command; the session and the thief untouched",
			func(t *testing.T) []obsAnswer {
				stranger = startCaller(t, e.h, e.root+"/another-container", true)
				return each(func(c string) (int, string) { return stranger.post(e.socket, c, ids(s.SessionID, s.Secret)) })(t)
			}, 403, "forbidden", ""},
		{"BO05", "/adopt by a container's root (uid 0 in a pid namespace of its own) of its own process", "403 forbidden; the process not moved, no session, no cgroup made",
			func(t *testing.T) []obsAnswer {
				containerRoot = startCaller(t, e.h, e.root+"/a-container", true)
				status, body := containerRoot.post(e.socket, "adopt", fmt.Sprintf(`{"pid": %d, "path": %q, "limits": {"pids": 100000}}`, containerRoot.pid, e.root+"/adopted"))
				return []obsAnswer{{"adopt", status, strings.TrimSpace(body)}}
			}, 403, "forbidden", ""},
		{"BO06", "malformed JSON", "400 bad_request naming the problem",
			one(func() (int, string) { return fromTest("stats", `{"session_id": `) }), 400, "bad_request", "JSON"},
		{"BO07", "wrong type (session_id a number)", "400 bad_request naming session_id",
			one(func() (int, string) { return fromTest("stats", `{"session_id": 5, "secret": "x"}`) }), 400, "bad_request", "session_id"},
		{"BO08", "bad limits from the session's owner (64MiB)", "400 bad_request naming the limit; the memory limit unchanged",
			one(func() (int, string) {
				return owner.post(e.socket, "limits", fmt.Sprintf(`{"session_id": %q, "secret": %q, "limits": {"memory": "64MiB"}}`, s.SessionID, s.Secret))
			}), 400, "bad_request", "memory"},
		{"BO09", "a limit a session cannot enforce (storage), from the owner", "500 unsupported naming storage (refused, never ignored); nothing changed",
			one(func() (int, string) {
				return owner.post(e.socket, "limits", fmt.Sprintf(`{"session_id": %q, "secret": %q, "limits": {"storage": "1G"}}`, s.SessionID, s.Secret))
			}), 500, "unsupported", "storage"},
		{"BO10", "oversized body (5000 bytes over a 4096 cap)", "413; nothing changed",
			one(func() (int, string) { return fromTest("stats", `{"pad": "`+strings.Repeat("x", 5000)+`"}`) }), 413, "", ""},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			r := caseOf(t, hardening.BadInput, c.id, "observer: "+c.name, c.expect)
			before := state(t)
			var strangerAt, containerAt string
			answers := c.send(t)
			if stranger != nil {
				strangerAt = where(stranger.pid)
			}
			if containerRoot != nil {
				containerAt = where(containerRoot.pid)
			}
			var seen []string
			for _, a := range answers {
				seen = append(seen, a.String())
				if a.status != c.status {
					t.Errorf("answer %s, want %d", a, c.status)
				}
				if c.kind != "" && errorKind(a.body) != c.kind {
					t.Errorf("answer %s is not a %s error", a, c.kind)
				}
				if errorMessage(a.body) == "" {
					t.Errorf("answer %s has no message", a)
				}
				if c.want != "" && !strings.Contains(errorMessage(a.body), c.want) {
					t.Errorf("answer %s does not name %q", a, c.want)
				}
			}
			r.Observe("%s", strings.Join(seen, "; "))
			after := state(t)
			if after != before {
				t.Errorf("the observer changed: %s → %s", before, after)
			}
			switch c.id {
			case "BO04":
				if got := where(stranger.pid); got != e.root+"/another-container" || strangerAt != got {
					t.Errorf("the thief was moved to %s", got)
				}
				r.Observe("the thief stays in %s", strangerAt)
			case "BO05":
				if got := where(containerRoot.pid); got != e.root+"/a-container" || containerAt != got {
					t.Errorf("the container's process was moved to %s", got)
				}
				if d := cgroupDirs(e.root + "/adopted"); len(d) != 0 {
					t.Errorf("the adopt made cgroups: %v", d)
				}
				r.Observe("its process stays in %s, no %s/adopted cgroup", containerAt, e.root)
			}
			r.Observe("%s: unchanged", after)
		})
	}

	t.Run("BO11", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BO11", "observer: a session past its cgroup_descendants (1): a second sub-session",
			"403 forbidden naming cgroup_descendants; no session or cgroup made")
		if status, body := owner.post(e.socket, "limits", fmt.Sprintf(`{"session_id": %q, "secret": %q, "limits": {"cgroup_descendants": 1}}`, s.SessionID, s.Secret)); status != 200 {
			t.Fatalf("limits: %d %s", status, body)
		}
		if status, body := owner.post(e.socket, "attach", ids(s.SessionID, s.Secret)); status != 200 {
			t.Fatalf("attach: %d %s", status, body)
		}
		if status, body := owner.post(e.socket, "open", "{}"); status != 200 {
			t.Fatalf("the first sub-session: %d %s", status, body)
		}
		before := state(t)
		beforeDirs := len(cgroupsBelow(sessionPath))
		status, body := owner.post(e.socket, "open", "{}")
		r.Observe("%d %s", status, strings.TrimSpace(body))
		if status != 403 || errorKind(body) != "forbidden" || !strings.Contains(body, "cgroup_descendants") {
			t.Errorf("the second sub-session: %d %s", status, body)
		}
		if after := state(t); after != before || len(cgroupsBelow(sessionPath)) != beforeDirs {
			t.Errorf("the observer changed: %s → %s", before, after)
		}
		r.Observe("%s: unchanged", before)
	})
}
