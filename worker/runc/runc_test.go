package runc_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/worker/image"
	"github.com/kolejka-go/kolejka/worker/runc"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// newRuntime makes a runc runtime with the test image imported into a
// private store.
func newRuntime(t testing.TB) *runc.Runtime {
	t.Helper()
	testenv.RequireRoot(t)
	requireSeccomp(t)
	img := testenv.TestImage(t)
	return newRuntimeIn(t, t.TempDir(), img)
}

// newRuntimeIn is newRuntime with its image store and state in dir.
func newRuntimeIn(t testing.TB, dir, img string) *runc.Runtime {
	t.Helper()
	store, err := image.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Import(context.Background(), "kolejka-test:latest", filepath.Join(img, "rootfs.tar")); err != nil {
		t.Fatal(err)
	}
	rt, err := runc.New(filepath.Join(dir, "state"), store)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestConformance(t *testing.T) {
	workertest.Conformance(t, "runc", newRuntime(t))
}

func TestConformanceBesideObserver(t *testing.T) {
	workertest.ConformanceBesideObserver(t, "runc", newRuntime(t))
}

// A state folder Sweep cannot list may hide live containers of dead runs:
// Sweep reports it. A file in the folder's place makes ReadDir fail
// (ENOTDIR) even for root, whom no permission bits stop.
func TestSweepReportsAnUnreadableStateFolder(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	rt, err := runc.New(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	none := func(string) bool { return false }
	if err := rt.Sweep(context.Background(), none); err != nil {
		t.Fatalf("sweeping an empty state folder: %v", err)
	}
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rt.Sweep(context.Background(), none); !errors.Is(err, syscall.ENOTDIR) || !strings.Contains(err.Error(), state) {
		t.Fatalf("Sweep returned %v, want the state folder's ENOTDIR, naming it", err)
	}
}

// requireSeccomp: the runtime under test is the one `make` builds, with
// libcontainer's seccomp support; the escape task expects its filter.
func requireSeccomp(t testing.TB) {
	t.Helper()
	if !runc.SeccompBuilt {
		testenv.Missing(t, "the runc runtime's seccomp filter: test with -tags seccomp (make sets it)")
	}
}

func TestConformanceWarm(t *testing.T) {
	workertest.ConformanceWarm(t, "runc", newRuntime(t))
}
