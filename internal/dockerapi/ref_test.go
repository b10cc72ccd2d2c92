package dockerapi

import "testing"

// A reference splits where the engine's own parser would: a colon before
// the last slash is a registry's port, a digest goes whole.
func TestSplitRef(t *testing.T) {
	for _, c := range []struct{ ref, name, tag string }{
		{"alpine", "alpine", ""},
		{"alpine:3.20", "alpine", "3.20"},
		{"docker.io/library/alpine:3.20", "docker.io/library/alpine", "3.20"},
		{"localhost:5000/judge", "localhost:5000/judge", ""},
		{"localhost:5000/judge:2", "localhost:5000/judge", "2"},
		{"judge@sha256:abcd", "judge", "sha256:abcd"},
		{"localhost:5000/judge:2@sha256:abcd", "localhost:5000/judge", "sha256:abcd"},
	} {
		if name, tag := splitRef(c.ref); name != c.name || tag != c.tag {
			t.Errorf("splitRef(%q) = %q, %q; want %q, %q", c.ref, name, tag, c.name, c.tag)
		}
	}
	if _, _, err := tagRef("judge@sha256:abcd"); err == nil {
		t.Error("tagRef took a digest")
	}
}
