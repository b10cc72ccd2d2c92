package hardening_test

// Task types through the server's HTTP API (/type/, extension "types"),
// over real HTTP to a real server on a real SQLite file: a bad type or a
// bad use of one is refused naming the field or parameter, and nothing
// changes — every row of every table, the blob files and the temp files
// are the same before and after.

import (
	"encoding/json"
	"testing"

	"github.com/kolejka-go/kolejka/tests/hardening"
)

func TestBadInputTaskTypesServer(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	alice, bob := s.bearer("alice"), s.bearer("bob")
	putType := func(c *apiClient, name string, typ string) answer {
		body, _ := json.Marshal(map[string]any{"name": name, "public": false, "type": json.RawMessage(typ)})
		return c.do(t, "POST", "/type/", body)
	}
	ref, _ := alice.upload(t, []byte("echo $1\n"))
	okType := `{` + typeBody + `, "args": ["sh", "run.sh", "{n}"], "params": {"n": {"default": "1"}},
		"files": {"run.sh": {"path": "run.sh", "reference": "` + ref + `"}}}`
	if a := putType(alice, "secret", okType); a.status() != "OK" {
		t.Fatalf("put: %v", a)
	}
	escaping := `{` + typeBody + `, "args": ["true"], "stdout": "{p}/out", "params": {"p": {"default": "o"}}}`
	if a := putType(alice, "escape", escaping); a.status() != "OK" {
		t.Fatalf("put: %v", a)
	}
	// Each row: the request, what its answer must be and name.
	check := func(t *testing.T, r *hardening.Row, send func() answer, code int, status string, want []string) {
		t.Helper()
		unchanged(t, s, r, send, code, status, want)
	}

	t.Run("BT06", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BT06", "type (server): a type whose name is not a name (../x)",
			"FAIL naming name and why; nothing stored")
		check(t, r, func() answer { return putType(alice, "../x", okType) }, 200, "FAIL", []string{"name", `"../x" is not a name`})
	})
	t.Run("BT07", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BT07", "type (server): another user's private type used for a task, read, removed",
			"404 each (the type is not there for them); nothing stored or removed")
		for _, send := range []func() answer{
			func() answer { return bob.do(t, "POST", "/type/secret/task/", []byte(`{"params": {"n": "2"}}`)) },
			func() answer { return bob.do(t, "GET", "/type/secret/", nil) },
			func() answer { return bob.do(t, "DELETE", "/type/secret/", nil) },
		} {
			check(t, r, send, 404, "", nil)
		}
	})
	t.Run("BT08", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BT08", "type (server): a task whose parameter moves an output out of the folder ({p} = ../x)",
			`FAIL naming params["p"] and the field it made leave the folder; nothing stored`)
		check(t, r, func() answer {
			return alice.do(t, "POST", "/type/escape/task/", []byte(`{"params": {"p": "../x"}}`))
		}, 200, "FAIL", []string{`params["p"]`, "stdout", "leaves the folder"})
	})
}
