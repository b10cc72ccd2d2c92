package daemon

import (
	"fmt"
	"strings"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// A session's limits are Kolejka's task limits, applied to its cgroup:
//
//   - memory: memory.limit_in_bytes (v1) or memory.max (v2).
//   - swap: on top of memory. Absent while memory is set means no swap at
//     all (as the worker does: a judged program that swaps has meaningless
//     timings), where the host accounts swap; a host that does not cannot
//     enforce that default, and swap then stays as the parent has it (an
//     explicit swap limit is refused there instead). Kolejka's observer
//     never limited swap.
//   - pids: pids.max.
//   - cpus, cpus_offset: cpus whole cores, the cpus_offset-th and the next
//     ones of the cores the session's parent group may use, pinned through
//     its cpuset. Asking for more than there are is refused, never shrunk.
//   - time: wall clock, see session.arm.
//   - cgroup_depth, cgroup_descendants: how deep and how many sessions may
//     be opened below this one, enforced by the registry (see
//     Registry.checkNesting), not by the kernel.
//   - gpus 0 and network true restrict nothing and are accepted; storage,
//     image, workspace, network false, gpus, gpu_memory and the perf
//     counters belong to the worker and its container, which a session
//     cannot enforce: they are refused with ErrUnsupported.
//
// A limits call changes only the limits it names; the others stay as they
// were.

// CheckEnforceable refuses the limits of l that no session can enforce
// (ErrUnsupported) and those out of range (ErrBadRequest), so a caller can
// check limits before it makes a session.
func CheckEnforceable(l spec.Limits) error {
	var bad []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"storage", l.Storage != nil},
		{"image", l.Image != nil},
		{"workspace", l.Workspace != nil},
		{"network=false", l.Network != nil && !*l.Network},
		{"gpus", l.GPUs != nil && *l.GPUs != 0},
		{"gpu_memory", l.GPUMemory != nil},
		{"perf_instructions", l.PerfInstructions != nil},
		{"perf_cycles", l.PerfCycles != nil},
	} {
		if f.set {
			bad = append(bad, f.name)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("a session cannot enforce %s (they are the worker's, for the whole task): %w",
			strings.Join(bad, ", "), observer.ErrUnsupported)
	}
	if l.CPUs != nil && *l.CPUs < 1 {
		return fmt.Errorf("cpus %d: want at least 1: %w", *l.CPUs, observer.ErrBadRequest)
	}
	for _, f := range []struct {
		name string
		v    *int64
	}{{"cpus_offset", l.CPUsOffset}, {"pids", l.Pids}, {"cgroup_depth", l.CgroupDepth}, {"cgroup_descendants", l.CgroupDescendants}} {
		if f.v != nil && *f.v < 0 {
			return fmt.Errorf("%s %d: must not be negative: %w", f.name, *f.v, observer.ErrBadRequest)
		}
	}
	if l.Pids != nil && *l.Pids == 0 {
		return fmt.Errorf("pids 0: want at least 1: %w", observer.ErrBadRequest)
	}
	if l.Memory != nil && *l.Memory <= 0 {
		return fmt.Errorf("memory %d: want a positive size: %w", *l.Memory, observer.ErrBadRequest)
	}
	if l.Swap != nil && *l.Swap < 0 {
		return fmt.Errorf("swap %d: must not be negative: %w", *l.Swap, observer.ErrBadRequest)
	}
	if l.Time != nil && *l.Time <= 0 {
		return fmt.Errorf("time %v: want a positive time: %w", *l.Time, observer.ErrBadRequest)
	}
	return nil
}

// overlay returns old with every limit that l sets replaced by l's.
func overlay(old, l spec.Limits) spec.Limits {
	out := old.Clone()
	l = l.Clone()
	set := func(dst **int64, src *int64) {
		if src != nil {
			*dst = src
		}
	}
	set(&out.CPUs, l.CPUs)
	set(&out.CPUsOffset, l.CPUsOffset)
	set(&out.Memory, l.Memory)
	set(&out.Swap, l.Swap)
	set(&out.Pids, l.Pids)
	set(&out.Storage, l.Storage)
	set(&out.Image, l.Image)
	set(&out.Workspace, l.Workspace)
	set(&out.GPUs, l.GPUs)
	set(&out.GPUsOffset, l.GPUsOffset)
	set(&out.GPUMemory, l.GPUMemory)
	set(&out.PerfInstructions, l.PerfInstructions)
	set(&out.PerfCycles, l.PerfCycles)
	set(&out.CgroupDepth, l.CgroupDepth)
	set(&out.CgroupDescendants, l.CgroupDescendants)
	if l.Time != nil {
		out.Time = l.Time
	}
	if l.Network != nil {
		out.Network = l.Network
	}
	return out
}

// resources turns a session's limits into what its cgroup enforces. cores
// are the pinned cores (nil: the parent's). noSwap says whether an absent
// swap limit may become "no swap" (the host accounts swap).
func resources(l spec.Limits, cores []int, noSwap bool) *cgroup.Resources {
	r := &cgroup.Resources{Memory: l.Memory, Swap: l.Swap, Pids: l.Pids, CPUs: cgroup.FormatCPUList(cores)}
	if r.Memory != nil && r.Swap == nil && noSwap {
		zero := int64(0)
		r.Swap = &zero
	}
	return r
}
