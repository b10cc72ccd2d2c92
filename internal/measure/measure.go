// Package measure turns a cgroup's usage counters into Kolejka's stats: the
// one conversion the worker (a task's result) and the observer daemon (a
// session's stats) share, so that both count the same way.
package measure

import (
	"strconv"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/spec"
)

// StatsOf turns a group's counters into Kolejka's stats: CPU time in total
// and split into user and system, per core for cores (all the cores the
// kernel counted if cores is empty; none on cgroup v2, which keeps no
// per-core figures), the memory and swap peaks, the memory failures (the
// larger of the limit hits and the OOM kills: v1's failcnt can stay 0 under
// an OOM kill), and the pids peak and refused forks. The wall time is the
// caller's to fill in (see Duration).
func StatsOf(u *cgroup.Usage, cores []int) spec.Stats {
	st := spec.Stats{CPUs: map[string]spec.CPUStats{}, GPUs: map[string]spec.GPUStats{}}
	if u == nil {
		return st
	}
	st.CPU = spec.CPUStats{Usage: Duration(u.CPU), User: Duration(u.CPUUser), System: Duration(u.CPUSystem)}
	if len(u.PerCPU) > 0 {
		if len(cores) == 0 {
			for i := range u.PerCPU {
				cores = append(cores, i)
			}
		}
		for _, c := range cores {
			if c >= 0 && c < len(u.PerCPU) {
				st.CPUs[strconv.Itoa(c)] = spec.CPUStats{Usage: Duration(u.PerCPU[c])}
			}
		}
	}
	st.Memory = spec.MemoryStats{
		MaxUsage: i64p(u.MemoryPeak),
		MaxSwap:  i64p(u.SwapPeak),
		Failures: i64p(max(u.MemoryFailures, u.OOMKills)),
	}
	st.Pids = spec.PidsStats{MaxUsage: i64p(max(u.PidsPeak, u.Pids)), Failures: i64p(u.PidsFailures)}
	return st
}

// Duration is d at Kolejka's resolution, microseconds, as the stats hold
// their times.
func Duration(d time.Duration) *time.Duration {
	d = d.Round(time.Microsecond)
	return &d
}

func i64p(v int64) *int64 { return &v }
