package docker

// The task's stdio through FIFOs. Docker cannot be handed descriptors, so
// the runtime makes a FIFO per stream in a folder of the run's scratch,
// bind-mounts that folder (read-only: a FIFO opens for writing on a
// read-only mount all the same) into the container, and tells kolejka-init
// to open the FIFOs as the task's stdio (--stdin, --stdout, --stderr).
// Goroutines copy between the FIFOs and the worker's files.
//
// The ordering that makes EOF come exactly once everything is written:
//
//  1. Before the container starts, the runtime opens its end of each FIFO
//     and a "keeper" of the other end: for stdout/stderr a write end it
//     never writes to, for stdin a read end it never reads from. The ends
//     are non-blocking, so no open waits for a peer, and Go's poller drives
//     them, so a Close always wakes a blocked copier.
//     Why keepers: a FIFO read without any writer returns EOF at once, so
//     the stdout copier, started before kolejka-init has opened its write
//     end, would stop before the first byte; and a FIFO no one holds open
//     loses its buffer, so stdin written (and closed) before kolejka-init
//     opens its read end would be lost.
//  2. kolejka-init opens its ends with O_NONBLOCK (it never waits for us
//     either), clears the flag for the task, and runs it.
//  3. The container's exit is reported only once its PID 1 has gone and the
//     kernel has killed and reaped every other process of its pid
//     namespace: no writer (or reader) of the FIFOs is left inside. Only
//     then are the keepers closed (process.watch, and Destroy for a
//     container that never ran).
//  4. The stdout/stderr copiers read what is buffered, then EOF, and close
//     their copies of the worker's files: the worker's captures see EOF.
//     The stdin copier ends at the end of its input, or with EPIPE once no
//     reader is left (a task need not read all its stdin).
//
// Under an output flood the copier keeps reading; the worker's capture
// drains past its cap and kills the task, which ends the container, which
// ends the copy. If the worker's side stops reading (its capture aborted),
// the copier discards the rest instead of blocking the task.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/worker"
)

// ContainerStdioDir is where the FIFOs are seen inside the container.
const ContainerStdioDir = worker.ContainerDir + "/stdio"

// devNull is the container's own /dev/null: a stream the worker discards
// (or an empty stdin) needs no FIFO and no copier.
const devNull = "/dev/null"

// stdio is one container's stream plumbing.
type stdio struct {
	dir  string   // host folder of the FIFOs
	args []string // kolejka-init's --stdin/--stdout/--stderr flags

	keepers   []*os.File
	owned     []*os.File // the copiers' files, for abort
	closeOnce sync.Once
	copiers   sync.WaitGroup
}

// newStdio makes the FIFOs in dir (which it creates; the container sees it
// at inContainer) for the streams of c and starts the copiers. A stream
// that is /dev/null needs neither: kolejka-init opens the container's own.
// On error nothing is left open or running.
func newStdio(dir, inContainer string, c *worker.Container) (_ *stdio, err error) {
	s := &stdio{dir: dir}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("unable to create the stdio folder: %w", err)
	}
	var files []*os.File // opened and not yet handed to a copier; closed on error
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			_ = s.close() // err is the news; the scratch folder holding s.dir goes with the run
		}
	}()

	// The task's exact environment: the engine would add the image's ENV
	// and HOSTNAME to c.Env, which runc does not.
	if err := os.WriteFile(filepath.Join(dir, "env"), []byte(strings.Join(c.Env, "\x00")), 0o644); err != nil {
		return nil, fmt.Errorf("unable to write the environment: %w", err)
	}
	s.args = append(s.args, "--env-file", inContainer+"/env")

	// stdin
	if c.Stdin == nil || isDevNull(c.Stdin) {
		s.args = append(s.args, "--stdin", devNull)
	} else {
		fifo, err := s.mkfifo("stdin")
		if err != nil {
			return nil, err
		}
		keeper, err := openFIFO(fifo, os.O_RDONLY)
		if err != nil {
			return nil, err
		}
		s.keepers = append(s.keepers, keeper)
		w, err := openFIFO(fifo, os.O_WRONLY)
		if err != nil {
			return nil, err
		}
		files = append(files, w)
		src, err := dupFile(c.Stdin)
		if err != nil {
			return nil, err
		}
		files = append(files, src)
		s.args = append(s.args, "--stdin", inContainer+"/stdin")
		s.owned = append(s.owned, w, src)
		s.copiers.Go(func() { copyIn(w, src) })
		files = nil // the copier's now
	}

	// stdout, then stderr: the same file for both is one FIFO, so that
	// the task's single descriptor keeps their order.
	output := func(name string, dst *os.File) (string, error) {
		if dst == nil || isDevNull(dst) {
			return devNull, nil
		}
		fifo, err := s.mkfifo(name)
		if err != nil {
			return "", err
		}
		r, err := openFIFO(fifo, os.O_RDONLY)
		if err != nil {
			return "", err
		}
		files = append(files, r)
		keeper, err := openFIFO(fifo, os.O_WRONLY)
		if err != nil {
			return "", err
		}
		s.keepers = append(s.keepers, keeper)
		out, err := dupFile(dst)
		if err != nil {
			return "", err
		}
		files = append(files, out)
		s.owned = append(s.owned, r, out)
		s.copiers.Go(func() { copyOut(out, r) })
		files = nil
		return inContainer + "/" + name, nil
	}
	stdout, err := output("stdout", c.Stdout)
	if err != nil {
		return nil, err
	}
	stderr := stdout
	if !sameFile(c.Stdout, c.Stderr) {
		if stderr, err = output("stderr", c.Stderr); err != nil {
			return nil, err
		}
	}
	s.args = append(s.args, "--stdout", stdout, "--stderr", stderr)
	return s, nil
}

