package filecopy

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCopy(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("data"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0o077) // the copy keeps the bits the umask would cut
	defer syscall.Umask(old)
	dst := filepath.Join(dir, "dst")
	if err := Copy(src, dst); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || string(got) != "data" {
		t.Fatalf("dst = %q, %v; want data", got, err)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("dst mode %v, want 0755", fi.Mode().Perm())
	}
	if os.SameFile(fi, mustStat(t, src)) {
		t.Error("Copy linked instead of copying")
	}
	// An existing dst is not overwritten.
	if err := Copy(src, dst); !os.IsExist(err) {
		t.Errorf("Copy onto an existing file: %v, want it to exist", err)
	}
	// Not a regular file: refused, and nothing is left.
	if err := Copy(dir, filepath.Join(dir, "d2")); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Copy of a folder: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "d2")); !os.IsNotExist(err) {
		t.Errorf("a refused copy left dst: %v", err)
	}
}

func TestLinkOrCopy(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "dst")
	if err := LinkOrCopy(link, dst); err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(mustStat(t, dst), mustStat(t, src)) {
		t.Error("on one file system LinkOrCopy did not link (through the symlink) to src")
	}
	// A folder (through a symlink): refused, nothing left.
	folder := filepath.Join(dir, "folder")
	if err := os.Symlink(dir, folder); err != nil {
		t.Fatal(err)
	}
	if err := LinkOrCopy(folder, filepath.Join(dir, "f2")); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("LinkOrCopy of a folder: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "f2")); !os.IsNotExist(err) {
		t.Errorf("a refused link left dst: %v", err)
	}
}

func mustStat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// A FIFO among a task's inputs is refused at once, not waited on for a
// writer that never comes.
func TestCopyRefusesFIFOWithoutWaiting(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(src, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- LinkOrCopy(src, filepath.Join(dir, "dst")) }()
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("LinkOrCopy of a FIFO: %v, want a refusal", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "dst")); err == nil {
		t.Error("a refused copy left dst behind")
	}
}
