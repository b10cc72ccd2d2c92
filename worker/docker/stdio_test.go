package docker

// The FIFO plumbing on its own, with the real kolejka-init run on the host
// in place of a container (the FIFO folder is then "seen" at its host
// path). No engine needed: what is checked here is the ordering of opens,
// EOF and tear-down under every way a container can end.

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/worker"
)

// sink stands for one of the worker's captures: a pipe whose write end
// goes to the runtime and is closed by the "worker" right after newStdio,
// as worker.capture.closeWriter does after Start.
type sink struct {
	w    *os.File
	done chan []byte
}

func newSink(t *testing.T, stopAfter int) *sink {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{w: w, done: make(chan []byte, 1)}
	go func() {
		var buf bytes.Buffer
		if stopAfter >= 0 {
			// A capture aborted part-way: it stops reading and closes.
			io.CopyN(&buf, r, int64(stopAfter))
			r.Close()
		} else {
			io.Copy(&buf, r)
			r.Close()
		}
		s.done <- buf.Bytes()
	}()
	return s
}

// got waits for the sink's EOF.
func (s *sink) got(t *testing.T) string {
	t.Helper()
	select {
	case b := <-s.done:
		return string(b)
	case <-time.After(20 * time.Second):
		t.Fatal("the worker's side never saw EOF")
		return ""
	}
}

// runInit runs kolejka-init with the plumbing's flags, as the container
// would, and returns its exit code.
func runInit(t *testing.T, s *stdio, args ...string) int {
	t.Helper()
	cmd := exec.Command(testenv.InitBinary(t), append(append(append([]string{}, s.args...), "--"), args...)...)
	var own bytes.Buffer
	cmd.Stdout, cmd.Stderr = &own, &own
	err := cmd.Run()
	if own.Len() > 0 {
		t.Logf("kolejka-init's own output: %q", own.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}

// closeStdio tears down as Destroy does, failing on a hang (a copier that
// never ends).
func closeStdio(t *testing.T, s *stdio) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("close hangs: a copier did not end")
	}
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Errorf("FIFO folder left: %v", err)
	}
}

func stdinFile(t *testing.T, data []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stdin")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func newTestStdio(t *testing.T, c *worker.Container) *stdio {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "stdio")
	if c.Env == nil {
		// kolejka-init runs with exactly this environment (--env-file).
		c.Env = []string{"PATH=" + os.Getenv("PATH")}
	}
	s, err := newStdio(dir, dir, c)
	if err != nil {
		t.Fatal(err)
	}
	// The worker closes its copies once Start has returned.
	for _, f := range []*os.File{c.Stdin, c.Stdout, c.Stderr} {
		if f != nil {
			f.Close()
		}
	}
	return s
}

func TestStdioCopiesAllStreams(t *testing.T) {
	// Bigger than a FIFO's buffer, and written before kolejka-init opens
	// its end: the keeper must keep it.
	input := bytes.Repeat([]byte("0123456789abcdef"), 1<<14) // 256 KiB
	out, errs := newSink(t, -1), newSink(t, -1)
	s := newTestStdio(t, &worker.Container{Stdin: stdinFile(t, input), Stdout: out.w, Stderr: errs.w})
	if code := runInit(t, s, "sh", "-c", "cat; echo to-err >&2"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	s.containerGone()
	if got := out.got(t); got != string(input) {
		t.Errorf("stdout: %d bytes, want the %d bytes of stdin", len(got), len(input))
	}
	if got := errs.got(t); got != "to-err\n" {
		t.Errorf("stderr %q", got)
	}
	closeStdio(t, s)
}

func TestStdioMergedOutputKeepsOrder(t *testing.T) {
	both := newSink(t, -1)
	s := newTestStdio(t, &worker.Container{Stdout: both.w, Stderr: both.w})
	if !strings.Contains(strings.Join(s.args, " "), "--stdout "+s.dir+"/stdout --stderr "+s.dir+"/stdout") {
		t.Fatalf("stdout and stderr are not one FIFO: %q", s.args)
	}
	runInit(t, s, "sh", "-c", "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done")
	s.containerGone()
	want := "out1\nerr1\nout2\nerr2\nout3\nerr3\nout4\nerr4\nout5\nerr5\n"
	if got := both.got(t); got != want {
		t.Errorf("merged output %q, want %q", got, want)
	}
	closeStdio(t, s)
}

func TestStdioDevNullNeedsNoFIFO(t *testing.T) {
	null := func() *os.File {
		f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	s := newTestStdio(t, &worker.Container{Stdin: null(), Stdout: null(), Stderr: null()})
	if got := strings.Join(s.args, " "); got != "--env-file "+s.dir+"/env --stdin /dev/null --stdout /dev/null --stderr /dev/null" {
		t.Errorf("args %q", got)
	}
	if entries, _ := os.ReadDir(s.dir); len(entries) != 1 || entries[0].Name() != "env" {
		t.Errorf("FIFOs made for /dev/null: %v", entries)
	}
	if code := runInit(t, s, "sh", "-c", "cat; echo x"); code != 0 {
		t.Errorf("exit %d", code)
	}
	closeStdio(t, s)
}

// A container that dies before kolejka-init opens anything (or never
// starts): the worker's side still sees EOF, and the stdin copier, stuck
// on a full FIFO no one will read, ends.
func TestStdioContainerThatNeverRan(t *testing.T) {
	out := newSink(t, -1)
	s := newTestStdio(t, &worker.Container{Stdin: stdinFile(t, make([]byte, 1<<20)), Stdout: out.w, Stderr: out.w})
	s.containerGone()
	if got := out.got(t); got != "" {
		t.Errorf("output %q from nothing", got)
	}
	closeStdio(t, s)
}

// A task that ignores most of its stdin: the copier ends with EPIPE once
// the container is gone, instead of blocking forever.
func TestStdioUnreadStdin(t *testing.T) {
	out := newSink(t, -1)
	s := newTestStdio(t, &worker.Container{Stdin: stdinFile(t, make([]byte, 4<<20)), Stdout: out.w, Stderr: out.w})
	if code := runInit(t, s, "sh", "-c", "head -c 10 >/dev/null; echo done"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	s.containerGone()
	if got := out.got(t); got != "done\n" {
		t.Errorf("output %q", got)
	}
	closeStdio(t, s)
}

// A flood is copied in full while the worker reads; when the worker's side
// stops reading (its capture aborted), the copier discards the rest, so
// the task is never blocked on a full FIFO.
func TestStdioFloodAndAbortedReader(t *testing.T) {
	const flood = 8 << 20
	full := newSink(t, -1)
	s := newTestStdio(t, &worker.Container{Stdout: full.w})
	if code := runInit(t, s, "head", "-c", "8388608", "/dev/zero"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	s.containerGone()
	if got := full.got(t); len(got) != flood {
		t.Errorf("copied %d bytes of %d", len(got), flood)
	}
	closeStdio(t, s)

	aborted := newSink(t, 1000)
	s = newTestStdio(t, &worker.Container{Stdout: aborted.w})
	finished := make(chan int, 1)
	go func() { finished <- runInit(t, s, "head", "-c", "8388608", "/dev/zero") }()
	select {
	case code := <-finished:
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the task blocked on its stdout once the worker stopped reading")
	}
	s.containerGone()
	if got := aborted.got(t); len(got) != 1000 {
		t.Errorf("the aborted reader got %d bytes", len(got))
	}
	closeStdio(t, s)
}
