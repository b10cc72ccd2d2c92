package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/testenv"
)

// v1Mount returns the mount folder of the v1 hierarchy holding controller.
func v1Mount(t *testing.T, controller string) string {
	t.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if strings.Contains(","+m.VFSOptions+",", ","+controller+",") {
			return m.Mountpoint
		}
	}
	t.Skipf("no v1 hierarchy with %s", controller)
	return ""
}

// waitGone waits for the reaper to remove dir.
func waitGone(t *testing.T, dir string) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, dir+" goes once nothing uses it", func() bool {
		_, err := os.Stat(dir)
		return os.IsNotExist(err)
	})
}

// A host caller whose memory path exists in no other v1 hierarchy (as under
// systemd's v1 layout): the session there makes that path's folders in the
// other hierarchies, and they must not outlive their use, across an
// observer restart too.
func TestMadeParentsRemoved(t *testing.T) {
	h := requireHost(t)
	if h.Mode() == cgroup.Unified {
		t.Skip("cgroup v2: a process has one path, so a session makes no parent folders")
	}
	state := t.TempDir()
	opts := Options{StateDir: state, ReapInterval: 20 * time.Millisecond}
	e := newEnv(t, h, opts)
	memory, pids := v1Mount(t, "memory"), v1Mount(t, "pids")
	split := e.root + "/split/deeper"
	if err := os.MkdirAll(filepath.Join(memory, split), 0o755); err != nil {
		t.Fatal(err)
	}
	p := e.caller()
	if err := os.WriteFile(filepath.Join(memory, split, "cgroup.procs"), []byte(strconv.Itoa(p.pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := h.PathOf(p.pid); err != nil || got != split {
		t.Fatalf("the caller's path is %q (%v), want %q", got, err, split)
	}
	made := []string{filepath.Join(pids, e.root, "split"), filepath.Join(pids, split)}
	for _, d := range made {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Fatalf("%s exists before any session: %v", d, err)
		}
	}

	// A session opened (the caller stays out) makes the folders; its close
	// removes them at once.
	s, err := e.r.Open(p.pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range made {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("the session did not make %s: %v", d, err)
		}
	}
	if record, err := os.ReadFile(filepath.Join(state, madeFile)); err != nil || !strings.Contains(string(record), made[1]) {
		t.Errorf("the state folder does not record %s: %q, %v", made[1], record, err)
	}
	if _, err := e.r.Close(p.pid, s.ID, s.Secret); err != nil {
		t.Fatal(err)
	}
	for _, d := range made {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s outlived the session that made it: %v", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(state, madeFile)); !os.IsNotExist(err) {
		t.Errorf("the record of made folders outlived them: %v", err)
	}

	// An attached caller that detaches returns to its memory path in every
	// hierarchy, so it lives in a made folder: that stays while it does,
	// through a restart of the observer, and goes once it has exited.
	s, err = e.r.AttachNew(p.pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.r.Detach(p.pid, s.ID, s.Secret); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Close(p.pid, s.ID, s.Secret); err != nil {
		t.Fatal(err)
	}
	e.r.reap()
	if _, err := os.Stat(made[1]); err != nil {
		t.Fatalf("the folder the detached caller lives in is gone: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	opts.Logger = testLogger(t)
	r2, err := NewRegistry(h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r2.Shutdown(context.Background()) })
	for _, d := range made {
		waitGone(t, d)
	}
	if _, err := os.Stat(filepath.Join(memory, split)); err != nil {
		t.Errorf("the caller's own memory folder was removed: %v", err)
	}
}
