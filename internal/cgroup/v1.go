package cgroup

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// This file holds what is particular to cgroup v1 (legacy and hybrid hosts).

// checkLegacy refuses the limits of r that the mounted v1 controllers cannot
// enforce.
func (h *Hierarchy) checkLegacy(r *Resources) error {
	var errs []error
	need := func(limit, controller string) bool {
		if why, ok := h.limitless[controller]; ok {
			errs = append(errs, unsupported(limit, "%s", why))
			return false
		}
		if _, ok := h.controllers[controller]; !ok {
			errs = append(errs, unsupported(limit, "the cgroup v1 %s controller is not mounted", controller))
			return false
		}
		return true
	}
	if r.Memory != nil {
		need("memory", "memory")
	}
	if r.Swap != nil {
		switch {
		case r.Memory == nil:
			errs = append(errs, unsupported("swap", "cgroup v1 limits swap only together with memory (memory.memsw.limit_in_bytes is the limit of memory plus swap)"))
		case need("swap", "memory"):
			f := filepath.Join(h.controllers["memory"], "memory.memsw.limit_in_bytes")
			if !exists(f) {
				errs = append(errs, unsupported("swap", "%s is missing: the kernel does not account swap (CONFIG_MEMCG_SWAP off or swapaccount=0)", f))
			}
		}
	}
	if r.Pids != nil {
		need("pids", "pids")
	}
	if r.CPUs != "" && need("cpus", "cpuset") {
		root := h.controllers["cpuset"]
		have, err := readString(filepath.Join(root, "cpuset.effective_cpus"))
		if err != nil {
			have, err = readString(filepath.Join(root, "cpuset.cpus"))
		}
		if err != nil {
			errs = append(errs, unsupported("cpus", "unable to read the root cpuset: %v", err))
		} else if out, err := cpusOutside(r.CPUs, have); err != nil {
			errs = append(errs, unsupported("cpus", "unable to parse the root cpuset %q: %v", have, err))
		} else if len(out) > 0 {
			errs = append(errs, unsupported("cpus", "CPUs %v are not in the root cpuset %q of %s", out, have, root))
		}
	}
	if len(r.Devices) > 0 {
		need("devices", "devices")
	}
	return errors.Join(errs...)
}

// createLegacy makes the group's folder in every v1 hierarchy through
// containerd/cgroups, which also copies cpuset.cpus and cpuset.mems down
// from the parent into every new cpuset folder on the way (the kernel leaves
// them empty unless cgroup.clone_children is set, and a cpuset group with
// empty cpus or mems refuses processes with ENOSPC), and writes the device
// rules. The other limits are then written by setLimitsLegacy.
func (h *Hierarchy) createLegacy(p string, r *Resources) (*Group, error) {
	res := &specs.LinuxResources{Devices: r.Devices}
	if r.CPUs != "" {
		res.CPU = &specs.LinuxCPU{Cpus: r.CPUs}
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(p), res, cgroup1.WithHierarchy(h.legacy))
	if err != nil {
		return nil, fmt.Errorf("unable to make its folders: %w", err)
	}
	g := &Group{h: h, path: p, v1: cg}
	if err := g.setLimitsLegacy(r); err != nil {
		return nil, err
	}
	return g, nil
}

// loadLegacy opens an existing v1 group in the hierarchies where it exists.
func (h *Hierarchy) loadLegacy(p string) (*Group, error) {
	cg, err := cgroup1.Load(cgroup1.StaticPath(p), cgroup1.WithHierarchy(h.legacy))
	if errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return nil, fmt.Errorf("unable to load cgroup %s: %w", p, ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("unable to load cgroup %s: %w", p, err)
	}
	return &Group{h: h, path: p, v1: cg}, nil
}

