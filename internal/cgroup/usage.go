package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Usage is what a group measured since it was created, its sub-groups
// included (the kernel charges a sub-group's usage to every ancestor).
// Counters the host does not have read as zero.
type Usage struct {
	// CPU is the CPU time of the group's processes in nanoseconds, exact:
	// v1 cpuacct.usage, v2 cpu.stat usage_usec (microseconds). CPUUser and
	// CPUSystem split it: v1 cpuacct.usage_user and usage_sys (nanosecond
	// units, falling back to cpuacct.stat in 10 ms ticks on kernels without
	// them), v2 user_usec and system_usec. The kernel samples the split at
	// scheduler ticks, so only their sum is exact.
	CPU, CPUUser, CPUSystem time.Duration
	// PerCPU is the CPU time per CPU number (v1 cpuacct.usage_percpu); nil
	// on v2, which does not keep it.
	PerCPU []time.Duration
	// Memory is the memory charged to the group now (page cache and kernel
	// memory included), MemoryPeak the most it ever was: v1
	// memory.usage_in_bytes and memory.max_usage_in_bytes, v2
	// memory.current and memory.peak (Linux 5.19+; before, in groups made
	// by Create, the largest memory.current sampled every 5 ms, see
	// peaks.go; else zero).
	Memory, MemoryPeak int64
	// SwapPeak is the most swap used: v2 memory.swap.peak (Linux 6.5+;
	// before, sampled as MemoryPeak is); v1 has no such counter, so it is
	// memory.memsw.max_usage_in_bytes minus memory.max_usage_in_bytes, an
	// estimate (the two peaks need not fall at the same moment), zero
	// without swap accounting.
	SwapPeak int64
	// MemoryFailures counts allocations that hit the memory limit: v1
	// memory.failcnt, v2 memory.events "max". On v1 it may stay zero even
	// when the group is OOM-killed; use OOMKills for that.
	MemoryFailures int64
	// OOMKills counts processes the OOM killer killed in the group and the
	// sub-groups it has now (the victim's group counts each kill): v1
	// memory.oom_control "oom_kill" (Linux 4.13+), v2 memory.events.local
	// "oom_kill" (Linux 5.2+; memory.events before, which keeps the kills
	// of sub-groups already removed), summed over the sub-groups.
	OOMKills int64
	// Pids is how many processes and threads the group holds now
	// (pids.current), PidsPeak the most it ever held (pids.peak, Linux
	// 6.1+; zero before), PidsFailures how many forks a pids limit refused
	// (pids.events "max"; on v1 and on v2 before Linux 6.13 summed over the
	// sub-groups, since those count a refused fork only in the forking
	// process's group).
	Pids, PidsPeak, PidsFailures int64
}

// userHZ is the unit of cpuacct.stat: clock ticks of USER_HZ, which the
// kernel ABI fixes at 100 per second on every architecture Linux exports it.
const userHZ = 100

// Usage reads the group's counters. The error wraps ErrNotExist if the group
// is gone.
func (g *Group) Usage() (*Usage, error) {
	var u *Usage
	var err error
	if g.v2 != nil {
		u, err = readUsageUnified(filepath.Join(g.h.mount, g.path))
		if err == nil && g.peaks != nil {
			g.peaks.apply(u)
		}
	} else {
		u, err = g.readUsageLegacy()
	}
	if err != nil {
		if isMissing(err) && !g.exists() {
			err = ErrNotExist
		}
		return nil, fmt.Errorf("unable to read the usage of cgroup %s: %w", g.path, err)
	}
	return u, nil
}

// exists reports whether the group exists in any hierarchy.
func (g *Group) exists() bool {
	for _, d := range g.h.dirs(g.path) {
		if exists(d) {
			return true
		}
	}
	return false
}

// readUsageLegacy reads the v1 counters of the controllers that are mounted.
func (g *Group) readUsageLegacy() (*Usage, error) {
	u := &Usage{}
	if dir := g.h.dir("cpuacct", g.path); dir != "" {
		if err := readCPULegacy(dir, u); err != nil {
			return nil, err
		}
	}
	if dir := g.h.dir("memory", g.path); dir != "" {
		if err := readMemoryLegacy(dir, u); err != nil {
			return nil, err
		}
	}
	if dir := g.h.dir("pids", g.path); dir != "" {
		var err error
		if u.Pids, u.PidsPeak, err = readPids(dir); err != nil {
			return nil, err
		}
		if u.PidsFailures, err = sumTree(dir, "pids.events", "max"); err != nil {
			return nil, err
		}
	}
	return u, nil
}

