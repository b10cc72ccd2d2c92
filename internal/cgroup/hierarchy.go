package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/containerd/cgroups/v3/cgroup1"
)

// Hierarchy is the cgroup file system of a host (or a fake of it in tests):
// its mode and where it is mounted. It holds no state that changes; one
// value serves any number of groups and goroutines.
type Hierarchy struct {
	mode Mode

	// v2: the mount folder, and the path of the mount's root inside the
	// hierarchy ("/" unless a sub-tree is bind-mounted, as in containers).
	mount string
	root  string

	// v1: controller name → mount folder, and → mount root. Co-mounted
	// controllers ("cpu,cpuacct") share a folder.
	controllers map[string]string
	roots       map[string]string
	// subsystems are what containerd/cgroups creates groups in and moves
	// processes into, one per distinct folder.
	subsystems []cgroup1.Subsystem
	// limitless names the controllers mounted where containerd/cgroups
	// cannot address them (it expects <folder>/<name>), with the reason:
	// groups are still created there, but limits of theirs are refused.
	limitless map[string]string
	// foreign are v1 hierarchies (and a hybrid host's unified mount) this
	// package does not manage. Other managers, libcontainer among them,
	// create groups there too, so Delete removes our paths from them.
	foreign []string
}

// NewUnified returns the cgroup v2 hierarchy mounted at mountpoint (tests
// pass a folder shaped like cgroupfs).
func NewUnified(mountpoint string) *Hierarchy {
	return &Hierarchy{mode: Unified, mount: filepath.Clean(mountpoint), root: "/"}
}

// NewLegacy returns a cgroup v1 hierarchy from controller names to mount
// folders, e.g. {"memory": "/sys/fs/cgroup/memory", "cpu":
// "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct"}.
// Controllers this package does not use are ignored; missing ones are
// allowed (limits that need them are refused by Check).
//
// containerd/cgroups addresses a v1 controller as <parent>/<name>, which
// holds for the usual /sys/fs/cgroup/<name> mounts and for co-mounts that
// have the per-name symlinks systemd makes (/sys/fs/cgroup/cpuacct →
// cpu,cpuacct). cpu and cpuacct need nothing from it but folders, so they
// work at any folder; other controllers at a folder it cannot address still
// get groups and measurements, but their limits are refused, and cpuset is
// not used at all (a v1 cpuset group is unusable until its cpus are set).
func NewLegacy(mounts map[string]string) *Hierarchy {
	h := &Hierarchy{
		mode:        Legacy,
		controllers: map[string]string{},
		roots:       map[string]string{},
		limitless:   map[string]string{},
	}
	for _, name := range legacyControllers {
		if dir, ok := mounts[name]; ok && dir != "" {
			h.controllers[name] = filepath.Clean(dir)
		}
	}
	seen := map[string]bool{}
	for _, name := range legacyControllers {
		dir, ok := h.controllers[name]
		if !ok {
			continue
		}
		s, err := legacySubsystem(name, dir)
		if err != nil {
			h.limitless[name] = err.Error()
			if name == "cpuset" {
				delete(h.controllers, name)
				continue
			}
			s = folderSubsystem{name: cgroup1.Name(name), dir: dir}
		}
		// Co-mounted controllers share one folder: create and move once.
		if !seen[dir] {
			seen[dir] = true
			h.subsystems = append(h.subsystems, s)
		}
	}
	return h
}

// legacySubsystem returns what containerd/cgroups drives controller name
// mounted at dir with, or an error if it cannot address that folder.
func legacySubsystem(name, dir string) (cgroup1.Subsystem, error) {
	if name == "cpu" || name == "cpuacct" {
		// No limits of theirs are used: folders and cgroup.procs suffice.
		return folderSubsystem{name: cgroup1.Name(name), dir: dir}, nil
	}
	parent, ok := containerdRoot(name, dir)
	if !ok {
		return nil, fmt.Errorf("controller %s is mounted at %s, which containerd/cgroups cannot address as <folder>/%s", name, dir, name)
	}
	switch name {
	case "cpuset":
		return cgroup1.NewCpuset(parent), nil
	case "memory":
		return cgroup1.NewMemory(parent), nil
	case "pids":
		return cgroup1.NewPids(parent), nil
	case "freezer":
		return cgroup1.NewFreezer(parent), nil
	case "devices":
		return cgroup1.NewDevices(parent), nil
	}
	return folderSubsystem{name: cgroup1.Name(name), dir: dir}, nil
}

