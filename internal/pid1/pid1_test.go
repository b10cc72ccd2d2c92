package pid1

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

func TestParse(t *testing.T) {
	o, err := parse([]string{"--gate", "/g/socket", "--lo-up", "--", "sh", "-c", "--gate"})
	if err != nil {
		t.Fatal(err)
	}
	if o.gate != "/g/socket" || !o.loUp || strings.Join(o.args, " ") != "sh -c --gate" {
		t.Fatalf("%+v", o)
	}
	o, err = parse([]string{"--stdin", "/s/in", "--stdout", "/s/out", "--stderr", "/s/err", "--", "cat", "--stdin", "x"})
	if err != nil {
		t.Fatal(err)
	}
	if o.stdin != "/s/in" || o.stdout != "/s/out" || o.stderr != "/s/err" || strings.Join(o.args, " ") != "cat --stdin x" {
		t.Fatalf("%+v", o)
	}
	o, err = parse([]string{"--gate", "/g/socket", "--env-file", "/s/env", "--env-file", "/g/env", "--args-file", "/g/args"})
	if err != nil {
		t.Fatal(err)
	}
	if o.envFile != "/g/env" || o.argsFile != "/g/args" || o.args != nil {
		t.Fatalf("%+v: want the last --env-file and the args file", o)
	}
	for _, bad := range [][]string{{}, {"--"}, {"sh"}, {"--gate"}, {"--what", "--", "sh"}, {"--stdin"}, {"--stdout", "--"}, {"--stderr", "x"},
		{"--args-file", "/g/args", "--", "sh"}, {"--args-file"}} {
		if _, err := parse(bad); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}

// Kolejka's stage2 exits with Python's returncode, −N for signal N: the
// exit status 256−N.
func TestStatusCode(t *testing.T) {
	// A wait status: exit code in bits 8-15; a signal in the low bits.
	if got := statusCode(unix.WaitStatus(3 << 8)); got != 3 {
		t.Errorf("exit 3 → %d", got)
	}
	if got := statusCode(unix.WaitStatus(unix.SIGKILL)); got != 247 {
		t.Errorf("SIGKILL → %d, want 247", got)
	}
	if got := statusCode(unix.WaitStatus(unix.SIGSEGV)); got != 245 {
		t.Errorf("SIGSEGV → %d, want 245", got)
	}
}

// lockedBuffer is an output buffer a test may read while the command's
// copier goroutine writes to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start starts the real kolejka-init without a gate.
func start(t *testing.T, args ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	out := &lockedBuffer{}
	cmd := exec.Command(testenv.InitBinary(t), append([]string{"--"}, args...)...)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	err := cmd.Wait()
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatal(err)
	return -1
}

func TestMirrorsTheExitStatus(t *testing.T) {
	cmd, _ := start(t, "sh", "-c", "exit 7")
	if got := exitCode(t, cmd); got != 7 {
		t.Errorf("exit %d, want 7", got)
	}
	cmd, _ = start(t, "sh", "-c", "kill -SEGV $$")
	if got := exitCode(t, cmd); got != 256-int(syscall.SIGSEGV) {
		t.Errorf("exit %d, want %d (256−SIGSEGV, as Kolejka's stage2)", got, 256-int(syscall.SIGSEGV))
	}
}

// The task's argv and environment come from files, so that only init's
// own exec of the task can meet the kernel's limit on their size; an
// argument past it is the task's failure to start (126), explained.
func TestArgsFile(t *testing.T) {
	dir := t.TempDir()
	args, env := filepath.Join(dir, "args"), filepath.Join(dir, "env")
	run := func(argv []string, environ string) (int, string) {
		t.Helper()
		data := ""
		for _, a := range argv {
			data += a + "\x00"
		}
		os.WriteFile(args, []byte(data), 0o644)
		os.WriteFile(env, []byte(environ), 0o644)
		var out bytes.Buffer
		cmd := exec.Command(testenv.InitBinary(t), "--env-file", env, "--args-file", args)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return exitCode(t, cmd), out.String()
	}
	if code, out := run([]string{"sh", "-c", `printf '%s|' "$0" "$1" "$A"`, "", "x y"}, "A=1\x00PATH=/bin:/usr/bin\x00"); code != 0 || out != "|x y|1|" {
		t.Errorf("exit %d, output %q; want 0, %q", code, out, "|x y|1|")
	}
	code, out := run([]string{"true", strings.Repeat("a", 200<<10)}, "PATH=/bin:/usr/bin\x00")
	if code != ExitCannotExec || !strings.Contains(out, "argument list too long") || !strings.Contains(out, "131072 bytes per argument") {
		t.Errorf("a 200 KiB argument: exit %d, output %q; want %d and why", code, short(out), ExitCannotExec)
	}
	// Variables each within the per-string limit, past the total: 3 MiB
	// under the usual 8 MiB stack limit, more under a larger one.
	limit := uint64(6 << 20)
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_STACK, &rl) == nil {
		limit = min(limit, rl.Cur/4)
	}
	environ := "PATH=/bin:/usr/bin\x00"
	for i := 0; uint64(i) < max(30, limit/(100<<10)+2); i++ {
		environ += fmt.Sprintf("V%d=%s\x00", i, strings.Repeat("b", 100<<10))
	}
	code, out = run([]string{"true"}, environ)
	if code != ExitCannotExec || !strings.Contains(out, "argument list too long") || !strings.Contains(out, "in all") {
		t.Errorf("a %d KiB environment: exit %d, output %q; want %d and why", len(environ)>>10, code, short(out), ExitCannotExec)
	}
	os.WriteFile(args, nil, 0o644)
	cmd := exec.Command(testenv.InitBinary(t), "--args-file", args)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, cmd); code != ExitUsage {
		t.Errorf("an empty args file: exit %d, want %d", code, ExitUsage)
	}
}

