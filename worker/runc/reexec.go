package runc

import (
	"os"
	"runtime"

	// The cgroup manager needs the devices package to apply device rules;
	// without it every container start fails on cgroup v1.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	// nsexec, the C constructor that joins namespaces before the Go
	// runtime starts in `<self> init`.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// isInit tells the process libcontainer starts a container with: the
// running binary re-executed as `<self> init`.
func isInit() bool { return len(os.Args) > 1 && os.Args[1] == "init" }

func init() {
	if isInit() {
		// In an init function this pins the main goroutine to the main
		// thread, where the container's init then runs (libcontainer.Init
		// pins only the thread it is on), as in runc's own binary. Nothing
		// else happens here: MaybeInit takes the process over.
		runtime.LockOSThread()
	}
}

// MaybeInit must be the first thing main does in every binary that starts
// containers with this runtime, and the first thing TestMain does in every
// test binary that does: libcontainer starts a container by re-executing
// the running binary as `<self> init`, and in that process MaybeInit
// becomes the container's init and never returns. Elsewhere it returns at
// once. Such a binary must have no subcommand called "init"; a binary that
// does not call MaybeInit keeps its own "init".
func MaybeInit() {
	if isInit() {
		libcontainer.Init() // never returns
	}
}
