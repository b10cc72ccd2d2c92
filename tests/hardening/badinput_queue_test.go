package hardening_test

// Named queues (docs/queues.md): a queue name that is not one, in a task,
// a dequeue or `kolejka-server queue add`, and a submission to a private
// queue by an outsider. Each is refused naming the queue or the option,
// and the server's state (every row of every table, blob files, temp
// files) is the same before and after.

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/tests/hardening"
)

func TestBadInputQueues(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	if err := s.srv.AddQueue(context.Background(), server.Queue{Name: "judge", Private: true, Submitters: []string{"alice"}, Nodes: []string{"node"}}); err != nil {
		t.Fatal(err)
	}
	alice, bob, node := s.bearer("alice"), s.bearer("bob"), s.bearer("node")
	bobSession := s.sessionOf(t, "bob")
	// A task waits in judge: a bad dequeue must not hand it out.
	alice.mustPost(t, "/task/task/", `{"image": "kolejka-test:latest", "args": ["true"], "queue": "judge"}`)
	img := `"image": "kolejka-test:latest", "args": ["true"]`

	// unchanged runs do and checks that the server's state did not move.
	unchanged := func(t *testing.T, r *hardening.Row, label string, do func() (observed, said string, want []string)) {
		t.Helper()
		before := s.state(t)
		observed, said, want := do()
		r.Observe("%s%s", label, observed)
		checkFragments(t, said, want)
		if after := s.state(t); !after.equal(before) {
			t.Errorf("%sthe server changed (tables %v): %v → %v", label, before.changed(after), before, after)
		}
	}
	refusedPost := func(c *apiClient, path, body string, want ...string) func() (string, string, []string) {
		return func() (string, string, []string) {
			a := c.do(t, "POST", path, []byte(body))
			if a.code != 200 || a.status() != "FAIL" {
				t.Errorf("POST %s: %v, want a FAIL", path, a)
			}
			return a.String(), a.text(), want
		}
	}

	t.Run("BQ01", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BQ01", `queue: a task whose queue is not a name ("../x", "a b", 100 characters, non-ASCII, a number)`,
			"FAIL naming kolejka_task.json and queue; nothing stored")
		for _, q := range []string{"../x", "a b", strings.Repeat("q", 100), "x/../../y", "\u00e9t\u00e9"} {
			unchanged(t, r, "", refusedPost(alice, "/task/task/", `{`+img+`, "queue": "`+q+`"}`, "kolejka_task.json", "queue: "))
		}
		unchanged(t, r, "", refusedPost(alice, "/task/task/", `{`+img+`, "queue": 7}`, "kolejka_task.json", "queue"))
	})
	t.Run("BQ02", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BQ02", "queue: `kolejka-server queue add` with a bad name, an unknown user, a bad priority",
			"exit 2 naming NAME or the option; nothing stored")
		bin := testenv.Binaries(t)
		conf := filepath.Join(t.TempDir(), "empty.conf")
		if err := os.WriteFile(conf, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			args []string
			want []string
		}{
			{[]string{"../x"}, []string{"NAME", `"../x" is not a name`}},
			{[]string{"a b"}, []string{"NAME", `"a b" is not a name`}},
			{[]string{strings.Repeat("q", 100)}, []string{"NAME", "longer than 64"}},
			{[]string{"ok", "--private", "--submitters", "mallory"}, []string{"--submitters", `no user named "mallory"`}},
			{[]string{"ok", "--private", "--nodes", "alice"}, []string{"--nodes", `"alice" is not a processor`}},
			{[]string{"ok", "--priority", "high"}, []string{"--priority"}},
			{[]string{"judge"}, []string{`"judge"`, "already exists"}},
		} {
			unchanged(t, r, "", func() (string, string, []string) {
				out, errOut, code := gridtest.RunCommand(context.Background(), filepath.Join(bin, "kolejka-server"),
					append([]string{"--config-file", conf, "--data", s.data, "queue", "add"}, c.args...)...)
				if code != 2 {
					t.Errorf("queue add %q: exit %d, want 2 (stdout %q)", c.args, code, out)
				}
				return "exit " + strconv.Itoa(code) + ": " + strings.TrimSpace(errOut), errOut, c.want
			})
		}
	})
	t.Run("BQ03", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BQ03", "queue: submission to a private queue by an outsider (bearer and session)",
			"FAIL naming the queue and the user; nothing stored")
		for label, c := range map[string]*apiClient{"bearer: ": bob, "session: ": bobSession} {
			unchanged(t, r, label, refusedPost(c, "/task/task/", `{`+img+`, "queue": "judge"}`,
				"kolejka_task.json", `queue: queue "judge" is private: user bob may not submit to it`))
		}
	})
	t.Run("BQ04", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BQ04", "queue: a dequeue naming a queue that is not a name, or a list that is not one",
			"FAIL naming queues[i]; nothing handed out")
		unchanged(t, r, "", refusedPost(node, "/queue/dequeue/", `{"queues": ["judge", "../x"]}`, "dequeue: queues[1]", `"../x" is not a name`))
		unchanged(t, r, "", refusedPost(node, "/queue/dequeue/", `{"queues": "judge"}`, "dequeue", "queues"))
	})
	t.Run("BQ05", func(t *testing.T) {
		r := caseOf(t, hardening.Hostile, "BQ05", "queue: a node that is not among a private queue's nodes asks for it, alone and beside the default queue",
			"nothing of the private queue handed out; its task stays queued; nothing changed")
		for _, body := range []string{
			`{"concurency": 5, "limits": {}, "tags": [], "queues": ["judge"]}`,
			`{"concurency": 5, "limits": {}, "tags": [], "queues": ["judge", "default"]}`,
		} {
			unchanged(t, r, "", func() (string, string, []string) {
				a := s.bearer("node2").do(t, "POST", "/queue/dequeue/", []byte(body))
				if a.status() != "OK" || len(a.json["tasks"].([]any)) != 0 {
					t.Errorf("node2's dequeue %s: %v, want OK with no tasks", body, a)
				}
				return a.String(), "", nil
			})
		}
		// The queue's own node still gets it: the refusal above was the rule's.
		if a := node.mustPost(t, "/queue/dequeue/", `{"concurency": 5, "limits": {}, "tags": [], "queues": ["judge"]}`); len(a.json["tasks"].([]any)) != 1 {
			t.Errorf("judge's node got %v, want its one task", a)
		}
	})
}
