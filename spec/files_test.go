package spec

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWriteLoadTask(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "data", "in.txt"), "input")
	writeFile(t, filepath.Join(dir, "x"), "x")
	task, err := ParseTask([]byte(goodTask), TaskFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteTask(dir, task); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, TaskFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("task file mode %v; want 0644", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	loaded, err := LoadTask(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := task.Encode()
	b, _ := loaded.Encode()
	if string(a) != string(b) {
		t.Errorf("loaded task differs:\n%s\n%s", a, b)
	}
	// Writing again replaces the file.
	task.Image = "debian"
	if err := WriteTask(dir, task); err != nil {
		t.Fatal(err)
	}
	if loaded, err = LoadTask(dir); err != nil || loaded.Image != "debian" {
		t.Errorf("after rewrite: %v, %v", loaded, err)
	}
}

func TestLoadTaskErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadTask(dir)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadTask of an empty folder: %v", err)
	}
	file := filepath.Join(dir, TaskFile)
	writeFile(t, file, `{"image": "a", "args": ["x"], "files": {"in": "missing.txt"}}`)
	_, err = LoadTask(dir)
	assertProblem(t, err, file, `files["in"].path`, `"missing.txt" does not exist in the folder`)
	writeFile(t, file, `{"image": "a", "args": [], "limits": {"memory": "1G"}}`)
	_, err = LoadTask(dir)
	assertProblem(t, err, file, "args", "missing or empty")
	writeFile(t, file, `{"image": "a", "args": ["x"], "limits": {"memory": "1GiB"}}`)
	_, err = LoadTask(dir)
	assertProblem(t, err, file, "limits.memory", `unknown unit "i"`)
}

func TestCheckFiles(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "secret"), "secret")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ok.txt"), "ok")
	writeFile(t, filepath.Join(dir, "sub", "deep.txt"), "deep")
	mustSymlink(t, "ok.txt", filepath.Join(dir, "link.txt"))
	mustSymlink(t, "sub/../ok.txt", filepath.Join(dir, "link2.txt"))
	mustSymlink(t, filepath.Join(outside, "secret"), filepath.Join(dir, "escape"))
	mustSymlink(t, "../"+filepath.Base(outside)+"/secret", filepath.Join(dir, "escape2"))
	mustSymlink(t, outside, filepath.Join(dir, "outdir"))
	mustSymlink(t, "nowhere", filepath.Join(dir, "dangling"))

	good := &Task{Files: map[string]File{
		"a": {Path: "ok.txt"}, "b": {Path: "sub/deep.txt"}, "c": {Path: "link.txt"}, "d": {Path: "link2.txt"},
		"e": {Path: "./sub/../ok.txt"}, "r": {Reference: "ref-only"},
	}}
	if err := good.CheckFiles(dir); err != nil {
		t.Errorf("CheckFiles: %v", err)
	}
	bad := &Task{Files: map[string]File{
		"a": {Path: "escape"},
		"b": {Path: "escape2"},
		"c": {Path: "outdir/secret"},
		"d": {Path: "dangling"},
		"e": {Path: "sub"},
		"f": {Path: "nope.txt"},
	}}
	err := bad.CheckFiles(dir)
	assertProblem(t, err, TaskFile, `files["a"].path`, "leads outside the folder")
	assertProblem(t, err, TaskFile, `files["b"].path`, "leads outside the folder")
	assertProblem(t, err, TaskFile, `files["c"].path`, "leads outside the folder")
	assertProblem(t, err, TaskFile, `files["d"].path`, "does not exist")
	assertProblem(t, err, TaskFile, `files["e"].path`, "not a regular file")
	assertProblem(t, err, TaskFile, `files["f"].path`, "does not exist")
	// The folder itself reached through a symlink is fine.
	link := filepath.Join(t.TempDir(), "task")
	mustSymlink(t, dir, link)
	if err := good.CheckFiles(link); err != nil {
		t.Errorf("CheckFiles through a symlinked folder: %v", err)
	}
	r := &Result{Files: map[string]File{"out": {Path: "escape"}}}
	assertProblem(t, r.CheckFiles(dir), ResultFile, `files["out"].path`, "leads outside the folder")
}

func mustSymlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

func TestWriteLoadResult(t *testing.T) {
	data, err := os.ReadFile("testdata/golden/result_full.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseResult(data, ResultFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name := range r.Files {
		writeFile(t, filepath.Join(dir, name), name)
	}
	if err := WriteResult(dir, r); err != nil {
		t.Fatal(err)
	}
	written, err := os.ReadFile(filepath.Join(dir, ResultFile))
	if err != nil || string(written) != string(data) {
		t.Fatalf("written result differs from the golden file (%v)", err)
	}
	if _, err := LoadResult(dir); err != nil {
		t.Errorf("LoadResult: %v", err)
	}
	os.Remove(filepath.Join(dir, "out.txt"))
	_, err = LoadResult(dir)
	assertProblem(t, err, filepath.Join(dir, ResultFile), `files["out.txt"].path`, "does not exist")
}

// A failed write leaves the old file and no temporary file behind.
func TestWriteTaskFailureChangesNothing(t *testing.T) {
	dir := t.TempDir()
	ok := &Task{Image: "a", Args: []string{"x"}}
	if err := WriteTask(dir, ok); err != nil {
		t.Fatal(err)
	}
	neg := int64(-1)
	bad := &Task{Image: "b", Args: []string{"x"}, Limits: Limits{Pids: &neg}}
	if err := WriteTask(dir, bad); err == nil {
		t.Fatal("WriteTask of a negative limit succeeded")
	}
	data, _ := os.ReadFile(filepath.Join(dir, TaskFile))
	if !strings.Contains(string(data), `"image": "a"`) {
		t.Errorf("the old task was changed: %s", data)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files left behind: %v", entries)
	}
	if err := WriteTask(filepath.Join(dir, "missing", "folder"), ok); err == nil {
		t.Error("WriteTask into a missing folder succeeded")
	}
}
