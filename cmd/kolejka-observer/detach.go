package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// --detach starts the program again in the background and waits until the
// copy's socket answers (the copy reports on an inherited pipe), so that a
// script that runs `kolejka-observer --detach` can use the socket at once.

// detachedEnv marks the background copy that detach starts; its value is
// the number of the descriptor to report readiness on.
const detachedEnv = "KOLEJKA_OBSERVER_DETACHED"

// detached reports whether this process is the background copy that detach
// started, and if so returns the function daemon.RunOptions.Ready should call and
// the one to report a start-up failure with.
func detached() (ready func(), failed func(error), ok bool) {
	v := os.Getenv(detachedEnv)
	if v == "" {
		return nil, nil, false
	}
	_ = os.Unsetenv(detachedEnv) // fails only for a malformed name
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return func() {}, func(error) {}, true
	}
	f := os.NewFile(uintptr(fd), "detach-ready")
	ready = func() {
		fmt.Fprintln(f, "ready")
		f.Close()
	}
	failed = func(err error) {
		fmt.Fprintln(f, "error: "+strings.ReplaceAll(err.Error(), "\n", " "))
		f.Close()
	}
	return ready, failed, true
}

// detach starts this program again (args are its os.Args) in a new session
// (setsid), detached from the terminal with its standard streams on
// /dev/null, and returns once the copy reports that its socket answers,
// with the copy's pid; or its start-up error. The copy sees detached.
func detach(args []string) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("unable to detach: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("unable to detach: %w", err)
	}
	defer pr.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		pw.Close()
		return 0, fmt.Errorf("unable to detach: %w", err)
	}
	defer null.Close()
	cmd := exec.Command(self, args[1:]...)
	cmd.Args[0] = args[0]
	cmd.Env = append(os.Environ(), detachedEnv+"=3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return 0, fmt.Errorf("unable to detach: %w", err)
	}
	pid := cmd.Process.Pid
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("unable to detach: %w", err)
	}
	line = strings.TrimSpace(line)
	if line == "ready" {
		_ = cmd.Process.Release()
		return pid, nil
	}
	_ = cmd.Wait()
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return 0, errors.New(msg)
	}
	return 0, fmt.Errorf("unable to detach: the background observer ended before it was ready (%v)", cmd.ProcessState)
}
