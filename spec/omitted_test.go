package spec

import (
	"strings"
	"testing"
)

// "omitted" (outputs the worker left out, with why) is written only when
// there is any, read back as it was, and checked like every other field.
func TestResultOmitted(t *testing.T) {
	r := &Result{Files: map[string]File{"out": {Path: "out"}},
		Omitted: map[string]string{`"bad\xff"`: "its name is not valid UTF-8", "big": "larger than its workspace"}}
	data, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"omitted": {`) || !strings.Contains(string(data), `"\"bad\\xff\"": "its name is not valid UTF-8"`) {
		t.Fatalf("encoded:\n%s", data)
	}
	back, err := ParseResult(data, ResultFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Omitted) != 2 || back.Omitted["big"] != "larger than its workspace" || back.Omitted[`"bad\xff"`] == "" {
		t.Fatalf("read back %v", back.Omitted)
	}
	none, err := (&Result{}).Encode()
	if err != nil || strings.Contains(string(none), "omitted") {
		t.Fatalf("a result with nothing omitted: %s %v", none, err)
	}
	if _, err := ParseResult([]byte(`{"omitted": ["big"]}`), ResultFile); err == nil || !strings.Contains(err.Error(), "omitted") {
		t.Fatalf("a list for omitted: %v, want an error naming the field", err)
	}
	if _, err := ParseResult([]byte(`{"omitted": {"big": 1}}`), ResultFile); err == nil || !strings.Contains(err.Error(), `omitted["big"]`) {
		t.Fatalf("a number for a reason: %v, want an error naming the entry", err)
	}
}
