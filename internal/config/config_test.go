package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSectionsFallBackToDefault(t *testing.T) {
	f, err := Load(write(t, `
[default]
config = judge
memory = 1G
temp: /var/tmp

[judge]
server = kolejka.example.org
; a comment
MEMORY = 2G

[worker]
time = 10s
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.ClientSection(""); got != "judge" {
		t.Errorf("client section %q, want judge", got)
	}
	if got := f.ClientSection("other"); got != "other" {
		t.Errorf("explicit section %q", got)
	}
	if v, _ := f.Get("judge", "memory"); v != "2G" {
		t.Errorf("judge memory %q: keys are case-insensitive", v)
	}
	if v, _ := f.Get("worker", "temp"); v != "/var/tmp" {
		t.Errorf("worker temp %q, want the [default] value", v)
	}
	if v, _ := f.Get("worker", "memory"); v != "1G" {
		t.Errorf("worker memory %q, want the [default] value", v)
	}
	if v, _ := f.Get("worker", "time"); v != "10s" {
		t.Errorf("worker time %q, want its own", v)
	}
	if _, ok := f.Get("worker", "server"); ok {
		t.Error("worker server: only [default] is a fallback, not other sections")
	}
}

// Error names the file, section and key of a bad value.
func TestErrorNamesFileSectionAndKey(t *testing.T) {
	p := write(t, "[worker]\nmemory = 64MiB\n")
	f, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Error("worker", "memory", errors.New("bad")).Error(), p+": [worker] memory: bad"; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
	if got, want := (&File{}).Error("worker", "memory", errors.New("bad")).Error(), FileName+": [worker] memory: bad"; got != want {
		t.Errorf("without a file: %q, want %q", got, want)
	}
}

func TestNoFileIsEmptyConfig(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_DIRS", t.TempDir())
	f, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if f.Path != "" && !strings.HasPrefix(f.Path, "/etc/kolejka") {
		t.Fatalf("found %s", f.Path)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.conf")); err == nil {
		t.Fatal("an explicitly named missing file must be an error")
	}
}

func TestSearchPathOrder(t *testing.T) {
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_DIRS", "")
	got := SearchPath()
	want := []string{filepath.Join(home, ".config/kolejka/kolejka.conf"), "/etc/kolejka/kolejka.conf", "/etc/xdg/kolejka/kolejka.conf"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("search path %v, want %v", got, want)
	}
}

func TestSplitList(t *testing.T) {
	if got := SplitList(" a, b ,,c "); strings.Join(got, "|") != "a|b|c" {
		t.Errorf("SplitList = %q", got)
	}
	if got := SplitList(" , "); got != nil {
		t.Errorf("SplitList of blanks = %q, want nil", got)
	}
}