// containerdRoot returns the parent folder containerd/cgroups must be given
// for controller name mounted at dir, if it can address it at all.
func containerdRoot(name, dir string) (string, bool) {
	parent := filepath.Dir(dir)
	if filepath.Base(dir) == name {
		return parent, true
	}
	alias, err1 := filepath.EvalSymlinks(filepath.Join(parent, name))
	target, err2 := filepath.EvalSymlinks(dir)
	return parent, err1 == nil && err2 == nil && alias == target
}

// folderSubsystem is a v1 hierarchy that containerd/cgroups only makes
// folders in and moves processes into (it creates a folder for any
// subsystem with a Path and no Create of its own).
type folderSubsystem struct {
	name cgroup1.Name
	dir  string
}

func (s folderSubsystem) Name() cgroup1.Name   { return s.name }
func (s folderSubsystem) Path(p string) string { return filepath.Join(s.dir, p) }

// legacy is h as a containerd/cgroups v1 hierarchy (cgroup1.WithHierarchy).
func (h *Hierarchy) legacy() ([]cgroup1.Subsystem, error) { return h.subsystems, nil }

// Mode returns Legacy or Unified.
func (h *Hierarchy) Mode() Mode { return h.mode }

// checkPath validates a group path: absolute, clean, not the root.
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("cgroup path %q: want a clean absolute path below /: %w", p, ErrInvalid)
	}
	return nil
}

// dirs returns the folders of group path p, one per hierarchy folder.
func (h *Hierarchy) dirs(p string) []string {
	if h.mode == Unified {
		return []string{filepath.Join(h.mount, p)}
	}
	var out []string
	seen := map[string]bool{}
	for _, name := range legacyControllers {
		if dir, ok := h.controllers[name]; ok && !seen[dir] {
			seen[dir] = true
			out = append(out, filepath.Join(dir, p))
		}
	}
	return out
}

// allDirs is dirs plus the folders of p in foreign hierarchies.
func (h *Hierarchy) allDirs(p string) []string {
	out := h.dirs(p)
	for _, f := range h.foreign {
		out = append(out, filepath.Join(f, p))
	}
	return out
}

// dir returns the folder of group path p in the hierarchy of a v1
// controller, or "" if that controller is not mounted.
func (h *Hierarchy) dir(controller, p string) string {
	if d, ok := h.controllers[controller]; ok {
		return filepath.Join(d, p)
	}
	return ""
}

// Check reports whether a group at path p (made or not) can enforce r on
// this host, without changing anything. The error wraps ErrInvalid for
// malformed values, or ErrUnsupported naming each limit that cannot be
// enforced and why (a controller not mounted, or on v2 not given to the
// delegation p is in; swap not accounted; CPUs outside the cpuset there).
func (h *Hierarchy) Check(p string, r *Resources) error {
	if r == nil {
		return nil
	}
	if err := r.validate(); err != nil {
		return err
	}
	if h.mode == Unified {
		return h.checkUnified(p, r)
	}
	return h.checkLegacy(r)
}

