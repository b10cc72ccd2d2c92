package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
)

// Group is one control group: the same path in every hierarchy of its
// Hierarchy. Its methods may be called from several goroutines at once (a
// watcher reading Usage while a timer calls Kill, say).
type Group struct {
	h    *Hierarchy
	path string
	v1   cgroup1.Cgroup   // Legacy
	v2   *cgroup2.Manager // Unified
	// peaks stands in for the peak counters a v2 kernel lacks, in groups
	// made by Create (peaks.go); nil where none is missing.
	peaks *peakSampler
}

const (
	// freezeTimeout bounds Freeze and Thaw.
	freezeTimeout = 5 * time.Second
	// addRetries and addDelay bound retries of a move that the kernel
	// refuses with EINVAL because the process is still being created
	// (task state TASK_NEW, see runc#1950).
	addRetries = 5
	addDelay   = 30 * time.Millisecond
)

// Path returns the group's path, like "/kolejka/abc/task".
func (g *Group) Path() string { return g.path }

// refuseRoot guards the operations that must never touch the root group
// (see Hierarchy.Load): killing, freezing, limiting or removing it would act
// on the whole host.
func (g *Group) refuseRoot(op string) error {
	if g.path == "/" {
		return fmt.Errorf("unable to %s the root cgroup: only groups below it: %w", op, ErrInvalid)
	}
	return nil
}

// Hierarchy returns the hierarchy the group lives in.
func (g *Group) Hierarchy() *Hierarchy { return g.h }

// Add moves the whole process pid (all its threads) into the group, in every
// hierarchy, by writing it to cgroup.procs. Only what the process does from
// then on is counted here: CPU time and memory charged before stay where
// they were (v1 memory.move_charge_at_immigrate is left off). Its children
// forked later are born in the group.
func (g *Group) Add(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("unable to add process %d to cgroup %s: %w", pid, g.path, ErrInvalid)
	}
	var err error
	if g.v1 != nil {
		// containerd retries EINVAL itself on v1.
		err = g.v1.AddProc(uint64(pid))
	} else {
		for i := 0; ; i++ {
			err = g.v2.AddProc(uint64(pid))
			if !errors.Is(err, syscall.EINVAL) || i == addRetries {
				break
			}
			time.Sleep(addDelay)
		}
	}
	if err != nil {
		return fmt.Errorf("unable to add process %d to cgroup %s: %w", pid, g.path, err)
	}
	return nil
}

// Update makes the group's limits exactly r (see Resources: nil lifts a
// limit; device rules are appended). Lowering memory below what the group
// uses makes the kernel reclaim; v1 refuses with EBUSY if it cannot, v2
// OOM-kills instead.
func (g *Group) Update(r *Resources) error {
	if err := g.refuseRoot("update"); err != nil {
		return err
	}
	if r == nil {
		r = &Resources{}
	}
	if err := g.h.Check(g.path, r); err != nil {
		return fmt.Errorf("unable to update cgroup %s: %w", g.path, err)
	}
	var err error
	if g.v1 != nil {
		err = g.setLimitsLegacy(r)
		if err == nil && len(r.Devices) > 0 {
			err = g.updateDevicesLegacy(r.Devices)
		}
	} else {
		err = g.setLimitsUnified(r)
		if err == nil && len(r.Devices) > 0 {
			err = g.updateDevicesUnified(r.Devices)
		}
	}
	if err != nil {
		return fmt.Errorf("unable to update cgroup %s: %w", g.path, err)
	}
	return nil
}

// Procs returns the process ids in the group, sorted; with recursive, those
// in its sub-groups too. On v1 it is the union over all hierarchies, so a
// process moved in only some of them is still found.
func (g *Group) Procs(recursive bool) ([]int, error) {
	set := map[int]bool{}
	for _, d := range g.h.dirs(g.path) {
		if err := readProcs(d, recursive, set); err != nil {
			return nil, fmt.Errorf("unable to list the processes of cgroup %s: %w", g.path, err)
		}
	}
	out := make([]int, 0, len(set))
	for pid := range set {
		out = append(out, pid)
	}
	sort.Ints(out)
	return out, nil
}

