package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// DefaultOutputLimit caps each captured stdout/stderr file.
const DefaultOutputLimit = 64 << 20

// DefaultStateDir holds the worker's run registry (see runs.go). It lives on
// /run, a tmpfs: after a reboot every run it could name is gone anyway.
const DefaultStateDir = "/run/kolejka/worker"

// DefaultCgroupRoot is the parent of every run's cgroup, below the group
// delegated to the worker (the root of the hierarchy, where none is).
const DefaultCgroupRoot = "/kolejka"

// InitName is the file name of the static in-container helper.
const InitName = "kolejka-init"

// Config is a worker's configuration: the [worker] section of kolejka.conf
// plus command-line flags.
type Config struct {
	// Temp is where per-run scratch folders go. Default: os.TempDir().
	Temp string
	// StateDir holds the run registry. Default: DefaultStateDir.
	StateDir string
	// CgroupRoot is the cgroup every run's group goes under. Default:
	// DefaultCgroupRoot below the worker's delegated group (see placeRuns).
	// Workers sharing it sweep each other's dead runs.
	CgroupRoot string
	// Caps are merged (field-wise minimum) into every task's limits.
	Caps spec.Limits
	// OutputLimit caps each captured stdout/stderr file in bytes; a task
	// past it is killed with verdict OLE. 0 means DefaultOutputLimit;
	// negative means unlimited.
	OutputLimit int64
	// InitPath is kolejka-init. Default: next to the running executable,
	// then $PATH.
	InitPath string
	// Tags go into results' "tags" (a node's tags; none for a local run).
	Tags []string
	// Observer is kolejka-observer's socket. When a daemon answers there,
	// each task's top session is made through it (so programs inside the
	// task can open sessions below theirs, and cgroup_depth/descendants are
	// enforced) and the socket is mounted into the task's container at
	// observer.DefaultSocket. Default: observer.DefaultSocket; "none"
	// disables it. Without a daemon the worker measures the task itself,
	// with the same code and the same figures.
	Observer string
	// Logger receives progress and diagnostics. Default: slog.Default().
	Logger *slog.Logger
	// Warm is how many containers of each task shape seen the worker keeps
	// prepared ahead of the next task (see Prepare), with a runtime that
	// can (a Preparer); 0 turns it off. WarmIdle is how long a prepared
	// container waits for a task before it is destroyed (default
	// DefaultWarmIdle).
	Warm     int
	WarmIdle time.Duration
}

func (c *Config) setDefaults() error {
	if c.Temp == "" {
		c.Temp = os.TempDir()
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Observer == "" {
		c.Observer = observer.DefaultSocket
	}
	if c.OutputLimit == 0 {
		c.OutputLimit = DefaultOutputLimit
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.InitPath == "" {
		p, err := FindInit()
		if err != nil {
			return err
		}
		c.InitPath = p
	}
	abs, err := filepath.Abs(c.InitPath)
	if err != nil {
		return err
	}
	c.InitPath = abs
	return nil
}

// FindInit locates kolejka-init: beside the running executable (how
// `make build` and packages install it), else on $PATH.
func FindInit() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), InitName)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(InitName); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("unable to find %s beside this program or on $PATH (build it with `make build`, or set init_path): %w",
		InitName, errors.ErrUnsupported)
}