func (s *stdio) mkfifo(name string) (string, error) {
	p := filepath.Join(s.dir, name)
	// 0o666: whoever kolejka-init runs as may open it.
	if err := unix.Mkfifo(p, 0o666); err != nil {
		return "", fmt.Errorf("unable to create the FIFO %s: %w", p, err)
	}
	if err := os.Chmod(p, 0o666); err != nil { // past the umask
		return "", fmt.Errorf("unable to create the FIFO %s: %w", p, err)
	}
	return p, nil
}

// containerGone closes the keepers: from now on the copiers end as soon as
// the FIFOs' other ends are closed, which they are once the container's
// processes are gone. Safe to call more than once.
func (s *stdio) containerGone() {
	s.closeOnce.Do(func() {
		for _, k := range s.keepers {
			k.Close()
		}
	})
}

// abort closes the copiers' files under them, for a container that could
// not be removed and may keep its ends open: the copiers end at once, with
// whatever they had not copied lost.
func (s *stdio) abort() {
	for _, f := range s.owned {
		f.Close()
	}
}

// close ends the plumbing: the keepers go, the copiers are waited for and
// the FIFOs removed. Call it once the container is gone (removed), or the
// copiers may wait for it.
func (s *stdio) close() error {
	s.containerGone()
	s.copiers.Wait()
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("unable to remove the FIFOs: %w", err)
	}
	return nil
}

// openFIFO opens one end of a FIFO without waiting for the other
// (O_NONBLOCK), which also puts it under Go's poller: reads and writes
// wait there, and Close wakes them.
func openFIFO(p string, flag int) (*os.File, error) {
	f, err := os.OpenFile(p, flag|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("unable to open the FIFO %s: %w", p, err)
	}
	return f, nil
}

// copyIn feeds the task's stdin, then closes the FIFO: kolejka-init's end
// reads EOF after the data. EPIPE (no reader left: the task ended without
// reading all of it) ends the copy too.
func copyIn(fifo, src *os.File) {
	_, _ = io.Copy(fifo, src)
	fifo.Close()
	src.Close()
}

// copyOut copies one output FIFO to the worker's file until EOF. If the
// worker's side fails (its capture was aborted), the rest is discarded so
// that the task never blocks on a full FIFO.
func copyOut(dst, fifo *os.File) {
	if _, err := io.Copy(dst, fifo); err != nil {
		_, _ = io.Copy(io.Discard, fifo)
	}
	fifo.Close()
	dst.Close()
}

// dupFile returns a copy of f's descriptor that lives on after the worker
// closes f (it does so as soon as Start returns). It does not call f.Fd,
// which would switch a pipe of the worker's to blocking mode.
func dupFile(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("unable to duplicate %s: %w", f.Name(), err)
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || derr != nil {
		return nil, fmt.Errorf("unable to duplicate %s: %w", f.Name(), errors.Join(err, derr))
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}

// fstat stats f's descriptor without f.Fd (see dupFile).
func fstat(f *os.File) (*unix.Stat_t, bool) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, false
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		return nil, false
	}
	return &st, true
}

// isDevNull reports whether f is the null device (character device 1:3).
func isDevNull(f *os.File) bool {
	st, ok := fstat(f)
	return ok && st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == unix.Mkdev(1, 3)
}

// sameFile reports whether a and b are one open file: the worker passes the
// same *os.File for stdout and stderr when a task merges them.
func sameFile(a, b *os.File) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a == b {
		return true
	}
	sa, ok1 := fstat(a)
	sb, ok2 := fstat(b)
	// Two opens of one regular file are two offsets; only a pipe (one
	// stream whatever the descriptor) is safely shared this way.
	return ok1 && ok2 && sa.Dev == sb.Dev && sa.Ino == sb.Ino && sa.Mode&unix.S_IFMT == unix.S_IFIFO
}