func short(s string) string {
	if len(s) > 400 {
		return s[:400] + "…"
	}
	return s
}

func TestForwardsSignals(t *testing.T) {
	cmd, out := start(t, "sh", "-c", `trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.05; done`)
	testenv.WaitFor(t, 5*time.Second, "the shell's trap set", func() bool { return strings.Contains(out.String(), "ready") })
	cmd.Process.Signal(syscall.SIGTERM)
	if got := exitCode(t, cmd); got != 5 || !strings.Contains(out.String(), "got TERM") {
		t.Fatalf("exit %d, output %q: SIGTERM was not forwarded", got, out)
	}
}

func TestCommandNotFound(t *testing.T) {
	cmd, out := start(t, "no-such-command-anywhere")
	if got := exitCode(t, cmd); got != ExitNotFound || !strings.Contains(out.String(), "no-such-command-anywhere") {
		t.Fatalf("exit %d, output %q", got, out)
	}
}

// initWithPaths runs kolejka-init with stdio given as paths; its own stdio
// is a buffer, which must stay empty when the paths are used.
func initWithPaths(t *testing.T, stdin, stdout, stderr string, args ...string) (int, string) {
	t.Helper()
	var own bytes.Buffer
	argv := []string{}
	for _, f := range [][2]string{{"--stdin", stdin}, {"--stdout", stdout}, {"--stderr", stderr}} {
		if f[1] != "" {
			argv = append(argv, f[0], f[1])
		}
	}
	cmd := exec.Command(testenv.InitBinary(t), append(append(argv, "--"), args...)...)
	cmd.Stdout = &own
	cmd.Stderr = &own
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill() // a blocking open would hang forever
		}
	}()
	code := exitCode(t, cmd)
	close(done)
	return code, own.String()
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestStdioFromPaths(t *testing.T) {
	dir := t.TempDir()
	in, out, errp := filepath.Join(dir, "in"), filepath.Join(dir, "out"), filepath.Join(dir, "err")
	os.WriteFile(in, []byte("from stdin\n"), 0o644)
	os.WriteFile(out, []byte("old content, longer than the new one\n"), 0o644) // truncated, as by ">"
	code, own := initWithPaths(t, in, out, errp, "sh", "-c", "cat; echo to-err >&2; echo to-out")
	if code != 0 || own != "" {
		t.Fatalf("exit %d, init's own output %q", code, own)
	}
	if got := readFile(t, out); got != "from stdin\nto-out\n" {
		t.Errorf("stdout file %q", got)
	}
	if got := readFile(t, errp); got != "to-err\n" {
		t.Errorf("stderr file %q", got)
	}
}

