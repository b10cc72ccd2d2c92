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

// rootControllers returns the controllers the v2 root offers.
func (h *Hierarchy) rootControllers() (map[string]bool, error) {
	s, err := readString(filepath.Join(h.mount, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("unable to read the controllers of %s: %w", h.mount, err)
	}
	out := map[string]bool{}
	for _, c := range strings.Fields(s) {
		out[c] = true
	}
	return out, nil
}

// checkUnified refuses the limits of r that the v2 root cannot enforce.
func (h *Hierarchy) checkUnified(r *Resources) error {
	if r.Memory == nil && r.Swap == nil && r.Pids == nil && r.CPUs == "" {
		return nil
	}
	available, err := h.rootControllers()
	if err != nil {
		return unsupported("any", "%v", err)
	}
	var errs []error
	need := func(limit, controller string) bool {
		if !available[controller] {
			errs = append(errs, unsupported(limit, "controller %s is not in %s", controller, filepath.Join(h.mount, "cgroup.controllers")))
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
		file := filepath.Join(h.mount, "cpuset.cpus.effective")
		// The root always has it when cpuset is available; if not, the
		// kernel's own check at write time remains.
		if have, err := readString(file); err == nil {
			if out, err := cpusOutside(r.CPUs, have); err != nil {
				errs = append(errs, unsupported("cpus", "unable to parse %s %q: %v", file, have, err))
			} else if len(out) > 0 {
				errs = append(errs, unsupported("cpus", "CPUs %v are not in the root cpuset %q (%s)", out, have, file))
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
	m, err := cgroup2.NewManager(h.mount, p, &cgroup2.Resources{Devices: r.Devices})
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
	return g, nil
}

// enableControllers writes "+cpu +cpuset +memory +pids" (those the root
// offers and that are not on yet) into cgroup.subtree_control of the root
// and of every ancestor of p, top down, so that p gets those controllers.
//
// The kernel refuses (EBUSY) to enable a controller in a non-root group
// that has processes of its own: under v2's "no internal processes" rule,
// processes live in leaves only. So a group that holds processes cannot get
// sub-groups with limits or memory and pids counters; create sub-groups
// first and put every process in a leaf.
func (h *Hierarchy) enableControllers(p string) error {
	available, err := h.rootControllers()
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
	var ancestors []string
	for a := path.Dir(p); ; a = path.Dir(a) {
		ancestors = append([]string{a}, ancestors...)
		if a == "/" {
			break
		}
	}
	for _, a := range ancestors {
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
	if err := g.v2.Update(&cgroup2.Resources{Devices: rules}); err != nil {
		return fmt.Errorf("unable to attach device rules to %s: %w", g.path, err)
	}
	return nil
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
