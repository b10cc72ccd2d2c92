package spec

import "time"

// Limits caps what a task may use. Every field is optional: nil means "not
// limited here", which is different from zero (swap 0 means no swap at all).
// Sizes are bytes; Time has microsecond resolution, as Kolejka's timedelta.
type Limits struct {
	CPUs              *int64         // cpus: whole cores, pinned
	CPUsOffset        *int64         // cpus_offset: first core, set by the node
	Memory            *int64         // memory: RAM of the whole task
	Swap              *int64         // swap: on top of Memory
	Pids              *int64         // pids: processes and threads
	Storage           *int64         // storage: the container's writable layer
	Image             *int64         // image: image size, for node image caches
	Workspace         *int64         // workspace: the per-task scratch folder
	Time              *time.Duration // time: wall clock
	Network           *bool          // network: false = loopback only
	GPUs              *int64         // gpus
	GPUsOffset        *int64         // gpus_offset: first GPU, set by the node
	GPUMemory         *int64         // gpu_memory: memory each GPU must have
	PerfInstructions  *int64         // perf_instructions
	PerfCycles        *int64         // perf_cycles
	CgroupDepth       *int64         // cgroup_depth: session nesting inside the task
	CgroupDescendants *int64         // cgroup_descendants: sessions inside the task
}

// Task is kolejka_task.json.
type Task struct {
	ID          string
	Image       string
	Args        []string
	Requires    []string
	Exclusive   *bool
	Limits      Limits
	Environment map[string]string
	Stdin       string // a file of the task folder fed to stdin; "" = none
	Stdout      string // the result file that receives stdout; "" = discarded
	Stderr      string // likewise; equal to Stdout = one file for both
	Files       map[string]File
	Collect     []Collect
	CallbackURL string
	// Queue names the server queue the task waits in (our extension key
	// "queue"); "" is the default queue, the only one Kolejka knows.
	Queue string
}

// File is one entry of a task's or result's "files": a local Path (relative
// to the folder) and/or a server blob Reference.
type File struct {
	Path      string
	Reference string
}

// Collect copies outputs matching Glob (with ** for any depth, evaluated in
// the task folder) into the result as Prefix/<path without its first Strip
// components>; the file name itself is never stripped.
type Collect struct {
	Glob   string
	Strip  int
	Prefix string
}

// Status is our verdict on a run, written as "status"; Kolejka readers
// ignore it.
type Status string

const (
	StatusOK  Status = "OK"  // exited 0
	StatusRE  Status = "RE"  // non-zero exit or killed by a signal
	StatusTLE Status = "TLE" // time limit
	StatusMLE Status = "MLE" // memory limit (OOM kill)
	StatusPLE Status = "PLE" // pids limit hit
	StatusOLE Status = "OLE" // an output or workspace limit hit
	StatusSE  Status = "SE"  // the system failed to run the task
)

// Result is kolejka_result.json.
type Result struct {
	ID     string
	Tags   []string
	Limits Limits
	Result *int // exit code; 256−N when killed by signal N, 137 when its time limit killed it (Kolejka's worker)
	Status Status
	Stdout string
	Stderr string
	Files  map[string]File
	Stats  Stats
	// Omitted names what the task produced that the result leaves out,
	// with why (a name JSON cannot carry, an output larger than the task
	// could write), written as "omitted" only when there is any. Names
	// that are not printable UTF-8 are given quoted, Go-style (the name
	// bad<0xff> as "bad\xff", quotes included). Ours: Kolejka's readers
	// ignore unknown keys.
	Omitted map[string]string
}

// Stats is what was measured of a run. Every field is optional; empty
// objects are still written, as Kolejka does.
type Stats struct {
	CPU    CPUStats
	CPUs   map[string]CPUStats // keyed by core index
	Memory MemoryStats
	Pids   PidsStats
	Time   *time.Duration // wall time
	Perf   PerfStats
	GPUs   map[string]GPUStats
}

// CPUStats is CPU time used.
type CPUStats struct {
	Usage  *time.Duration
	User   *time.Duration
	System *time.Duration
}

// MemoryStats is memory used. Usage and Swap are Kolejka's momentary
// readings; they are read but results carry the peaks.
type MemoryStats struct {
	Usage    *int64
	MaxUsage *int64
	Swap     *int64
	MaxSwap  *int64
	Failures *int64 // times the limit was hit
}

// PidsStats is processes and threads used.
type PidsStats struct {
	Usage    *int64
	MaxUsage *int64
	Failures *int64 // forks refused by the limit
}

// PerfStats is hardware counters.
type PerfStats struct {
	Instructions *int64
	Cycles       *int64
}

// GPUStats is one GPU's use.
type GPUStats struct {
	Name           string
	ID             string
	MemoryTotal    *int64
	MaxMemoryUsage *int64
	MaxTemperature *int64
	MaxUtilization *int64
}
