package cgroup

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

// The test binary doubles as the processes the real-cgroup tests measure
// (internal/testenv's helpers). Every helper prints "ready", blocks until
// it reads a line on stdin (the test moves it into a group meanwhile), then
// does its work, so the group sees the work from its first instruction.
func TestMain(m *testing.M) {
	testenv.RunHelpers(testenv.Helpers{
		"spin":         helperSpin,
		"spin-forever": helperSpinForever,
		"alloc":        helperAlloc,
		"reaper":       helperReaper,
	})
	os.Exit(m.Run())
}

// gate says "ready" and waits for the test's line.
func gate(in *bufio.Reader) {
	fmt.Println("ready")
	if _, err := in.ReadString('\n'); err != nil {
		os.Exit(3)
	}
}

// helperSpin spins until this process used arg of CPU time since the gate
// opened, then reports how much exactly, by its own account (getrusage).
// CPU time, not wall time: the host may be busy.
func helperSpin(arg string) int {
	d, err := time.ParseDuration(arg)
	if err != nil {
		return 2
	}
	gate(bufio.NewReader(os.Stdin))
	before := rusage()
	after := before
	for after.total()-before.total() < d {
		spin(1 << 16)
		after = rusage()
	}
	fmt.Printf("%d %d\n", after.total()-before.total(), after.user-before.user)
	return 0
}

// helperSpinForever spins until it is killed.
func helperSpinForever(string) int {
	gate(bufio.NewReader(os.Stdin))
	for {
		spin(1 << 20)
	}
}

// helperAlloc maps arg bytes, touches every page, says "done", and holds
// them until stdin closes.
func helperAlloc(arg string) int {
	n, err := strconv.Atoi(arg)
	if err != nil {
		return 2
	}
	in := bufio.NewReader(os.Stdin)
	gate(in)
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		fmt.Println("mmap:", err)
		return 1
	}
	for i := 0; i < n; i += os.Getpagesize() {
		b[i] = 1
	}
	fmt.Println("done")
	_, _ = io.Copy(io.Discard, in)
	return 0
}

// helperReaper runs `sh -c arg` (stdin inherited, so the script can wait
// on the gate itself), prints "ready PID" with the shell's pid, and reaps
// it and every orphan it leaves until none is left. PID 1 of some
// sandboxes does not reap, so without this a fork bomb's orphans would
// stay zombies forever.
func helperReaper(arg string) int {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return 2
	}
	cmd := exec.Command("/bin/sh", "-c", arg)
	cmd.Stdin = os.Stdin
	if err := cmd.Start(); err != nil {
		return 2
	}
	fmt.Printf("ready %d\n", cmd.Process.Pid)
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.ECHILD) {
			return 0
		}
	}
}

var sink uint64

func spin(n int) {
	x := sink
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	sink = x
}

type usageTimes struct{ user, sys time.Duration }

func (u usageTimes) total() time.Duration { return u.user + u.sys }

func rusage() usageTimes {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return usageTimes{
		user: time.Duration(ru.Utime.Nano()),
		sys:  time.Duration(ru.Stime.Nano()),
	}
}

// helper is a running helper process.
type helper struct {
	*testenv.Helper
	pid int // of the process to move: the helper, or the reaper's shell
}

// startHelper starts a helper and waits until it is ready (blocked on its
// gate). It is killed and reaped at cleanup if still running.
func startHelper(t *testing.T, mode, arg string) *helper {
	t.Helper()
	h := testenv.StartHelper(t, mode, arg, nil)
	p := &helper{Helper: h, pid: h.Pid()}
	ready := p.line()
	if mode == "reaper" {
		pid, err := strconv.Atoi(strings.TrimPrefix(ready, "ready "))
		if err != nil {
			t.Fatalf("reaper said %q", ready)
		}
		p.pid = pid
	} else if ready != "ready" {
		t.Fatalf("helper %s said %q, want ready", mode, ready)
	}
	return p
}

// line returns the helper's next output line (testenv.HelperTimeout at
// most).
func (p *helper) line() string { return p.Line() }

// release opens the gate.
func (p *helper) release() { p.Send("go") }

// wait waits for the helper to exit (testenv.HelperTimeout at most) and
// returns its status.
func (p *helper) wait() syscall.WaitStatus { return p.Wait() }

// requirePrivileged returns the host hierarchy if this process can create
// cgroups in it. Otherwise it skips the test with the reason, or fails it
// when KOLEJKA_REQUIRE_PRIVILEGED=1 (CI, which must run these tests).
func requirePrivileged(t testing.TB) *Hierarchy {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		testenv.Missing(t, "a real cgroup hierarchy: "+format, args...)
	}
	if os.Geteuid() != 0 {
		skip("needs root (euid is %d)", os.Geteuid())
	}
	h, err := Host()
	if err != nil {
		skip("%v", err)
	}
	d, err := h.Delegation(os.Getpid())
	if err != nil {
		skip("%v", err)
	}
	if err := probeWritable(h.dirs(path.Join(d, "kolejka-test-probe-"+randomName()))[0]); err != nil {
		skip("cgroups are not writable: %v", err)
	}
	return h
}

func probeWritable(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	return syscall.Rmdir(dir)
}

func randomName() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testBase is the group below which the tests make theirs: kolejka-test
// below the group delegated to this process (see Delegation; the root of
// the hierarchy without one), once this process's own processes have left
// the way (MakeRoom), as a service's would.
func testBase(t testing.TB, h *Hierarchy) string {
	t.Helper()
	d, err := h.Delegation(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	base := path.Join(d, "kolejka-test")
	if _, err := h.MakeRoom(base, os.Getpid(), "supervisor"); err != nil {
		t.Fatal(err)
	}
	return base
}

// testRoot returns a fresh path <testBase>/<random> for one test, and
// removes whatever the test left there (processes included) at cleanup.
func testRoot(t testing.TB, h *Hierarchy) string {
	t.Helper()
	base := testBase(t, h)
	root := base + "/" + randomName()
	t.Cleanup(func() {
		if g, err := h.Load(root); err == nil {
			if err := g.Delete(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		for _, d := range h.dirs(base) {
			_ = syscall.Rmdir(d) // fails while other tests use it
		}
	})
	return root
}

func mustCreate(t *testing.T, h *Hierarchy, p string, r *Resources) *Group {
	t.Helper()
	g, err := h.Create(p, r)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func mustUsage(t *testing.T, g *Group) *Usage {
	t.Helper()
	u, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func ptr(v int64) *int64 { return &v }

const MiB = 1 << 20

// fileIn returns the path of a control file of group p: for v1 in the
// hierarchy of controller.
func fileIn(h *Hierarchy, controller, p, name string) string {
	if h.Mode() == Unified {
		return filepath.Join(h.mount, p, name)
	}
	return filepath.Join(h.dir(controller, p), name)
}

// writeFiles makes dir (and parents) and writes files into it.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
