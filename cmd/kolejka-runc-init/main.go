// Command kolejka-runc-init is the runc runtime's container init (`runc
// init`) and nothing else: a binary that starts a container with the
// embedded libcontainer re-executes itself as `<self> init`, and when this
// binary lies beside it, that process hands over to this one at once,
// before its own Go runtime and package initialisation start
// (worker/runc/hop.go). This binary links only libcontainer's init side,
// so each container pays its start-up rather than that of kolejka-worker
// or kolejka-foreman with everything they link.
//
// It is never run by hand: without the environment libcontainer prepares
// (_LIBCONTAINER_INITPIPE and its descriptors) it exits with an error.
package main

import (
	"runtime"

	// The cgroup manager needs the devices package to apply device rules,
	// as in worker/runc/reexec.go.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	// nsexec, the C constructor that joins the container's namespaces
	// before the Go runtime starts.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

func init() {
	// Pins the main goroutine to the main thread, where the container's
	// init runs, as in runc's own binary.
	runtime.LockOSThread()
}

func main() {
	libcontainer.Init() // never returns
}
