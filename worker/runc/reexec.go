package runc

import (
	"os"

	// The cgroup manager needs the devices package to apply device rules;
	// without it every container start fails on cgroup v1.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	// nsexec, the C constructor that joins namespaces before the Go
	// runtime starts in `<self> init`.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// libcontainer starts containers by re-executing the running binary as
// `<self> init`. That process must become runc's container init before any
// other code looks at the command line, so the hook runs from a package
// init() — any binary (or test) that links this runtime gets it, and no
// user-facing subcommand may be called "init".
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // never returns
	}
}