// One path for stdout and stderr is one descriptor: the streams keep their
// order. Two separate opens would each write from offset 0 and overwrite
// each other.
func TestSharedStdoutAndStderr(t *testing.T) {
	p := filepath.Join(t.TempDir(), "both")
	code, own := initWithPaths(t, "", p, p, "sh", "-c", "echo one; echo two >&2; echo three; echo four >&2")
	if code != 0 || own != "" {
		t.Fatalf("exit %d, init's own output %q", code, own)
	}
	if got := readFile(t, p); got != "one\ntwo\nthree\nfour\n" {
		t.Errorf("merged output %q", got)
	}
}

// kolejka-init's own messages go to the task's stderr once it is redirected.
// Only stdout and stderr share: a stderr of stdin's path is opened apart,
// for writing (and truncates it first, as "cat <f 2>f" in a shell does).
func TestStdinIsNeverShared(t *testing.T) {
	p := filepath.Join(t.TempDir(), "file")
	os.WriteFile(p, []byte("input\n"), 0o644)
	out := filepath.Join(t.TempDir(), "out")
	code, own := initWithPaths(t, p, out, p, "sh", "-c", "cat; echo err >&2")
	if code != 0 || own != "" {
		t.Fatalf("exit %d, init's own output %q", code, own)
	}
	if got := readFile(t, out); got != "" {
		t.Errorf("stdout %q", got)
	}
	if got := readFile(t, p); got != "err\n" {
		t.Errorf("stderr file %q", got)
	}
}

func TestCommandNotFoundGoesToTheStderrPath(t *testing.T) {
	p := filepath.Join(t.TempDir(), "err")
	code, own := initWithPaths(t, "", "", p, "no-such-command-anywhere")
	if code != ExitNotFound || own != "" {
		t.Fatalf("exit %d, init's own output %q", code, own)
	}
	if got := readFile(t, p); !strings.Contains(got, "no-such-command-anywhere: command not found") {
		t.Errorf("stderr file %q", got)
	}
}

func TestUnopenableStdioIsAUsageError(t *testing.T) {
	code, own := initWithPaths(t, filepath.Join(t.TempDir(), "missing"), "", "", "true")
	if code != ExitUsage || !strings.Contains(own, "unable to open") {
		t.Fatalf("exit %d, output %q", code, own)
	}
}

func mkfifo(t *testing.T, p string) {
	t.Helper()
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
}