// setLimitsLegacy makes the memory, swap, pids and cpuset limits of the
// group exactly r (device rules are separate: they are edits).
func (g *Group) setLimitsLegacy(r *Resources) error {
	if dir := g.h.dir("memory", g.path); dir != "" {
		if err := setMemoryLegacy(dir, r); err != nil {
			return err
		}
	}
	if dir := g.h.dir("pids", g.path); dir != "" {
		v := "max"
		if r.Pids != nil {
			v = strconv.FormatInt(*r.Pids, 10)
		}
		if err := writeFile(filepath.Join(dir, "pids.max"), v); err != nil {
			return err
		}
	}
	if dir := g.h.dir("cpuset", g.path); dir != "" {
		cpus := r.CPUs
		if cpus == "" {
			// "Not limited" is the parent's set: v1 has no inherit value.
			var err error
			if cpus, err = readString(filepath.Join(filepath.Dir(dir), "cpuset.cpus")); err != nil {
				return fmt.Errorf("unable to read the parent cpuset of %s: %w", g.path, err)
			}
		}
		if cpus != "" {
			if err := writeFile(filepath.Join(dir, "cpuset.cpus"), cpus); err != nil {
				return err
			}
		}
	}
	return nil
}

// setMemoryLegacy writes memory.limit_in_bytes and, where swap is accounted,
// memory.memsw.limit_in_bytes (-1 is v1's "unlimited").
//
// The kernel keeps limit_in_bytes <= memsw.limit_in_bytes at every write and
// refuses a write that would break it with EINVAL, so the order matters: a
// new memory limit above the current memsw limit needs memsw raised first;
// otherwise memory goes first, which is also what lowering both needs.
// (containerd/cgroups' Update gets this wrong: it swaps the memory limit
// with the soft limit instead of with memsw.)
func setMemoryLegacy(dir string, r *Resources) error {
	limitFile := filepath.Join(dir, "memory.limit_in_bytes")
	memswFile := filepath.Join(dir, "memory.memsw.limit_in_bytes")
	limit := int64(-1)
	if r.Memory != nil {
		limit = *r.Memory
	}
	if !exists(memswFile) {
		// Check refused any Swap limit already.
		return writeFile(limitFile, strconv.FormatInt(limit, 10))
	}
	memsw := int64(-1)
	if r.Swap != nil {
		memsw = *r.Memory + *r.Swap
	}
	current, err := readInt(memswFile)
	if err != nil {
		return fmt.Errorf("unable to read the memory+swap limit: %w", err)
	}
	type write struct {
		file  string
		value int64
	}
	order := []write{{limitFile, limit}, {memswFile, memsw}}
	if unlimitedIsMax(limit) > current {
		order[0], order[1] = order[1], order[0]
	}
	for _, w := range order {
		if err := writeFile(w.file, strconv.FormatInt(w.value, 10)); err != nil {
			return err
		}
	}
	return nil
}

// unlimitedIsMax maps v1's -1 ("unlimited") to the largest value, for
// comparisons with limits read back (which show unlimited as a huge number).
func unlimitedIsMax(v int64) int64 {
	if v < 0 {
		return 1<<63 - 1
	}
	return v
}

// updateDevicesLegacy appends device rules through containerd/cgroups.
func (g *Group) updateDevicesLegacy(rules []specs.LinuxDeviceCgroup) error {
	dir := g.h.controllers["devices"]
	parent, _ := containerdRoot("devices", dir)
	if err := cgroup1.NewDevices(parent).Update(g.path, &specs.LinuxResources{Devices: rules}); err != nil {
		return fmt.Errorf("unable to write device rules of %s: %w", g.path, err)
	}
	return nil
}

// freezeLegacy drives freezer.state to state ("FROZEN" or "THAWED").
//
// Freezing is asynchronous: the file reads FREEZING until every task has
// stopped, and reading it is what lets the kernel complete the transition.
// The write is repeated on every poll, as runc and containerd do, because
// tasks that joined meanwhile need it on older kernels. A group that does
// not freeze within timeout (a task stuck in an uninterruptible sleep) is
// thawed again and reported.
func freezeLegacy(dir, state string, timeout time.Duration) error {
	file := filepath.Join(dir, "freezer.state")
	deadline := time.Now().Add(timeout)
	delay := 100 * time.Microsecond
	for {
		if err := writeFile(file, state); err != nil {
			return err
		}
		current, err := readString(file)
		if err != nil {
			return fmt.Errorf("unable to read %s: %w", file, err)
		}
		if current == state {
			return nil
		}
		if time.Now().After(deadline) {
			if state == "FROZEN" {
				_ = writeFile(file, "THAWED")
			}
			return fmt.Errorf("unable to set %s to %s: still %s after %v", file, state, current, timeout)
		}
		time.Sleep(delay)
		delay = min(2*delay, 10*time.Millisecond)
	}
}