// Create creates the group at path (like "/kolejka/abc/task", absolute in
// every hierarchy), with any missing parents, and makes its limits exactly r
// (nil means none). An existing group is reused and its limits set to r. On
// failure the folders Create made are removed again.
//
// On v1 the group is made in every controller hierarchy this package uses,
// and a new cpuset group gets its parent's cpus and mems (the kernel leaves
// them empty). On v2 the cpu, cpuset, memory and pids controllers that the
// root offers are enabled in every ancestor's cgroup.subtree_control, so the
// group gets their limits and counters.
func (h *Hierarchy) Create(p string, r *Resources) (*Group, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	if r == nil {
		r = &Resources{}
	}
	if err := h.Check(p, r); err != nil {
		return nil, fmt.Errorf("unable to create cgroup %s: %w", p, err)
	}
	var made []string
	for _, d := range h.dirs(p) {
		made = append(made, missingFolders(d)...)
	}
	var g *Group
	var err error
	if h.mode == Unified {
		g, err = h.createUnified(p, r)
	} else {
		g, err = h.createLegacy(p, r)
	}
	if err != nil {
		// Deepest first, so parents are empty when their turn comes.
		sort.Slice(made, func(i, j int) bool { return len(made[i]) > len(made[j]) })
		for _, d := range made {
			_ = os.Remove(d)
		}
		return nil, fmt.Errorf("unable to create cgroup %s: %w", p, err)
	}
	return g, nil
}

// missingFolders returns dir and those of its parents that do not exist.
func missingFolders(dir string) []string {
	var out []string
	for d := dir; d != "/" && d != "." && !exists(d); d = filepath.Dir(d) {
		out = append(out, d)
	}
	return out
}

// MissingParents returns the folders that Create(p) would make for p's
// ancestors (not for p itself), in every hierarchy: those that do not exist
// now. On v1 a group path is made in every hierarchy, so where a process's
// path differs between hierarchies (host processes under systemd's v1
// layout, where only some controllers have the user's slices) its path's
// ancestors are new folders in the others. The observer records these
// before it makes a session there, and removes them with RemoveEmpty once
// nothing uses them, so that they do not outlive its sessions.
func (h *Hierarchy) MissingParents(p string) ([]string, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	var out []string
	if parent := path.Dir(p); parent != "/" {
		for _, d := range h.dirs(parent) {
			out = append(out, missingFolders(d)...)
		}
	}
	return out, nil
}

// RemoveEmpty removes the cgroup folders dirs, as MissingParents gives
// them, that are empty now (no process, no sub-group), deepest first, and
// returns those that remain: still in use (the kernel refuses rmdir with
// EBUSY), or not removable for another reason. A folder that is gone
// already, or that is not below one of this hierarchy's mounts (a record
// that was tampered with), is dropped without touching it. Only rmdir is
// used, so nothing that holds a process or a group is ever removed.
func (h *Hierarchy) RemoveEmpty(dirs []string) []string {
	sorted := append([]string(nil), dirs...)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	var left []string
	for _, d := range sorted {
		if !h.owns(d) {
			continue
		}
		if err := syscall.Rmdir(d); err != nil && !isMissing(err) {
			left = append(left, d)
		}
	}
	sort.Strings(left)
	return left
}

// owns reports whether dir is a clean path strictly below one of the
// hierarchy's mount folders.
func (h *Hierarchy) owns(dir string) bool {
	if dir == "" || filepath.Clean(dir) != dir || !filepath.IsAbs(dir) {
		return false
	}
	for _, m := range h.dirs("/") {
		if strings.HasPrefix(dir, m+"/") {
			return true
		}
	}
	return false
}

