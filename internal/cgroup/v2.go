package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// This file holds what is particular to cgroup v2 (unified hosts).

// unifiedControllers are the v2 controllers every group gets when the root
// offers them: cpu and cpuset for limits, memory and pids for limits and
// for their counters (memory.peak, pids.peak, memory.events exist only in
// groups whose parent enabled the controller). cpu.stat exists regardless.
var unifiedControllers = []string{"cpu", "cpuset", "memory", "pids"}

// checkUnified refuses the limits of r that a v2 group at p cannot get:
// those whose controller its boundary (see delegation.go) was not given.
func (h *Hierarchy) checkUnified(p string, r *Resources) error {
	if r.Memory == nil && r.Swap == nil && r.Pids == nil && r.CPUs == "" {
		return nil
	}
	top := h.boundary(path.Dir(p))
	available, err := h.offered(top)
	if err != nil {
		return unsupported("any", "%v", err)
	}
	var errs []error
	need := func(limit, controller string) bool {
		if !available[controller] {
			errs = append(errs, unsupported(limit, "controller %s is not in %s", controller, filepath.Join(h.mount, top, "cgroup.controllers")))
			return false
		}
		return true
	}
	if r.Memory != nil {
		need("memory", "memory")
	}
	if r.Swap != nil && need("swap", "memory") {
		if ok, probe := h.swapAccounted(); !ok {
			errs = append(errs, unsupported("swap", "%s has memory.max but no memory.swap.max: the kernel does not account swap (CONFIG_MEMCG_SWAP off or swapaccount=0)", probe))
		}
	}
	if r.Pids != nil {
		need("pids", "pids")
	}
	if r.CPUs != "" && need("cpus", "cpuset") {
		file := filepath.Join(h.mount, top, "cpuset.cpus.effective")
		// A group given cpuset has it (the root too); if not, the
		// kernel's own check at write time remains.
		if have, err := readString(file); err == nil {
			if out, err := cpusOutside(r.CPUs, have); err != nil {
				errs = append(errs, unsupported("cpus", "unable to parse %s %q: %v", file, have, err))
			} else if len(out) > 0 {
				errs = append(errs, unsupported("cpus", "CPUs %v are not in the cpuset %q of %s", out, have, file))
			}
		}
	}
	return errors.Join(errs...)
}

// swapAccounted tells whether v2 groups get memory.swap.max, judging by the
// first group below the root that has memory.max. With no such group there
// is nothing to judge by; Create then finds out.
func (h *Hierarchy) swapAccounted() (bool, string) {
	entries, err := os.ReadDir(h.mount)
	if err != nil {
		return true, ""
	}
	for _, e := range entries {
		dir := filepath.Join(h.mount, e.Name())
		if e.IsDir() && exists(filepath.Join(dir, "memory.max")) {
			return exists(filepath.Join(dir, "memory.swap.max")), dir
		}
	}
	return true, ""
}

// createUnified makes the group through containerd/cgroups (folders and the
// device eBPF program), enables the controllers down to it, and writes its
// limits.
func (h *Hierarchy) createUnified(p string, r *Resources) (*Group, error) {
	m, err := cgroup2.NewManager(h.mount, p, &cgroup2.Resources{Devices: explicitDevices(r.Devices)})
	if err != nil {
		return nil, fmt.Errorf("unable to make its folder: %w", err)
	}
	g := &Group{h: h, path: p, v2: m}
	if err := h.enableControllers(p); err != nil {
		return nil, err
	}
	if err := g.setLimitsUnified(r); err != nil {
		return nil, err
	}
	g.peaks = startPeakSampler(filepath.Join(h.mount, p))
	return g, nil
}

// enableControllers writes "+cpu +cpuset +memory +pids" (those p's
// boundary was given, see delegation.go, and that are not on yet) into
// cgroup.subtree_control of the boundary and of every group below it down
// to p's parent, top down, so that p gets those controllers. Nothing above
// the boundary is written: a delegated group's ancestors are the system
// manager's.
//
// The kernel refuses (EBUSY) to enable a controller in a non-root group
// that has processes of its own: under v2's "no internal processes" rule,
// processes live in leaves only. So a group that holds processes cannot get
// sub-groups with limits or memory and pids counters; create sub-groups
// first and put every process in a leaf (Evacuate, MakeRoom).
func (h *Hierarchy) enableControllers(p string) error {
	top := h.boundary(path.Dir(p))
	available, err := h.offered(top)
	if err != nil {
		return err
	}
	var want []string
	for _, c := range unifiedControllers {
		if available[c] {
			want = append(want, c)
		}
	}
	if len(want) == 0 {
		return nil
	}
	var groups []string
	for a := path.Dir(p); ; a = path.Dir(a) {
		groups = append([]string{a}, groups...)
		if a == top || a == "/" {
			break
		}
	}
	for _, a := range groups {
		if err := enableIn(filepath.Join(h.mount, a), want); err != nil {
			return err
		}
	}
	return nil
}

