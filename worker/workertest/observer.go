package workertest

import (
	"context"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/cgroup"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/observer"
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
	reg, err := observer.NewRegistry(cg, observer.Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "observer.sock")
	ln, err := observer.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := observer.NewServer(reg, observer.ServerOptions{})
	go srv.Serve(ln)

	bin := filepath.Join(testenv.Binaries(t), "kolejka-observer")
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	runs := 0
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			cmd := exec.CommandContext(ctx, bin, "--socket", socket, "run", "--", "true")
			if out, err := cmd.CombinedOutput(); err != nil && ctx.Err() == nil {
				t.Errorf("the busy loop's kolejka-observer run: %v: %s", err, out)
				return
			}
			runs++
		}
	}()
	t.Cleanup(func() {
		stop()
		wg.Wait()
		t.Logf("the observer ran %d judge sessions beside the tasks", runs)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = reg.Shutdown(ctx)
	})
	return socket
}
