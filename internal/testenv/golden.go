package testenv

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Golden compares each body of got with dir/NAME.json (which holds it and
// a final newline), failing t for every difference; with update it writes
// the files instead. what names the bodies in failures ("answer",
// "request").
func Golden(t testing.TB, dir string, got map[string][]byte, update bool, what string) {
	t.Helper()
	if update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got)) {
		body := got[name]
		path := filepath.Join(dir, name+".json")
		if update {
			if err := os.WriteFile(path, append(body, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if want = bytes.TrimSuffix(want, []byte("\n")); !bytes.Equal(body, want) {
			t.Errorf("%s %s changed:\n got %s\nwant %s", name, what, body, want)
		}
	}
}
