package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
)

// dev makes its own data folder and takes no arguments: both refused
// before anything starts. (tests/e2e runs the grid itself.)
func TestDevRefusesItsMisuse(t *testing.T) {
	for name, args := range map[string][]string{
		"an argument": {"dev", "extra"},
		"--data":      {"--data", t.TempDir(), "dev"},
		"late option": {"dev", "extra", "--listen", "127.0.0.1:0"},
	} {
		if code, _, errOut := run(t, nil, args...); code != cliexit.Usage {
			t.Errorf("%s: exit %d, want %d (%s)", name, code, cliexit.Usage, errOut)
		}
	}
}

// The test image: a folder named must hold rootfs.tar; else build/testimage
// beside the binary's bin/ if it is there, else none, with a note saying
// how to make one.
func TestFindTestImage(t *testing.T) {
	tree := t.TempDir()
	bin := filepath.Join(tree, "bin")
	if _, _, err := findTestImage(filepath.Join(tree, "nothing"), bin); err == nil || !strings.Contains(err.Error(), "nothing") {
		t.Errorf("a named folder without rootfs.tar: %v, want an error naming it", err)
	}
	tar, note, err := findTestImage("", bin)
	if err != nil || tar != "" || !strings.Contains(note, "make testimage") || !strings.Contains(note, filepath.Join(tree, "build", "testimage")) {
		t.Errorf("no test image: %q, %q, %v", tar, note, err)
	}
	dir := filepath.Join(tree, "build", "testimage")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rootfs.tar"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if tar, _, err := findTestImage("", bin); err != nil || tar != filepath.Join(dir, "rootfs.tar") {
		t.Errorf("beside bin/: %q, %v", tar, err)
	}
	if tar, _, err := findTestImage(dir, "/elsewhere/bin"); err != nil || tar != filepath.Join(dir, "rootfs.tar") {
		t.Errorf("named: %q, %v", tar, err)
	}
}
