package testenv

// The test binary doubles as the helper processes some tests need (a
// process to move into a cgroup, a caller in a pid namespace of its own,
// a server to kill -9): a test starts the binary again with a helper's
// name in its environment, and TestMain's first call, RunHelpers, runs
// that helper instead of the tests.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

const (
	helperEnv    = "KOLEJKA_TEST_HELPER"
	helperArgEnv = "KOLEJKA_TEST_HELPER_ARG"
)

// Helpers are a test binary's helper processes by name: each gets the
// argument it was started with and returns its exit code.
type Helpers map[string]func(arg string) int

// RunHelpers runs the helper this process was started as and exits with
// its code; in the test process itself it returns at once. TestMain calls
// it before anything else:
//
//	func TestMain(m *testing.M) {
//		testenv.RunHelpers(testenv.Helpers{"spin": spin})
//		os.Exit(m.Run())
//	}
func RunHelpers(helpers Helpers) {
	name, ok := os.LookupEnv(helperEnv)
	if !ok {
		return
	}
	run := helpers[name]
	if run == nil {
		fmt.Fprintf(os.Stderr, "testenv: this test binary has no helper %q\n", name)
		os.Exit(2)
	}
	os.Exit(run(os.Getenv(helperArgEnv)))
}

// HelperCommand returns a command running the helper name with arg in a
// child process of the test binary (which runs no test there), its stderr
// the test's. The caller sets the rest and starts it.
func HelperCommand(name, arg string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+name, helperArgEnv+"="+arg)
	cmd.Stderr = os.Stderr
	return cmd
}

// HelperTimeout bounds each wait for a helper: generous, because a loaded
// CI machine makes a short helper take long.
const HelperTimeout = time.Minute

// Helper is a running helper process spoken to in lines: the test writes
// to its stdin and reads its stdout a line at a time.
type Helper struct {
	Cmd   *exec.Cmd
	t     testing.TB
	stdin io.WriteCloser
	lines chan string
}

// StartHelper starts HelperCommand(name, arg), with setup (if not nil)
// applied to the command first (a namespace, say). At t's cleanup its
// stdin is closed and, if it is still running, it is killed and reaped.
func StartHelper(t testing.TB, name, arg string, setup func(*exec.Cmd)) *Helper {
	t.Helper()
	cmd := HelperCommand(name, arg)
	if setup != nil {
		setup(cmd)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("unable to start helper %s: %v", name, err)
	}
	h := &Helper{Cmd: cmd, t: t, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		s := bufio.NewScanner(stdout)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			h.lines <- s.Text()
		}
		close(h.lines)
	}()
	t.Cleanup(func() {
		stdin.Close()
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill() // the test is over: whatever the helper does is moot
			_ = cmd.Wait()
		}
	})
	return h
}

// Pid is the helper's process id.
func (h *Helper) Pid() int { return h.Cmd.Process.Pid }

// Line returns the helper's next line of output, failing the test if the
// helper ends or stays silent for HelperTimeout.
func (h *Helper) Line() string {
	h.t.Helper()
	select {
	case l, ok := <-h.lines:
		if !ok {
			h.t.Fatalf("helper %d ended without a line", h.Pid())
		}
		return l
	case <-time.After(HelperTimeout):
		h.t.Fatalf("helper %d said nothing for %v", h.Pid(), HelperTimeout)
	}
	return ""
}

// Send writes line and a newline to the helper's stdin.
func (h *Helper) Send(line string) {
	h.t.Helper()
	if _, err := io.WriteString(h.stdin, line+"\n"); err != nil {
		h.t.Fatalf("unable to write to helper %d: %v", h.Pid(), err)
	}
}

// Wait closes the helper's stdin and waits for it to exit, at most
// HelperTimeout (then it is killed and the test fails); it returns the
// exit status.
func (h *Helper) Wait() syscall.WaitStatus {
	h.t.Helper()
	h.stdin.Close()
	done := make(chan struct{})
	go func() { _ = h.Cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(HelperTimeout):
		_ = h.Cmd.Process.Kill()
		<-done
		h.t.Fatalf("helper %d did not exit within %v", h.Pid(), HelperTimeout)
	}
	return h.Cmd.ProcessState.Sys().(syscall.WaitStatus)
}

// Kill kills the helper at once (SIGKILL) and reaps it.
func (h *Helper) Kill() {
	h.t.Helper()
	if err := h.Cmd.Process.Kill(); err != nil {
		h.t.Fatalf("unable to kill helper %d: %v", h.Pid(), err)
	}
	_ = h.Cmd.Wait() // killed: its status says so
}
