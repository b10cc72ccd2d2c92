package runc_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/image"
	"github.com/kolejka-go/kolejka/worker/image/siftest"
	"github.com/kolejka-go/kolejka/worker/runc"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// A task names an image imported from a SIF file and runs in it with the
// runc runtime: no Singularity anywhere.
func TestTaskRunsFromASIFImage(t *testing.T) {
	testenv.RequireRoot(t)
	requireSeccomp(t)
	sifPath := siftest.FromRootfsTar(t, filepath.Join(testenv.TestImage(t), "rootfs.tar"))
	dir := t.TempDir()
	store, err := image.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := store.Import(t.Context(), "kolejka-test:sif", sifPath)
	if err != nil {
		t.Fatal(err)
	}
	if img.Format != image.FormatSIF {
		t.Fatalf("imported as %q, want %q", img.Format, image.FormatSIF)
	}
	rt, err := runc.New(filepath.Join(dir, "state"), store)
	if err != nil {
		t.Fatal(err)
	}
	e := workertest.NewEnv(t, rt)
	taskDir := t.TempDir()
	taskJSON := `{"image": "kolejka-test:sif", "args": ["sh", "-c", "echo from-sif; kolejka-alloc 1; wc -l < /etc/passwd >/dev/null && echo passwd-read"],
		"limits": {"memory": "64M", "time": "20s"}, "stdout": "out"}`
	if err := os.WriteFile(filepath.Join(taskDir, spec.TaskFile), []byte(taskJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	resultDir, res, err := e.Run(t, taskDir, worker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(filepath.Join(resultDir, "out"))
	if res.Status != spec.StatusOK || string(out) != "from-sif\nallocated=1048576\npasswd-read\n" {
		t.Fatalf("status %s, stdout %q; want OK and the task's lines", res.Status, out)
	}
	e.AssertClean(t)
}
