// Package gridtest runs the commands of this tree as real processes, for
// the tests that drive whole grids (e2e/, hardening/): a runc image store
// holding the test image, processes with their output in a log file, and
// waiting on them. The binaries themselves come from testenv.Binaries.
package gridtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/worker/image"
)

// TestImage is the name the test image is imported under.
const TestImage = "kolejka-test:latest"

var (
	imgOnce sync.Once
	imgDir  string
	imgErr  error
)

// Images returns a runc image store holding the test image, made once per
// test binary and shared by every node; Cleanup removes it.
func Images(t testing.TB) string {
	t.Helper()
	img := testenv.TestImage(t)
	imgOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kolejka-gridtest-images-")
		if err != nil {
			imgErr = err
			return
		}
		imgDir = dir
		st, err := image.Open(dir)
		if err != nil {
			imgErr = err
			return
		}
		_, imgErr = st.Import(context.Background(), TestImage, filepath.Join(img, "rootfs.tar"))
	})
	if imgErr != nil {
		t.Fatalf("preparing the image store: %v", imgErr)
	}
	return imgDir
}

// Cleanup removes what Images and testenv.Binaries made for the whole test
// binary; TestMain calls it after the tests.
func Cleanup() {
	if imgDir != "" {
		os.RemoveAll(imgDir)
	}
	testenv.Cleanup()
}

// ChildEnv is the environment of the processes started here: ours without
// KOLEJKA_ variables (a developer's settings must not change what runs).
func ChildEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KOLEJKA_") {
			out = append(out, kv)
		}
	}
	return out
}

// Proc is a running command with its output appended to a log file.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  string
	from int64 // the log's size when the process started: its own lines follow
	done chan struct{}
	err  error
}

// Start starts argv with its output appended to log, in ChildEnv. The
// caller stops it.
func Start(t testing.TB, name, log string, argv ...string) *Proc {
	t.Helper()
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr, cmd.Env = f, f, ChildEnv()
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Log: log, from: fi.Size(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p
}

// Adopt is a Proc of a command the caller made and started itself (an
// environment or output files of its own), logging into log from its
// start.
func Adopt(cmd *exec.Cmd, name, log string) *Proc {
	p := &Proc{Name: name, Cmd: cmd, Log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// StartOwned is Start for a process nothing else stops: it is killed at
// the end of the test if it still runs.
func StartOwned(t testing.TB, name, log string, argv ...string) *Proc {
	t.Helper()
	p := Start(t, name, log, argv...)
	t.Cleanup(func() {
		if p.Running() {
			p.Kill9()
		}
	})
	return p
}

// Running reports whether the process has not ended yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) { _ = p.Cmd.Process.Signal(sig) }

// Wait waits up to d for the end and returns the exit code (-1: killed by a
// signal); ok is false if the process still runs.
func (p *Proc) Wait(d time.Duration) (code int, ok bool) {
	select {
	case <-p.done:
	case <-time.After(d):
		return 0, false
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode(), true
	}
	if p.err != nil {
		return -1, true
	}
	return 0, true
}

// Kill9 kills the process at once, as a crash or the OOM killer would.
func (p *Proc) Kill9() {
	p.Signal(syscall.SIGKILL)
	p.Wait(10 * time.Second)
}

// Logged waits up to d for a line of this process's own log containing s.
func (p *Proc) Logged(s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if data, _ := os.ReadFile(p.Log); int64(len(data)) > p.from && bytes.Contains(data[p.from:], []byte(s)) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LogLines returns the lines of a log file containing s.
func LogLines(path, s string) []string {
	data, _ := os.ReadFile(path)
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// Tail is the end of a log file (its last 60 lines), for failure messages.
func Tail(path string) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	return strings.Join(lines, "\n")
}

// WaitFor polls cond every 20 ms for up to d, and fails the test naming
// what it waited for if cond never holds.
func WaitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
