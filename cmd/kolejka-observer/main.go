// Command kolejka-observer is the observer daemon of a Kolejka node, and a
// runner of one command under limits:
//
//	kolejka-observer [--socket PATH] [--state DIR] [--detach] [--pid-file F] [-v] [-d]
//	kolejka-observer run [--cpus N] [--memory SIZE] [--time T] ... -- COMMAND [ARGS...]
//
// See docs/observer.md. Exit codes: the daemon 0 after a clean stop, 2 for
// a bad command line, 1 otherwise; run exits with the command's own code
// (128+N if a signal N ended it), 125-127 if it could not be started.
package main

import (
	"os"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
)

// init keeps the main goroutine on the main thread in the helper process
// that `run` starts its command through (helper.go), which only an init
// function can do.
func init() { lockHelperThread() }

func main() {
	// The process `run` starts its command through (before any parsing).
	runHelperIfAsked()
	var exit int
	code := cliexit.Run(app(&exit), os.Args)
	if code == cliexit.OK {
		code = exit
	}
	os.Exit(code)
}
