package spec

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestMembers(t *testing.T) {
	keys, vals, err := Members([]byte(`{"b": 1, "a": [2], "b": "x"}`))
	if err != nil || !reflect.DeepEqual(keys, []string{"b", "a", "b"}) || string(vals[2]) != `"x"` {
		t.Fatalf("Members: %q %q %v (repeated keys must stay, in order)", keys, vals, err)
	}
	for _, bad := range []string{`[]`, `{"a": 1`, `{"a": 1} {}`, `7`, ``} {
		if _, _, err := Members([]byte(bad)); err == nil {
			t.Errorf("Members(%q) gave no error", bad)
		}
	}
	for raw, want := range map[string]string{`{}`: "an object", `[1]`: "a list", `"s"`: "a string", `true`: "a boolean", `null`: "null", `7`: "the number 7", ``: "nothing"} {
		if got := Describe(json.RawMessage(raw)); got != want {
			t.Errorf("Describe(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestFields(t *testing.T) {
	p := NewProblems("f.json")
	var read []string
	seen, err := Fields(p, "params.x", []byte(`{"b": 1, "a": [2], "b": "x"}`), func(kf, k string, v json.RawMessage) {
		read = append(read, kf+"="+string(v))
	})
	// A key given again is a problem at its path, and its value is not read.
	if err != nil || !reflect.DeepEqual(read, []string{"params.x.b=1", "params.x.a=[2]"}) || !seen["a"] || !seen["b"] || len(seen) != 2 {
		t.Fatalf("Fields: read %q, seen %v, %v", read, seen, err)
	}
	if err := p.Err(); err == nil || err.Error() != `f.json: params.x.b: key given more than once` {
		t.Errorf("problems: %v", err)
	}
	// A whole document's keys are their own paths.
	if _, err := Fields(p, "", []byte(`{"tasks": 1}`), func(kf, k string, _ json.RawMessage) {
		if kf != "tasks" || k != "tasks" {
			t.Errorf("read %q, %q; want tasks, tasks", kf, k)
		}
	}); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{`[]`, `{"a": 1`, `7`} {
		if _, err := Fields(p, "x", []byte(bad), func(string, string, json.RawMessage) { t.Errorf("%q: read a member", bad) }); err == nil {
			t.Errorf("Fields(%q) gave no error", bad)
		}
	}
}