// Populated reports whether any process lives in the group or in its
// sub-groups. On v2 it is one read of cgroup.events ("populated"), which the
// kernel keeps up to date; v1 has no such file, so there it lists the
// processes of the whole sub-tree. A group that is gone is not populated.
func (g *Group) Populated() (bool, error) {
	if g.v2 != nil {
		ev, err := readKeyed(filepath.Join(g.h.mount, g.path, "cgroup.events"))
		if err == nil {
			return ev["populated"] != 0, nil
		}
		if !isMissing(err) {
			return false, fmt.Errorf("unable to tell whether cgroup %s is populated: %w", g.path, err)
		}
		return false, nil
	}
	pids, err := g.Procs(true)
	if err != nil {
		return false, fmt.Errorf("unable to tell whether cgroup %s is populated: %w", g.path, err)
	}
	return len(pids) > 0, nil
}

// readProcs adds the pids of dir's cgroup.procs (and its sub-groups') to
// set. Folders that vanish meanwhile are skipped: sub-groups come and go.
func readProcs(dir string, recursive bool, set map[int]bool) error {
	b, err := readFile(filepath.Join(dir, "cgroup.procs"))
	if isMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("unable to parse %s: %w", filepath.Join(dir, "cgroup.procs"), err)
		}
		set[pid] = true
	}
	if !recursive {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if isMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := readProcs(filepath.Join(dir, e.Name()), true, set); err != nil {
				return err
			}
		}
	}
	return nil
}

// Freeze stops every process in the group and its sub-groups, and returns
// once they are all stopped (v1 freezer.state FROZEN, v2 cgroup.events
// "frozen 1"). Frozen processes use no CPU but keep their memory. On v1 a
// SIGKILL takes effect only once they are thawed; v2 lets fatal signals
// through.
func (g *Group) Freeze() error { return g.setFrozen(true, "freeze") }

// Thaw resumes the processes that Freeze stopped.
func (g *Group) Thaw() error { return g.setFrozen(false, "thaw") }

// setFrozen is Freeze or Thaw (verb, for errors): refused on the root
// group, bounded by freezeTimeout.
func (g *Group) setFrozen(frozen bool, verb string) error {
	if err := g.refuseRoot(verb); err != nil {
		return err
	}
	if err := g.freeze(frozen, freezeTimeout); err != nil {
		return fmt.Errorf("unable to %s cgroup %s: %w", verb, g.path, err)
	}
	return nil
}

func (g *Group) freeze(frozen bool, timeout time.Duration) error {
	if g.v2 != nil {
		return freezeUnified(filepath.Join(g.h.mount, g.path), frozen, timeout)
	}
	dir := g.h.dir("freezer", g.path)
	if dir == "" {
		return fmt.Errorf("the cgroup v1 freezer controller is not mounted: %w", ErrUnsupported)
	}
	state := "THAWED"
	if frozen {
		state = "FROZEN"
	}
	return freezeLegacy(dir, state, timeout)
}

// Child creates (or reuses) the sub-group name of g with limits r. Its usage
// counts in g's too, and g's limits bound it. See enableControllers for why
// on v2 a group that holds processes cannot get limited sub-groups.
func (g *Group) Child(name string, r *Resources) (*Group, error) {
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return nil, fmt.Errorf("sub-group name %q of cgroup %s: want one path element: %w", name, g.path, ErrInvalid)
	}
	return g.h.Create(path.Join(g.path, name), r)
}

// Delete kills whatever still runs in the group and its sub-groups, then
// removes the sub-groups bottom-up and the group itself, in every
// hierarchy. A group already (partly) gone is fine: Delete is idempotent.
func (g *Group) Delete() error {
	if err := g.refuseRoot("delete"); err != nil {
		return err
	}
	if g.peaks != nil {
		g.peaks.close()
	}
	// The kernel refuses to remove a group that holds processes or
	// sub-groups (EBUSY), so an empty leaf goes with one rmdir per
	// hierarchy; only what remains needs the walk below.
	gone := true
	for _, d := range g.h.allDirs(g.path) {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			gone = false
		}
	}
	if gone {
		return nil
	}
	if err := g.Kill(); err != nil {
		return fmt.Errorf("unable to delete cgroup %s: %w", g.path, err)
	}
	var errs []error
	for _, d := range g.h.allDirs(g.path) {
		if err := removeTree(d); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("unable to delete cgroup %s: %w", g.path, err)
	}
	return nil
}

// removeTree removes the cgroup folder dir and its sub-folders, deepest
// first. Only rmdir is used: a cgroup folder goes away with its control
// files once it has no sub-groups and no processes. The kernel may answer
// EBUSY for a moment after the last process exited, so that is retried.
func removeTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if isMissing(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unable to list %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	delay := time.Millisecond
	for i := 0; ; i++ {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || i == 10 {
			return fmt.Errorf("unable to remove %s: %w", dir, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 100*time.Millisecond)
	}
}