// FIFOs, as the Docker runtime uses them. Opening a FIFO normally blocks
// until its other end is open; kolejka-init must never hang there. A
// stdout FIFO without a reader is an error at once; with readers and
// writers as the runtime holds them, data flows both ways, and the task
// gets blocking descriptors (a task reading an empty stdin FIFO waits for
// data instead of failing with EAGAIN).
func TestStdioFIFOs(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	mkfifo(t, in)
	mkfifo(t, out)

	code, own := initWithPaths(t, "", out, "", "true")
	if code != ExitUsage || !strings.Contains(own, "unable to open") {
		t.Fatalf("stdout FIFO without a reader: exit %d, output %q", code, own)
	}

	// The runtime's ends: a reader for stdout (and a writer keeping it from
	// seeing EOF before init opens its end), a writer for stdin (and a
	// reader keeping the pipe, and what was written, alive until then).
	outR, err := os.OpenFile(out, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	outKeep, err := os.OpenFile(out, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	inKeep, err := os.OpenFile(in, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer inKeep.Close()
	inW, err := os.OpenFile(in, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	copied := make(chan string, 1)
	echoed := make(chan struct{}) // cat has written "early" out: it read it and waits for more
	go func() {
		var got strings.Builder
		in := bufio.NewReader(outR)
		for {
			line, err := in.ReadString('\n')
			got.WriteString(line)
			if line == "early\n" {
				close(echoed)
			}
			if err != nil {
				break
			}
		}
		copied <- got.String()
	}()
	go func() {
		inW.Write([]byte("early\n"))
		select {
		case <-echoed:
		case <-time.After(10 * time.Second): // the test fails on the output
		}
		inW.Write([]byte("late\n"))
		inW.Close()
	}()
	code, own = initWithPaths(t, in, out, "", "sh", "-c", "cat; echo end")
	outKeep.Close() // init and the task are gone: EOF comes now
	if code != 0 || own != "" {
		t.Fatalf("exit %d, init's own output %q", code, own)
	}
	select {
	case got := <-copied:
		if got != "early\nlate\nend\n" {
			t.Errorf("stdout through the FIFO %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no EOF on the stdout FIFO")
	}
}

// The gate protocol as the worker speaks it: ready (task stopped), go,
// then exit with the task's code the moment it ends.
func TestGateProtocol(t *testing.T) {
	_, sock, ln := listenGate(t)
	_, conn := startAtGate(t, ln, "--gate", sock, "--", "sh", "-c", "exit 7")
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != MsgReady {
		t.Fatalf("first message %q %v", buf[:n], err)
	}
	// The task is held, stopped: no exit comes before go.
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("message %q before go", buf[:n])
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(MsgGo)); err != nil {
		t.Fatal(err)
	}
	n, err = conn.Read(buf)
	if err != nil || string(buf[:n]) != MsgExit+" 7 0" {
		t.Fatalf("exit message %q %v", buf[:n], err)
	}
}

// listenGate is a gate socket in a folder of the test's, as the worker
// makes one.
func listenGate(t *testing.T) (dir, sock string, ln *net.UnixListener) {
	t.Helper()
	dir = t.TempDir()
	sock = filepath.Join(dir, "gate")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return dir, sock, ln
}

// startAtGate starts kolejka-init with argv and takes its connection to
// ln; whatever the test leaves running is killed at its end.
func startAtGate(t *testing.T, ln *net.UnixListener, argv ...string) (*exec.Cmd, *net.UnixConn) {
	t.Helper()
	cmd := exec.Command(testenv.InitBinary(t), argv...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	return cmd, conn
}

// With --await (a prepared container's init), init connects and waits for
// "start" before it reads its command, environment and stdio: all three
// are written only then, as the worker writes them when a task arrives.
func TestGateAwait(t *testing.T) {
	dir, sock, ln := listenGate(t)
	args, env, out := filepath.Join(dir, "args"), filepath.Join(dir, "env"), filepath.Join(dir, "out")
	cmd, conn := startAtGate(t, ln, "--gate", sock, "--await", "--args-file", args, "--env-file", env, "--stdout", out)
	// Nothing is said before start: there is no task yet.
	buf := make([]byte, 64)
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("message %q before start", buf[:n])
	}
	if err := os.WriteFile(args, []byte("sh\x00-c\x00echo $X; exit 3\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(env, []byte("X=written-late\x00PATH=/usr/bin:/bin\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	for _, step := range []struct{ send, want string }{{MsgStart, MsgReady}, {MsgGo, MsgExit + " 3 0"}} {
		if _, err := conn.Write([]byte(step.send)); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != step.want {
			t.Fatalf("after %q: %q %v, want %q", step.send, buf[:n], err, step.want)
		}
	}
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 3 {
		t.Errorf("init's exit %v, want 3", err)
	}
	if got, _ := os.ReadFile(out); string(got) != "written-late\n" {
		t.Errorf("stdout %q", got)
	}
}

// An awaiting init whose worker goes away (a prepared container destroyed
// unused) exits without running anything.
func TestGateAwaitAbandoned(t *testing.T) {
	dir, sock, ln := listenGate(t)
	marker := filepath.Join(dir, "ran")
	args := filepath.Join(dir, "args")
	if err := os.WriteFile(args, []byte("touch\x00"+marker+"\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, conn := startAtGate(t, ln, "--gate", sock, "--await", "--args-file", args)
	conn.Close()
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != ExitUsage {
		t.Errorf("exit %d, want %d", code, ExitUsage)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran without a start")
	}
}

func TestParseAwait(t *testing.T) {
	o, err := parse([]string{"--gate", "/g/socket", "--await", "--args-file", "/g/args"})
	if err != nil || !o.await || o.argsFile != "/g/args" {
		t.Errorf("parse = %+v, %v", o, err)
	}
	for _, argv := range [][]string{
		{"--await", "--args-file", "/g/args"},            // no gate to wait at
		{"--gate", "/g/socket", "--await", "--", "true"}, // the command must come later
	} {
		if _, err := parse(argv); err == nil || !strings.Contains(err.Error(), "--await") {
			t.Errorf("parse(%q) = %v, want an error naming --await", argv, err)
		}
	}
}
