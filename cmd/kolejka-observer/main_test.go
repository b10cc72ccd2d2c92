package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// The test binary is kolejka-observer itself as the helper asMain
// (testenv.RunHelpers, first in TestMain as main's re-exec hook is first in
// main), so the tests run the real command line, the daemon, its --detach
// and run's helper, without a build; the re-executed processes inherit the
// environment that makes them the helper.
const asMain = "main"

// testBaseName is the group these tests' cgroups live in, below the group
// delegated to this process (the daemon's tests in internal/observer/daemon,
// which may run at the same time, use kolejka-test-observer).
const testBaseName = "kolejka-test-observer-cmd"

func TestMain(m *testing.M) {
	testenv.RunHelpers(testenv.Helpers{asMain: func(string) int { main(); return 0 }})
	code := m.Run()
	if leaks := sessionLeftovers(); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: session cgroups left behind: %v\n", leaks)
		code = 1
	}
	os.Exit(code)
}

// sessionLeftovers lists session cgroups left below a testBaseName group,
// in every cgroup mount.
func sessionLeftovers() []string {
	var out []string
	for _, m := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/pids"} {
		_ = filepath.WalkDir(m, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), "kolejka_observer_") && strings.Contains(p, "/"+testBaseName+"/") {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// setup is one test's cgroups, socket and state folder.
type setup struct {
	t      *testing.T
	h      *cgroup.Hierarchy
	root   string
	socket string
	state  string
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	testenv.RequireRoot(t)
	h, err := cgroup.Host()
	if err != nil {
		testenv.Missing(t, "no usable cgroup hierarchy: %v", err)
	}
	d, err := h.Delegation(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	testBase := path.Join(d, testBaseName)
	if _, err := h.MakeRoom(testBase, os.Getpid(), "supervisor"); err != nil {
		t.Fatal(err)
	}
	s := &setup{t: t, h: h, root: testBase + "/" + randomName()}
	if _, err := h.Create(s.root+"/callers", nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if g, err := h.Load(s.root); err == nil {
			if err := g.Delete(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if kids, err := h.Children(testBase); err == nil && len(kids) == 0 {
			if g, err := h.Load(testBase); err == nil {
				g.Delete()
			}
		}
	})
	dir := t.TempDir()
	s.socket = filepath.Join(dir, "socket")
	s.state = filepath.Join(dir, "state")
	return s
}

func randomName() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// command is kolejka-observer with args, as this test binary.
func (s *setup) command(args ...string) *exec.Cmd {
	cmd := testenv.HelperCommand(asMain, "")
	cmd.Args = append([]string{os.Args[0]}, args...)
	cmd.Stderr = nil // each test decides
	return cmd
}

// daemon starts `kolejka-observer` in the foreground and waits until its
// socket answers; it is stopped with SIGTERM at cleanup.
func (s *setup) daemon() {
	s.t.Helper()
	cmd := s.command("--socket", s.socket, "--state", s.state, "--sweep", s.root, "-v")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				s.t.Errorf("the daemon's stop: %v", err)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			s.t.Errorf("the daemon did not stop on SIGTERM")
		}
	})
	s.waitSocket()
}

func (s *setup) waitSocket() {
	s.t.Helper()
	testenv.WaitFor(s.t, 30*time.Second, "the daemon's socket answers", func() bool {
		c, err := observer.Dial(s.socket)
		if err != nil {
			return false
		}
		defer c.CloseIdleConnections()
		_, err = c.Sessions()
		return err == nil
	})
}