// Load returns the existing group at path, unchanged. The error wraps
// ErrNotExist if it exists in no hierarchy.
//
// The root "/" loads too, so that a process can be moved back into it (the
// observer returns a detaching process to the group it came from, which may
// be the root). The root group measures and takes processes, but Kill,
// Delete, Freeze, Thaw, Update and Evacuate refuse it with ErrInvalid: they
// would act on every process of the host.
func (h *Hierarchy) Load(p string) (*Group, error) {
	if p == "/" {
		return h.loadRoot()
	}
	if err := checkPath(p); err != nil {
		return nil, err
	}
	found := false
	for _, d := range h.dirs(p) {
		if exists(d) {
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("unable to load cgroup %s: %w", p, ErrNotExist)
	}
	if h.mode == Unified {
		return h.loadUnified(p)
	}
	return h.loadLegacy(p)
}

// PathOf returns the group path of process pid: on v2 the "0::" line of
// /proc/<pid>/cgroup, on v1 the memory controller's path (or that of the
// first controller used here if memory is not mounted). The path is
// relative to the mount's root, so it can be passed to Load.
func (h *Hierarchy) PathOf(pid int) (string, error) {
	file := fmt.Sprintf("/proc/%d/cgroup", pid)
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("unable to find the cgroup of process %d: %w", pid, err)
	}
	defer f.Close()
	legacy, unified, err := parseProcCgroup(f)
	if err != nil {
		return "", fmt.Errorf("unable to parse %s: %w", file, err)
	}
	var p, root string
	if h.mode == Unified {
		p, root = unified, h.root
		if p == "" {
			return "", fmt.Errorf("unable to find the cgroup of process %d: no 0:: line in %s", pid, file)
		}
	} else {
		for _, c := range append([]string{"memory"}, legacyControllers...) {
			if _, mounted := h.controllers[c]; mounted && legacy[c] != "" {
				p, root = legacy[c], h.roots[c]
				break
			}
		}
		if p == "" {
			return "", fmt.Errorf("unable to find the cgroup of process %d: no v1 controller of ours in %s", pid, file)
		}
	}
	return relativeTo(root, p), nil
}

// mountRoot returns the group the mount of this hierarchy shows as its
// root: "/" unless a sub-tree is mounted (in containers, or by Confine).
// On v1 it is that of the controller PathOf reads.
func (h *Hierarchy) mountRoot() string {
	if h.mode == Unified {
		return h.root
	}
	for _, c := range append([]string{"memory"}, legacyControllers...) {
		if _, mounted := h.controllers[c]; mounted {
			if r := h.roots[c]; r != "" {
				return r
			}
			return "/"
		}
	}
	return "/"
}

// Absolute returns group path p (relative to this mount, as Create and
// Load take it) as the hierarchy's own, as /proc/<pid>/cgroup shows it
// and as processes with other views of the hierarchy understand it (the
// observer's wire).
func (h *Hierarchy) Absolute(p string) string {
	return path.Join(h.mountRoot(), p)
}

// Relative is the inverse of Absolute: the group path, relative to this
// mount, of the hierarchy's own path abs. The error wraps ErrInvalid if abs
// is not below the mount's root.
func (h *Hierarchy) Relative(abs string) (string, error) {
	root := h.mountRoot()
	if root == "/" {
		return abs, nil
	}
	if abs != root && !strings.HasPrefix(abs, root+"/") {
		return "", fmt.Errorf("cgroup %s is outside %s, the part of the hierarchy mounted here: %w", abs, root, ErrInvalid)
	}
	return relativeTo(root, abs), nil
}

// relativeTo strips the mount root from a path as /proc/<pid>/cgroup shows
// it: where a sub-tree /docker/x of the hierarchy is mounted, group
// /docker/x/a is the folder <mount>/a.
func relativeTo(root, p string) string {
	if root == "" || root == "/" {
		return p
	}
	if p == root {
		return "/"
	}
	if strings.HasPrefix(p, root+"/") {
		return p[len(root):]
	}
	return p
}

// Children returns the paths of the immediate sub-groups of path, in any
// hierarchy, sorted. A missing path has none. Used to sweep leftovers.
func (h *Hierarchy) Children(p string) ([]string, error) {
	if p != "/" {
		if err := checkPath(p); err != nil {
			return nil, err
		}
	}
	names := map[string]bool{}
	for _, d := range h.dirs(p) {
		entries, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("unable to list the sub-groups of %s: %w", p, err)
		}
		for _, e := range entries {
			if e.IsDir() {
				names[e.Name()] = true
			}
		}
	}
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, path.Join(p, n))
	}
	sort.Strings(out)
	return out, nil
}

// loadRoot opens the root group of the hierarchy.
func (h *Hierarchy) loadRoot() (*Group, error) {
	if h.mode == Unified {
		return h.loadUnified("/")
	}
	return h.loadLegacy("/")
}
