package workertest

import (
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/observer/daemon"
	"github.com/kolejka-go/kolejka/internal/testenv"
)

// BusyObserver starts a kolejka-observer daemon in this process on a socket
// of its own and keeps it busy the way judges keep a node's daemon busy: a
// loop of `kolejka-observer run -- true` (the command of testenv.Binaries),
// each a session made, used and closed. It returns the socket; the loop and
// the daemon stop at cleanup.
func BusyObserver(t testing.TB) string {
	t.Helper()
	cg, err := cgroup.Host()
	if err != nil {
		t.Fatal(err)
	}
	// No start-up sweep: the daemon must not touch the sessions of tests
	// running beside.
	reg, err := daemon.NewRegistry(cg, daemon.Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "observer.sock")
	ln, err := daemon.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := daemon.NewServer(reg, daemon.ServerOptions{})
	go func() { _ = srv.Serve(ln) }()
	// Registered before KeepBusy's, so run after it: the loop stops first.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = reg.Shutdown(ctx)
	})
	KeepBusy(t, socket)
	return socket
}

// KeepBusy runs `kolejka-observer run -- true` (the command of
// testenv.Binaries) against the daemon at socket, one after another, until
// cleanup, and returns how many have run so far. They run from a cgroup of
// their own below the test's delegation, as judges run inside their task's
// group: a daemon nests each session below its caller's group (on v2
// moving the group's processes into a leaf first), which must not be the
// test's own. Cleanup stops the loop and removes that group, with what an
// interrupted run left in it.
func KeepBusy(t testing.TB, socket string) func() int {
	t.Helper()
	bin := filepath.Join(testenv.Binaries(t), "kolejka-observer")
	cg, p := freshGroup(t, "kolejka-test-judges-")
	judges, err := cg.Create(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runs atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			if err := judge(bin, socket, judges.Path()+"/"+strconv.Itoa(i), cg); err != nil {
				t.Errorf("the busy loop's kolejka-observer run: %v", err)
				return
			}
			runs.Add(1)
		}
	}()
	t.Cleanup(func() {
		stop()
		wg.Wait()
		t.Logf("kolejka-observer ran %d judge sessions meanwhile", runs.Load())
		if err := judges.Delete(); err != nil {
			t.Errorf("removing the judges' cgroup: %v", err)
		}
	})
	return func() int { return int(runs.Load()) }
}

// judge runs one `kolejka-observer run -- true` in a new group p, as a
// judge runs in its task's group (each its own: on v2 a group that got a
// session below it takes no more processes), and removes the group after.
// A run is never cut short: a judge killed while the daemon makes its
// session would have the daemon make the session's group (and its missing
// parents) after this removed them, and leave them behind. The timeout
// only bounds a hung run.
func judge(bin, socket, p string, cg *cgroup.Hierarchy) error {
	g, err := cg.Create(p, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Gated until it is in its group: with no "go", it never runs.
	cmd := exec.CommandContext(ctx, "sh", "-c", `read x && exec "$@"`, "sh", bin, "--socket", socket, "run", "--", "true")
	stdin, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err == nil {
		if err = g.Add(cmd.Process.Pid); err == nil {
			_, err = io.WriteString(stdin, "go\n")
		}
		stdin.Close()
		if werr := cmd.Wait(); err == nil {
			err = werr
		}
	}
	if derr := g.Delete(); err == nil {
		err = derr
	}
	return err
}