// run runs `kolejka-observer ARGS` from a process in the callers group (a
// shell that waits until it is moved there, then becomes the command) and
// returns its stdout, stderr and exit code.
func (s *setup) run(args ...string) (string, string, int) {
	s.t.Helper()
	sh := exec.Command("/bin/sh", append([]string{"-c", `read x; exec "$0" "$@"`, os.Args[0]}, args...)...)
	sh.Env = s.command().Env
	stdin, _ := sh.StdinPipe()
	var out, errOut strings.Builder
	sh.Stdout, sh.Stderr = &out, &errOut
	if err := sh.Start(); err != nil {
		s.t.Fatal(err)
	}
	// A group of its own, as each judge process of a task has: on v2 a
	// group that got sessions below it takes no more processes.
	callers, err := s.h.Create(s.root+"/callers/"+randomName(), nil)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := callers.Add(sh.Process.Pid); err != nil {
		s.t.Fatal(err)
	}
	io.WriteString(stdin, "go\n")
	stdin.Close()
	err = sh.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

var preExec = regexp.MustCompile(`pre_exec_cpu=([0-9.]+[mµn]?s)`)

// TestRun runs kolejka-spin (a static spinner that prints its own
// getrusage) through `kolejka-observer run`, through a daemon and
// in-process: exit codes pass through (128+N for a signal), the stats JSON
// parses as Kolejka's, and the CPU matches the spinner's own figure within
// 2%. CPU time carries over an execve, so the spinner's figure also counts
// what its process did before (through a daemon, the helper that connected
// for it: a Go program, some milliseconds of CPU, more under -race), which
// the session rightly does not; run reports that part with -v
// (pre_exec_cpu) and the comparison takes it out.
func TestRun(t *testing.T) {
	s := newSetup(t)
	spin := filepath.Join(testenv.TestImage(t), "rootfs/usr/local/bin/kolejka-spin")
	s.daemon()
	for _, mode := range []struct{ name, socket string }{{"daemon", s.socket}, {"in-process", filepath.Join(t.TempDir(), "none")}} {
		t.Run(mode.name, func(t *testing.T) {
			// What is checked is a systematic error (the helper's CPU
			// counted, the first instructions missed), so the best of
			// three runs must be within 2%: on a machine shared with
			// other heavy tests one run has been seen 2.2% off.
			best, self := time.Duration(1<<62), time.Duration(0)
			for try := 0; try < 3 && best > self/50; try++ {
				out, errOut, code := s.run("-v", "--socket", mode.socket, "run", "--memory", "64M", "--pids", "16", "--time", "60", "--", spin, "0.5")
				if code != 0 {
					t.Fatalf("exit %d\n%s%s", code, out, errOut)
				}
				first, rest, _ := strings.Cut(out, "\n")
				us, err := strconv.ParseInt(strings.TrimPrefix(first, "rusage_us="), 10, 64)
				if err != nil {
					t.Fatalf("stdout %q", out)
				}
				st, err := spec.ParseStats([]byte(rest), "run's stdout")
				if err != nil {
					t.Fatalf("the stats do not parse: %v\n%s", err, rest)
				}
				if st.Time == nil || *st.Time < *st.CPU.Usage {
					t.Errorf("wall time %v below the CPU time %v", st.Time, *st.CPU.Usage)
				}
				m := preExec.FindStringSubmatch(errOut)
				if m == nil {
					t.Fatalf("no pre_exec_cpu in run -v's log:\n%s", errOut)
				}
				pre, _ := time.ParseDuration(strings.ReplaceAll(m[1], "µ", "u"))
				self = time.Duration(us)*time.Microsecond - pre
				diff := self - *st.CPU.Usage
				t.Logf("%s: session CPU %v, the spinner's own %v less %v before its execve: difference %v (%.2f%%)",
					mode.name, *st.CPU.Usage, self+pre, pre, diff, 100*float64(diff)/float64(self))
				best = min(best, max(diff, -diff))
				if want := mode.name == "daemon"; !strings.Contains(errOut, "daemon="+strconv.FormatBool(want)) {
					t.Errorf("measured by the daemon: want %v:\n%s", want, errOut)
				}
			}
			if best > self/50 {
				t.Errorf("session CPU differs from the spinner's own %v by %v, more than 2%%, in three runs", self, best)
			}
			for _, c := range []struct {
				args []string
				code int
			}{
				{[]string{"--", "sh", "-c", "exit 7"}, 7},
				{[]string{"--", "sh", "-c", "kill -9 $$"}, 137},
				{[]string{"--time", "300ms", "--", "sleep", "10"}, 137},
				{[]string{"--", "/no/such/command"}, 127},
				{[]string{}, 2},
				{[]string{"--memory", "64MiB", "--", "true"}, 2},
				{[]string{"--storage", "1G", "--", "true"}, 2},
			} {
				if _, errOut, code := s.run(append([]string{"--socket", mode.socket, "run"}, c.args...)...); code != c.code {
					t.Errorf("run %q: exit %d, want %d\n%s", c.args, code, c.code, errOut)
				}
			}
			file := filepath.Join(t.TempDir(), "stats.json")
			out, _, code := s.run("--socket", mode.socket, "run", "--stats-file", file, "--", "sh", "-c", "echo hello")
			b, err := os.ReadFile(file)
			if code != 0 || out != "hello\n" || err != nil {
				t.Errorf("--stats-file: exit %d, stdout %q, %v", code, out, err)
			} else if _, err := spec.ParseStats(b, file); err != nil {
				t.Errorf("--stats-file: %v", err)
			}
		})
	}
	// Every run closed its session in the daemon.
	c, err := observer.Dial(s.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	if n, err := c.Sessions(); n != 0 || err != nil {
		t.Errorf("%d sessions left open in the daemon (%v)", n, err)
	}
}

// TestDetach: --detach returns once the background daemon answers, with
// its pid in the pid file; SIGTERM stops it cleanly (socket and pid file
// removed).
func TestDetach(t *testing.T) {
	s := newSetup(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := s.command("--socket", s.socket, "--state", s.state, "--sweep", s.root, "--detach", "--pid-file", pidFile)
	var errOut strings.Builder
	cmd.Stderr = &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("--detach: %v\n%s", err, errOut.String())
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid == cmd.Process.Pid {
		t.Fatalf("pid file %q", b)
	}
	c, err := net.Dial("unix", s.socket)
	if err != nil {
		t.Fatalf("the socket does not answer right after --detach returned: %v", err)
	}
	fmt.Fprint(c, "GET / HTTP/1.1\r\n\r\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Errorf("GET / answered %q", line)
	}
	if sid, _ := unix.Getsid(pid); sid != pid {
		t.Errorf("the daemon's session id %d, want its own (setsid)", sid)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := func() bool { return syscall.Kill(pid, 0) != nil }
	defer func() {
		if !stopped() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}()
	testenv.WaitFor(t, 20*time.Second, "the detached daemon stops on SIGTERM", stopped)
	for _, f := range []string{s.socket, pidFile} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left after the stop (%v)", f, err)
		}
	}
	// A second --detach on a live socket fails, and says why.
	s.daemon()
	cmd = s.command("--socket", s.socket, "--state", s.state+"2", "--sweep", s.root, "--detach", "--pid-file", pidFile)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another observer") {
		t.Errorf("--detach on a live socket: %v\n%s", err, out)
	}
}