// enableIn enables the controllers of want that dir's subtree_control lacks.
func enableIn(dir string, want []string) error {
	file := filepath.Join(dir, "cgroup.subtree_control")
	current, err := readString(file)
	if err != nil {
		return fmt.Errorf("unable to read %s: %w", file, err)
	}
	on := map[string]bool{}
	for _, c := range strings.Fields(current) {
		on[strings.TrimPrefix(c, "+")] = true
	}
	var add []string
	for _, c := range want {
		if !on[c] {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	err = writeFile(file, strings.Join(add, " "))
	if errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("%w (cgroup v2 allows no processes in a group whose sub-groups have controllers: move them into a leaf group first)", err)
	}
	return err
}

// loadUnified opens an existing v2 group.
func (h *Hierarchy) loadUnified(p string) (*Group, error) {
	m, err := cgroup2.Load(p, cgroup2.WithMountpoint(h.mount))
	if err != nil {
		return nil, fmt.Errorf("unable to load cgroup %s: %w", p, err)
	}
	return &Group{h: h, path: p, v2: m}, nil
}

// setLimitsUnified makes the memory, swap, pids and cpuset limits of the
// group exactly r. A limit's file exists only if its controller is enabled
// for the group: one that is missing is an error if r sets the limit, and
// there is nothing to lift otherwise. ("max" lifts a limit; containerd's
// -1 is refused by memory.max.)
func (g *Group) setLimitsUnified(r *Resources) error {
	dir := filepath.Join(g.h.mount, g.path)
	limit := func(v *int64) string {
		if v == nil {
			return "max"
		}
		return strconv.FormatInt(*v, 10)
	}
	for _, w := range []struct {
		name, file, value string
		set               bool
	}{
		{"memory", "memory.max", limit(r.Memory), r.Memory != nil},
		{"swap", "memory.swap.max", limit(r.Swap), r.Swap != nil},
		{"pids", "pids.max", limit(r.Pids), r.Pids != nil},
		// A lone newline clears cpuset.cpus, which means "the parent's
		// effective CPUs" on v2 (a zero-length write would not reach the
		// kernel's parser).
		{"cpus", "cpuset.cpus", r.CPUs + "\n", r.CPUs != ""},
	} {
		file := filepath.Join(dir, w.file)
		if !exists(file) {
			if w.set {
				return unsupported(w.name, "%s is missing (controller not enabled for the group)", file)
			}
			continue
		}
		if err := writeFile(file, w.value); err != nil {
			return err
		}
	}
	return nil
}

// updateDevicesUnified attaches another device eBPF program through
// containerd/cgroups. Programs are attached with BPF_F_ALLOW_MULTI and every
// one must allow an access, so rules can only narrow what was allowed.
func (g *Group) updateDevicesUnified(rules []specs.LinuxDeviceCgroup) error {
	if err := g.v2.Update(&cgroup2.Resources{Devices: explicitDevices(rules)}); err != nil {
		return fmt.Errorf("unable to attach device rules to %s: %w", g.path, err)
	}
	return nil
}

// explicitDevices spells out the wildcards of device rules for
// containerd/cgroups' eBPF compiler, which dereferences Major and Minor and
// knows no empty Type: in the OCI rules Resources takes, a nil major or
// minor means any (-1 to the compiler) and an empty type means all ("a").
func explicitDevices(rules []specs.LinuxDeviceCgroup) []specs.LinuxDeviceCgroup {
	if len(rules) == 0 {
		return nil
	}
	out := make([]specs.LinuxDeviceCgroup, len(rules))
	for i, d := range rules {
		any := int64(-1)
		if d.Major == nil {
			d.Major = &any
		}
		if d.Minor == nil {
			d.Minor = &any
		}
		if d.Type == "" {
			d.Type = "a"
		}
		out[i] = d
	}
	return out
}

// freezeUnified writes cgroup.freeze (1 or 0) and waits until cgroup.events
// reports "frozen" accordingly. (cgroup.freeze reads back the requested
// state at once, which is why containerd/cgroups, polling it, returns before
// the group is frozen.) A group that does not freeze within timeout is
// thawed again and reported.
func freezeUnified(dir string, freeze bool, timeout time.Duration) error {
	want := int64(0)
	if freeze {
		want = 1
	}
	if err := writeFile(filepath.Join(dir, "cgroup.freeze"), strconv.FormatInt(want, 10)); err != nil {
		return err
	}
	events := filepath.Join(dir, "cgroup.events")
	deadline := time.Now().Add(timeout)
	delay := 100 * time.Microsecond
	for {
		ev, err := readKeyed(events)
		if err != nil {
			return fmt.Errorf("unable to read %s: %w", events, err)
		}
		if ev["frozen"] == want {
			return nil
		}
		if time.Now().After(deadline) {
			if freeze {
				_ = writeFile(filepath.Join(dir, "cgroup.freeze"), "0")
			}
			return fmt.Errorf("unable to set %s to %d: %s still says frozen %d after %v", filepath.Join(dir, "cgroup.freeze"), want, events, ev["frozen"], timeout)
		}
		time.Sleep(delay)
		delay = min(2*delay, 10*time.Millisecond)
	}
}

// isMissing reports whether err means a file or folder does not exist.
func isMissing(err error) bool { return errors.Is(err, fs.ErrNotExist) }