func readCPULegacy(dir string, u *Usage) error {
	total, err := readInt(filepath.Join(dir, "cpuacct.usage"))
	if err != nil {
		return err
	}
	u.CPU = time.Duration(total)
	user, errU := readInt(filepath.Join(dir, "cpuacct.usage_user"))
	sys, errS := readInt(filepath.Join(dir, "cpuacct.usage_sys"))
	switch {
	case errU == nil && errS == nil:
		u.CPUUser, u.CPUSystem = time.Duration(user), time.Duration(sys)
	case isMissing(errU) || isMissing(errS):
		// Kernels before 4.7 have only the tick counts.
		st, err := readKeyed(filepath.Join(dir, "cpuacct.stat"))
		if err != nil {
			return err
		}
		u.CPUUser = time.Duration(st["user"]) * time.Second / userHZ
		u.CPUSystem = time.Duration(st["system"]) * time.Second / userHZ
	case errU != nil:
		return errU
	default:
		return errS
	}
	// The user/system split is sampled at scheduler ticks (cpuacct.stat
	// outright, usage_user/usage_sys too on current kernels), while
	// cpuacct.usage is exact: a short task can show 4 ms of system time
	// for 1 ms of CPU. Keep the total exact and scale the split to it, as
	// the kernel itself does for cgroup v2's cpu.stat.
	if split := u.CPUUser + u.CPUSystem; split > 0 {
		u.CPUUser = time.Duration(float64(u.CPU) * float64(u.CPUUser) / float64(split))
		u.CPUSystem = u.CPU - u.CPUUser
	}
	b, err := readFile(filepath.Join(dir, "cpuacct.usage_percpu"))
	if err != nil && !isMissing(err) {
		return err
	}
	for _, f := range strings.Fields(string(b)) {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return fmt.Errorf("unable to parse %s: %w", filepath.Join(dir, "cpuacct.usage_percpu"), err)
		}
		u.PerCPU = append(u.PerCPU, time.Duration(v))
	}
	return nil
}

func readMemoryLegacy(dir string, u *Usage) error {
	var err error
	if u.Memory, err = readInt(filepath.Join(dir, "memory.usage_in_bytes")); err != nil {
		return err
	}
	if u.MemoryPeak, err = readInt(filepath.Join(dir, "memory.max_usage_in_bytes")); err != nil {
		return err
	}
	if u.MemoryFailures, err = readInt(filepath.Join(dir, "memory.failcnt")); err != nil {
		return err
	}
	memswPeak, err := readOptionalInt(filepath.Join(dir, "memory.memsw.max_usage_in_bytes"))
	if err != nil {
		return err
	}
	u.SwapPeak = max(0, memswPeak-u.MemoryPeak)
	// v1 counts an OOM kill only in the victim's own group.
	u.OOMKills, err = sumTree(dir, "memory.oom_control", "oom_kill")
	return err
}

// sumTree adds up one key of a keyed file over dir and its sub-groups. v1
// counts some events only in the group where they happened (OOM kills in
// the victim's group, refused forks in the forking process's group), while
// a Usage covers the sub-groups, as v2's hierarchical counters do.
func sumTree(dir, file, key string) (int64, error) {
	kv, err := readOptionalKeyed(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	sum := kv[key]
	entries, err := os.ReadDir(dir)
	if isMissing(err) {
		return sum, nil
	}
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		if e.IsDir() {
			n, err := sumTree(filepath.Join(dir, e.Name()), file, key)
			if err != nil {
				return 0, err
			}
			sum += n
		}
	}
	return sum, nil
}

// readPids reads pids.current and pids.peak, the same files on v1 and v2.
func readPids(dir string) (current, peak int64, err error) {
	if current, err = readOptionalInt(filepath.Join(dir, "pids.current")); err != nil {
		return 0, 0, err
	}
	peak, err = readOptionalInt(filepath.Join(dir, "pids.peak"))
	return current, peak, err
}

// readUsageUnified reads the v2 counters. cpu.stat is in every group; the
// memory and pids files only where those controllers are enabled.
func readUsageUnified(dir string) (*Usage, error) {
	u := &Usage{}
	st, err := readKeyed(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return nil, err
	}
	u.CPU = time.Duration(st["usage_usec"]) * time.Microsecond
	u.CPUUser = time.Duration(st["user_usec"]) * time.Microsecond
	u.CPUSystem = time.Duration(st["system_usec"]) * time.Microsecond
	if u.Memory, err = readOptionalInt(filepath.Join(dir, "memory.current")); err != nil {
		return nil, err
	}
	if u.MemoryPeak, err = readOptionalInt(filepath.Join(dir, "memory.peak")); err != nil {
		return nil, err
	}
	if u.SwapPeak, err = readOptionalInt(filepath.Join(dir, "memory.swap.peak")); err != nil {
		return nil, err
	}
	ev, err := readOptionalKeyed(filepath.Join(dir, "memory.events"))
	if err != nil {
		return nil, err
	}
	u.MemoryFailures = ev["max"]
	u.OOMKills = ev["oom_kill"]
	// memory.events is hierarchical and keeps the kills of sub-groups that
	// are gone (a judge's session that hit its own limit and closed);
	// memory.events.local (Linux 5.2+) counts each group's own, so that
	// the count covers the group and the sub-groups it has now, as on v1.
	if exists(filepath.Join(dir, "memory.events.local")) {
		if u.OOMKills, err = sumTree(dir, "memory.events.local", "oom_kill"); err != nil {
			return nil, err
		}
	}
	if u.Pids, u.PidsPeak, err = readPids(dir); err != nil {
		return nil, err
	}
	// Before Linux 6.13 v2 counts a refused fork, like v1, only in the
	// forking process's own group ("max" of pids.events), wherever the
	// limit that refused it is; since then pids.events is hierarchical and
	// pids.events.local keeps the old count.
	if exists(filepath.Join(dir, "pids.events.local")) {
		pev, err := readOptionalKeyed(filepath.Join(dir, "pids.events"))
		if err != nil {
			return nil, err
		}
		u.PidsFailures = pev["max"]
	} else if u.PidsFailures, err = sumTree(dir, "pids.events", "max"); err != nil {
		return nil, err
	}
	return u, nil
}
