// Command kolejka-init runs as PID 1 inside every task container: it holds
// the task's first process at a gate until the worker has put it in the
// task's cgroup, then lets it exec and mirrors its exit status. Build it
// static (CGO_ENABLED=0): it must need nothing from the image.
package main

import (
	"os"

	"github.com/kolejka-go/kolejka/internal/pid1"
)

func main() {
	os.Exit(pid1.Main(os.Args[1:]))
}
