// Package cliexit maps command errors to exit codes in one place, after
// every deferred cleanup has run (urfave/cli's own cli.Exit would call
// os.Exit in the middle of Run and skip them).
package cliexit

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"
)

// Exit codes shared by the kolejka commands.
const (
	OK       = 0
	Failure  = 1 // anything not classified below
	Usage    = 2 // bad command line or bad input; nothing was changed
	Degraded = 3 // ran, but the system failed the task: an SE result was written
)

// Error carries an exit code.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// WithCode wraps err with an exit code; nil stays nil.
func WithCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// UsageIf gives err the Usage code when it is one of targets (errors
// that mean bad input, which changed nothing); other errors stay as they
// are.
func UsageIf(err error, targets ...error) error {
	for _, t := range targets {
		if errors.Is(err, t) {
			return WithCode(Usage, err)
		}
	}
	return err
}

// UsageError is a bad command line.
func UsageError(format string, args ...any) error {
	return &Error{Code: Usage, Err: fmt.Errorf(format, args...)}
}

// Run runs app and returns the exit code, having printed the error.
func Run(app *cli.App, args []string) int {
	app.ExitErrHandler = func(*cli.Context, error) {} // we decide, below
	err := app.Run(args)
	if err == nil {
		return OK
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Failure
}

// Main ends a command's main: when setup, the error of what main did
// before running app (a re-exec hook such as cgroup.Confine), is not nil,
// it prints it under app's name and exits with Failure without running
// app; otherwise it runs app on the command line (Run) and exits with its
// code.
func Main(app *cli.App, setup error) {
	if setup != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, setup)
		os.Exit(Failure)
	}
	os.Exit(Run(app, os.Args))
}

// NoFlagsAfterArgs refuses flags written after positional arguments:
// urfave/cli stops parsing flags at the first argument, so they would be
// taken as arguments silently.
func NoFlagsAfterArgs(c *cli.Context) error {
	for _, a := range c.Args().Slice() {
		if len(a) > 1 && a[0] == '-' {
			return UsageError("%q: options go before the arguments (usage: %s)", a, c.Command.UsageText)
		}
	}
	return nil
}

// NeedArgs refuses flags after the arguments (NoFlagsAfterArgs) and any
// number of arguments but n; what names them ("TASK_DIR and RESULT_DIR").
func NeedArgs(c *cli.Context, n int, what string) error {
	if err := NoFlagsAfterArgs(c); err != nil {
		return err
	}
	if c.NArg() != n {
		return UsageError("need %s (usage: %s)", what, c.Command.UsageText)
	}
	return nil
}

// LogFlags are -v/--verbose and -d/--debug, which SetLogger reads.
func LogFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "show progress"},
		&cli.BoolFlag{Name: "debug", Aliases: []string{"d"}, Usage: "show debugging output"},
	}
}

// SetLogger makes the default logger write text to stderr at base, or
// Info with -v/--verbose, or Debug with -d/--debug (LogFlags).
func SetLogger(c *cli.Context, base slog.Level) {
	level := base
	if c.Bool("verbose") && level > slog.LevelInfo {
		level = slog.LevelInfo
	}
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
}
