package worker

import (
	"context"
	"errors"
	"os"

	"github.com/kolejka-go/kolejka/spec"
)

// Paths inside a task's container, as Kolejka's worker lays them out.
const (
	ContainerDir       = "/var/lib/kolejka"
	ContainerTaskDir   = ContainerDir + "/task"
	ContainerResultDir = ContainerDir + "/result"
	ContainerInit      = ContainerDir + "/kolejka-init"
	ContainerGateDir   = ContainerDir + "/gate"
	ContainerHostname  = "kolejka"
)

// Sentinel errors. Runtimes wrap them with the specifics ("unable to X: %w").
var (
	// ErrUnsupported: a limit or feature this runtime cannot enforce on this
	// host. A task asking for it is refused, never run without it.
	ErrUnsupported = errors.New("not supported here")
	// ErrImage: the task's image is missing or unusable.
	ErrImage = errors.New("image unavailable")
)

// Runtime is an isolation backend: it turns a prepared Container into a
// running kolejka-init and tears it down again. Everything that does not
// depend on the backend (scratch space, inputs, the task's cgroup, the gate,
// stdio, time limit, stats, verdict, collection) is the worker's.
//
// Lifecycle: Check once the limits are known; Start; then exactly one Wait
// (concurrently with any number of Kill calls); Destroy always, whatever
// happened, possibly twice. Sweep runs when a worker starts, to remove what
// runs of killed workers left.
type Runtime interface {
	// Name is the runtime's name on the command line: runc, host, docker.
	Name() string
	// Check returns an error wrapping ErrUnsupported, naming the limit and
	// why, if the runtime cannot enforce l on this host.
	Check(l spec.Limits) error
	// Start creates the container and starts kolejka-init in it. On error
	// nothing is left behind.
	Start(ctx context.Context, c *Container) (Process, error)
	// Sweep removes containers, mounts and state of runs for which
	// alive(runID) is false.
	Sweep(ctx context.Context, alive func(runID string) bool) error
}

// Container is everything a runtime needs to start one task.
type Container struct {
	RunID string // unique per run; names cgroups, containers and folders
	Image string // the task's image reference

	// TaskDir and ResultDir are host folders mounted read-write at
	// ContainerTaskDir and ContainerResultDir. TaskDir is the working folder.
	TaskDir, ResultDir string
	// Scratch is a host folder, private to this run, for the runtime's own
	// mounts and state (root file system, writable layer).
	Scratch string

	// Storage, if set, is a host folder of the size of the storage limit
	// (a tmpfs) to hold the container's writable layer.
	Storage string

	Limits spec.Limits // effective limits: the runtime enforces Network and Storage
	CPUSet string      // cores the task may use, e.g. "2-3"

	// Env is kolejka-init's environment until it loads the task's (a bare
	// PATH). The task's environment and argv are files in GateDir, named by
	// InitArgs: they never pass through the runtime's exec of init, so a
	// task too large for the kernel's exec fails as a task (see pid1).
	Env []string

	// InitPath is kolejka-init on the host; InitArgs follow it (the gate
	// flags, --env-file and --args-file; or "--" and an argv). The runtime
	// may add "--lo-up" or flags of its own in front (a later --env-file
	// wins over one of the runtime's).
	InitPath string
	InitArgs []string
	// GateDir is a host folder holding the gate socket; container runtimes
	// bind-mount it at ContainerGateDir.
	GateDir string
	// ObserverSocket, if set, is kolejka-observer's socket on the host;
	// container runtimes bind-mount it at observer.DefaultSocket so that
	// programs inside the task can open their own sessions.
	ObserverSocket string

	Stdin, Stdout, Stderr *os.File

	// CgroupParent is the run's cgroup ("/kolejka/<run id>"). The task's own
	// group is CgroupParent+"/task" and belongs to the worker; a runtime that
	// needs a cgroup for its own processes uses CgroupParent+"/runtime".
	CgroupParent string
}

// Process is a started container.
type Process interface {
	// Pid is kolejka-init's pid in the worker's pid namespace.
	Pid() int
	// Wait blocks until kolejka-init has ended and returns its status.
	Wait() (ExitStatus, error)
	// Kill ends kolejka-init and, with it, every process of the container.
	Kill() error
	// Destroy releases everything Start made. Safe to call more than once.
	Destroy() error
}

// ExitStatus is how a process ended. Code is what Kolejka's worker writes
// as "result": a runtime reports kolejka-init's end as Docker reports a
// container's (the exit code, or 128+N when init itself was killed by
// signal N: 137 for a killed container); the worker then takes the task's
// own end from init (the exit code, or 256−N for signal N, as Kolejka's
// stage2 exits with Python's returncode −N) and reports a task it killed
// itself (time limit, output cap) as a killed container, 137.
type ExitStatus struct {
	Code   int // exit code (see above)
	Signal int // the signal that killed it, 0 if it exited
}

// HostFS is implemented by runtimes that run tasks in the host's own file
// system (no image): the task sees its folder at its host path rather than
// at ContainerTaskDir.
type HostFS interface {
	HostFS() bool
}

// Preparer is implemented by runtimes that can make a container ahead of
// its task (a warm container): Prepare does all that Start does (root file
// system, namespaces, mounts, the runtime's cgroup) and starts kolejka-init,
// which the worker runs with --await: it connects to the gate and waits
// there for the task. The container's folders, gate and stdio are fixed
// then; what the task brings (its files, command, environment and limits)
// is put in place after Release, and init reads it from the gate when the
// worker says "start". While it waits, the container runs at the least
// CPU share, so that preparing it takes little from the tasks that run.
type Preparer interface {
	Prepare(ctx context.Context, c *Container) (Prepared, error)
}

// Prepared is a container made by Prepare, its kolejka-init waiting at the
// gate. It serves one task: Release once, then the Process is Start's;
// Destroy always, released or not, possibly twice.
type Prepared interface {
	// Release gives the container the CPU share a container started
	// for its task has, and returns its process.
	Release() (Process, error)
	// Current reports whether the container may still serve a task of its
	// shape: its init still runs (it was not killed meanwhile), and its
	// image is still the one the image's name names (not replaced since
	// Prepare).
	Current() bool
	// Destroy releases everything Prepare made.
	Destroy() error
}
