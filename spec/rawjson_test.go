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
