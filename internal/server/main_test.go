package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

// TestMain runs the test binary re-executed as a bare server (for the
// crash test, which kill -9s it) when it is started as that helper.
func TestMain(m *testing.M) {
	testenv.RunHelpers(testenv.Helpers{"server": runChild, "server-short-lease": runShortLeaseChild, "server-die-at-fire": runDyingChild})
	code := m.Run()
	pgtest.Stop()
	s3test.Stop()
	os.Exit(code)
}

// runChild serves dir on a loopback port it prints as "listening ADDR".
func runChild(dir string) int { return serveChild(dir, "", false) }

// runShortLeaseChild is runChild whose tasks' leases last 10 s, for a
// node that never heartbeats: a dequeue committed whose answer the kill
// cut off (the node never learns of its tasks) is handed out again within
// the test's wait, as a real lease's expiry would, later.
func runShortLeaseChild(dir string) int { return serveChild(dir, "", true) }

// runDyingChild is runChild whose first firing of a trigger kills it
// (SIGKILL, as kill -9) at the phase its argument names after the folder:
// "DIR|recorded" (the firing's transaction not committed) or
// "DIR|committed" (committed, the run not advanced).
func runDyingChild(arg string) int {
	dir, phase, _ := strings.Cut(arg, "|")
	return serveChild(dir, phase, false)
}

func serveChild(dir, dieAt string, shortLease bool) int {
	cfg := server.Config{
		DataDir:    dir,
		Database:   childDatabase(dir),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		GCInterval: time.Hour,
	}
	if shortLease {
		cfg.LeaseTime, cfg.LeaseMargin, cfg.DefaultTaskTime = 10*time.Second, time.Millisecond, time.Millisecond
	}
	if dieAt != "" {
		server.SetFireHook(&cfg, func(phase string) {
			if phase == dieAt {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {} // the signal is on its way
			}
		})
	}
	srv, err := server.Open(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("listening %s\n", ln.Addr())
	if err := srv.Serve(context.Background(), ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
