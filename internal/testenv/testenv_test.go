package testenv

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	RunHelpers(Helpers{
		// echo says "ready ARG", then echoes each line back upper-cased
		// until stdin ends, and exits with the number of lines it read.
		"echo": func(arg string) int {
			fmt.Println("ready", arg)
			in := bufio.NewScanner(os.Stdin)
			n := 0
			for in.Scan() {
				fmt.Println(strings.ToUpper(in.Text()))
				n++
			}
			return n
		},
		"pause": func(string) int {
			_ = unix.Pause() // until a signal ends it
			return 0
		},
	})
	os.Exit(m.Run())
}

func TestHelper(t *testing.T) {
	h := StartHelper(t, "echo", "one two", nil)
	if l := h.Line(); l != "ready one two" {
		t.Fatalf("first line %q", l)
	}
	for _, s := range []string{"abc", "x y"} {
		h.Send(s)
		if l := h.Line(); l != strings.ToUpper(s) {
			t.Errorf("echo of %q: %q", s, l)
		}
	}
	if ws := h.Wait(); !ws.Exited() || ws.ExitStatus() != 2 {
		t.Errorf("exit status %v, want 2 (the lines read)", ws)
	}
}

func TestHelperKilledAtCleanup(t *testing.T) {
	var pid int
	t.Run("start", func(t *testing.T) {
		pid = StartHelper(t, "pause", "", nil).Pid()
	})
	// The subtest's cleanup killed and reaped it: the pid is gone.
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("helper %d after its test's cleanup: kill(0) = %v, want ESRCH", pid, err)
	}
}

func TestHelperUnknown(t *testing.T) {
	cmd := HelperCommand("no-such-helper", "")
	cmd.Stderr = nil
	err := cmd.Run()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.ExitStatus() != 2 {
		t.Errorf("an unknown helper: %v, want exit status 2", err)
	}
}

// CgroupLayout agrees with the mount table.
func TestCgroupLayout(t *testing.T) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("no mount table: %v", err)
	}
	defer f.Close()
	types := map[string]string{} // mount point → file system type
	s := bufio.NewScanner(f)
	for s.Scan() {
		// ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
		fields := strings.Fields(s.Text())
		for i, x := range fields {
			if x == "-" && i+1 < len(fields) {
				types[fields[4]] = fields[i+1]
			}
		}
	}
	want := ""
	switch {
	case types["/sys/fs/cgroup"] == "cgroup2":
		want = Unified
	case types["/sys/fs/cgroup/unified"] == "cgroup2":
		want = Hybrid
	case types["/sys/fs/cgroup"] == "tmpfs" || types["/sys/fs/cgroup"] == "cgroup":
		want = Legacy
	}
	if got := CgroupLayout(); got != want {
		t.Errorf("CgroupLayout() = %q, the mount table says %q (%v)", got, want, types["/sys/fs/cgroup"])
	}
}

func TestWaitFor(t *testing.T) {
	n := 0
	WaitFor(t, time.Minute, "three polls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("cond called %d times, want 3", n)
	}
	ft := run(t, func(tb testing.TB) { WaitFor(tb, 50*time.Millisecond, "never", func() bool { return false }) })
	if !strings.Contains(ft.msg, "never: not within 50ms") {
		t.Errorf("a condition that never holds: %q", ft.msg)
	}
}

// fatalTB records Fatalf and Skipf and ends its goroutine, as testing
// does.
type fatalTB struct {
	testing.TB
	msg     string
	skipped bool
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fatalTB) Skipf(format string, args ...any) {
	f.skipped = true
	f.Fatalf(format, args...)
}

// run calls fn with a fatalTB in a goroutine of its own, and returns it.
func run(t *testing.T, fn func(testing.TB)) *fatalTB {
	ft := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ft)
	}()
	<-done
	return ft
}

// A test of another layout than the host's skips, and fails only in a
// strict run told it is on that layout.
func TestRequireCgroupLayout(t *testing.T) {
	host := CgroupLayout()
	other := Unified
	if host == Unified {
		other = Hybrid
	}
	for _, c := range []struct {
		strict, layout string
		want           string // "pass", "skip" or "fail"
	}{
		{"", "", "skip"},
		{"1", "", "skip"},
		{"1", host, "skip"},
		{"", other, "skip"},
		{"1", other, "fail"},
	} {
		t.Setenv("KOLEJKA_REQUIRE_PRIVILEGED", c.strict)
		t.Setenv(layoutEnv, c.layout)
		ft := run(t, func(tb testing.TB) { RequireCgroupLayout(tb, other) })
		got := map[bool]string{true: "skip", false: "fail"}[ft.skipped]
		if ft.msg == "" {
			got = "pass"
		}
		if got != c.want {
			t.Errorf("needing %s on a %s host, strict %q, %s=%q: %s (%s), want %s", other, host, c.strict, layoutEnv, c.layout, got, ft.msg, c.want)
		}
	}
	t.Setenv("KOLEJKA_REQUIRE_PRIVILEGED", "1")
	t.Setenv(layoutEnv, host)
	if ft := run(t, func(tb testing.TB) { RequireCgroupLayout(tb, host) }); ft.msg != "" {
		t.Errorf("needing the host's own layout %s: %s", host, ft.msg)
	}
}
