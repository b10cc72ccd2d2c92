package cgroup

import (
	"bufio"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// Mode is the kind of cgroup hierarchy a host runs.
type Mode int

const (
	// Legacy is cgroup v1: one hierarchy per controller, or per set of
	// co-mounted controllers such as "cpu,cpuacct". Hybrid hosts, which add
	// an empty cgroup2 at /sys/fs/cgroup/unified for systemd's process
	// tracking, count as Legacy: every controller that enforces a limit is
	// bound to a v1 hierarchy there, and a controller can be bound to only
	// one hierarchy at a time.
	Legacy Mode = iota + 1
	// Unified is cgroup v2: a single hierarchy mounted at /sys/fs/cgroup.
	Unified
)

// String returns "legacy" or "unified".
func (m Mode) String() string {
	switch m {
	case Legacy:
		return "legacy"
	case Unified:
		return "unified"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// defaultMount is where distributions and systemd mount cgroups.
const defaultMount = "/sys/fs/cgroup"

// legacyControllers are the v1 controllers this package uses. Others
// (blkio, net_cls, net_prio, perf_event, hugetlb, rdma, misc and named
// hierarchies like name=systemd) are left alone: groups are not created
// there and processes are not moved there.
var legacyControllers = []string{"cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "devices"}

func isLegacyController(name string) bool {
	for _, c := range legacyControllers {
		if c == name {
			return true
		}
	}
	return false
}

// Host detects the cgroup hierarchy of this host from the mount table:
// a cgroup2 file system mounted at /sys/fs/cgroup means Unified; otherwise
// any v1 controller mount means Legacy (also when an empty cgroup2 is mounted
// at /sys/fs/cgroup/unified, as on hybrid systemd hosts). Host caches
// nothing: the caller keeps the returned *Hierarchy.
//
// The table is read through /proc/thread-self, not /proc/self: the latter
// shows the thread group leader's mount namespace, and in a process that
// embeds libcontainer the main thread can be left wedged inside a
// container's mount namespace (libcontainer joins it from a locked thread
// and lets the thread die, which the Go runtime cannot do to the main one).
func Host() (*Hierarchy, error) {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, fmt.Errorf("unable to detect cgroup mode: %w", err)
	}
	h, err := fromMounts(mounts)
	if err != nil {
		return nil, fmt.Errorf("unable to detect cgroup mode from the mount table: %w", err)
	}
	return h, nil
}

// parseMountinfo builds the hierarchy described by a mountinfo text (the
// format of /proc/self/mountinfo, see proc(5)).
func parseMountinfo(r io.Reader) (*Hierarchy, error) {
	mounts, err := mountinfo.GetMountsFromReader(r, nil)
	if err != nil {
		return nil, err
	}
	return fromMounts(mounts)
}

// fromMounts builds the hierarchy from a parsed mount table.
func fromMounts(mounts []*mountinfo.Info) (*Hierarchy, error) {
	var foreign []string
	var unified *mountinfo.Info
	legacy := map[string]string{}
	roots := map[string]string{}
	for _, m := range mounts {
		switch m.FSType {
		case "cgroup2":
			if filepath.Clean(m.Mountpoint) == defaultMount {
				unified = m
			} else {
				foreign = append(foreign, m.Mountpoint)
			}
		case "cgroup":
			foreign = append(foreign, m.Mountpoint)
			// The controllers of a v1 hierarchy are its super options:
			// "rw,cpu,cpuacct" for the co-mounted cpu,cpuacct hierarchy.
			for _, opt := range strings.Split(m.VFSOptions, ",") {
				if !isLegacyController(opt) {
					continue
				}
				if _, seen := legacy[opt]; !seen {
					legacy[opt] = m.Mountpoint
					roots[opt] = m.Root
				}
			}
		}
	}
	switch {
	case unified != nil:
		h := NewUnified(unified.Mountpoint)
		h.root = unified.Root
		return h, nil
	case len(legacy) > 0:
		h := NewLegacy(legacy)
		h.roots = roots
		used := map[string]bool{}
		for _, dir := range legacy {
			used[dir] = true
		}
		for _, f := range foreign {
			if !used[f] {
				h.foreign = append(h.foreign, f)
			}
		}
		return h, nil
	}
	return nil, fmt.Errorf("no cgroup2 file system at %s and no cgroup v1 controller mounted: %w", defaultMount, ErrUnsupported)
}

// parseProcCgroup returns the group paths of a /proc/<pid>/cgroup text: the
// v1 controller paths by controller name, and the v2 ("0::") path.
func parseProcCgroup(r io.Reader) (legacy map[string]string, unified string, err error) {
	legacy = map[string]string{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		// hierarchy-ID:controller-list:cgroup-path; the path may contain ':'.
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) != 3 {
			return nil, "", fmt.Errorf("malformed line %q", s.Text())
		}
		if parts[0] == "0" && parts[1] == "" {
			unified = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			legacy[c] = parts[2]
		}
	}
	return legacy, unified, s.Err()
}
