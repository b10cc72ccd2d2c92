package runc_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/runc"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// leanRuntime is newRuntime with the containers' init handed over to the
// kolejka-runc-init the commands are built with, as kolejka-worker and
// kolejka-foreman run it.
func leanRuntime(t testing.TB) *runc.Runtime {
	t.Helper()
	rt := newRuntime(t)
	if err := rt.UseLeanInit(filepath.Join(testenv.Binaries(t), "kolejka-runc-init")); err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestConformanceLeanInit(t *testing.T) {
	workertest.Conformance(t, "runc", leanRuntime(t))
}

// Prepared containers are made through the lean init too, their
// kolejka-init then waiting at the gate, as kolejka-foreman runs them with
// warm on.
func TestConformanceWarmLeanInit(t *testing.T) {
	workertest.ConformanceWarm(t, "runc", leanRuntime(t))
}

// The task sees the same descriptors whichever init started its container:
// the sealed init handed over as descriptor 3 never reaches it.
func TestLeanInitLeavesNoDescriptor(t *testing.T) {
	fds := func(rt *runc.Runtime) string {
		e := workertest.NewEnv(t, rt)
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(`{"image": "kolejka-test:latest", "args": ["ls", "-l", "/proc/self/fd/"], "stdout": "out"}`), 0o644)
		res := filepath.Join(t.TempDir(), "r")
		r, err := e.W.Execute(context.Background(), dir, res, worker.Options{})
		if err != nil || r.Status != spec.StatusOK {
			t.Fatalf("listing the task's descriptors: %v, %+v", err, r)
		}
		out, err := os.ReadFile(filepath.Join(res, r.Stdout))
		if err != nil {
			t.Fatal(err)
		}
		// The descriptors' numbers, and what each is when it is no pipe
		// (a pipe's inode differs from run to run).
		var names []string
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 8 {
				if len(f) > 10 && strings.HasPrefix(f[10], "pipe:") {
					f[10] = "pipe"
				}
				names = append(names, strings.Join(f[8:], " "))
			}
		}
		return strings.Join(names, "\n")
	}
	own, lean := fds(newRuntime(t)), fds(leanRuntime(t))
	if own != lean || strings.Contains(lean, "runc-init") || own == "" {
		t.Fatalf("the task's descriptors with the lean init:\n%s\nwith the binary's own:\n%s", lean, own)
	}
}

// The configured binary is what runs as the container's init: one that is
// not an init (true, under the lean init's name) fails every start.
func TestLeanInitIsWhatRuns(t *testing.T) {
	rt := newRuntime(t)
	fake := filepath.Join(t.TempDir(), "kolejka-runc-init")
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := rt.UseLeanInit(fake); err != nil {
		t.Fatal(err)
	}
	e := workertest.NewEnv(t, rt)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(`{"image": "kolejka-test:latest", "args": ["true"]}`), 0o644)
	r, err := e.W.Execute(context.Background(), dir, filepath.Join(t.TempDir(), "r"), worker.Options{})
	if err == nil || r == nil || r.Status != spec.StatusSE {
		t.Fatalf("a container started through /bin/true as its init: %v, %+v", err, r)
	}
}

// What the containers' processes could reach of the init binary is sealed:
// it cannot be opened for writing, and the host's file stays as it was.
func TestLeanInitIsSealed(t *testing.T) {
	rt := leanRuntime(t)
	f := runc.LeanInitFile(rt)
	if f == nil {
		t.Fatal("no sealed init after UseLeanInit")
	}
	host := filepath.Join(testenv.Binaries(t), "kolejka-runc-init")
	before, err := os.ReadFile(host)
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), os.O_WRONLY, 0)
	if err == nil {
		w.Close()
		t.Fatal("the sealed init opened for writing")
	}
	if !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EACCES) {
		t.Fatalf("opening the sealed init for writing: %v, want EROFS or EPERM", err)
	}
	after, err := os.ReadFile(host)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("the host's init changed (%v)", err)
	}
}

// Only a binary called kolejka-runc-init is taken: hop.go recognises the
// descriptor by that name, and anything else would silently not be used.
func TestLeanInitName(t *testing.T) {
	rt, err := runc.New(filepath.Join(t.TempDir(), "state"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.UseLeanInit("/bin/true"); err == nil || !strings.Contains(err.Error(), "kolejka-runc-init") {
		t.Fatalf("UseLeanInit(/bin/true) = %v, want a refusal naming kolejka-runc-init", err)
	}
}
