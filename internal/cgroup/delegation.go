package cgroup

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// On cgroup v2 a group can be delegated: handed to a service to manage the
// sub-tree below it, while the groups above stay the system manager's.
// systemd does this for a unit with Delegate=yes: it enables the unit's
// controllers in every ancestor, puts the unit's processes in the unit's
// own group, and marks that group with the extended attribute
// trusted.delegate=1 (user.delegate=1 for a user's manager). The delegate
// may create groups below it, enable controllers in its own
// cgroup.subtree_control and below, and move its processes within the
// sub-tree; it must not write to any group above.
//
// This package honours the mark: enableControllers and Check never look
// above the nearest delegated group of the path they work on (its
// boundary), and take the controllers that group was given as the ones
// there are. Without a mark the boundary is the root of the hierarchy (as
// mounted here), which is the caller's to manage: a root shell, a unit
// without Delegate=, a host without systemd, and every v1 host.

// delegationMarks are the extended attributes systemd sets on a delegated
// group, "1" meaning delegated.
var delegationMarks = []string{"trusted.delegate", "user.delegate"}

// delegated reports whether v2 group p carries a delegation mark.
func (h *Hierarchy) delegated(p string) bool {
	dir := filepath.Join(h.mount, p)
	buf := make([]byte, 8)
	for _, attr := range delegationMarks {
		n, err := unix.Getxattr(dir, attr, buf)
		if err == nil && strings.TrimSpace(string(buf[:n])) == "1" {
			return true
		}
	}
	return false
}

// boundary returns the nearest group at or above p that is delegated, or
// "/" (the root of the hierarchy as mounted here) if none is. On v1 it is
// always "/".
func (h *Hierarchy) boundary(p string) string {
	if h.mode != Unified {
		return "/"
	}
	for a := p; a != "/" && a != "."; a = path.Dir(a) {
		if h.delegated(a) {
			return a
		}
	}
	return "/"
}

// Delegation returns the group below which process pid may make and manage
// groups: on v2 the nearest group at or above the process's own that is
// delegated to it (see above), else "/", the whole hierarchy. A service
// keeps its groups below the returned one, e.g. path.Join(d, "kolejka").
func (h *Hierarchy) Delegation(pid int) (string, error) {
	if h.mode != Unified {
		return "/", nil
	}
	own, err := h.PathOf(pid)
	if err != nil {
		return "", err
	}
	return h.boundary(own), nil
}

// MakeRoom prepares the groups on the way down to p for sub-groups with
// controllers: where the group of process pid is an ancestor of p (a service
// that systemd started in its delegated group, making its groups below
// it), that group's processes move into its sub-group leaf (Evacuate), since
// v2 gives controllers to the sub-groups of a group only while it holds no
// process of its own. It returns the process's group afterwards. Nothing
// moves on v1, which has no such rule, or when pid's group is not above p.
func (h *Hierarchy) MakeRoom(p string, pid int, leaf string) (string, error) {
	if err := checkPath(p); err != nil {
		return "", err
	}
	own, err := h.PathOf(pid)
	if err != nil {
		return "", err
	}
	if h.mode != Unified || own == "/" || !strings.HasPrefix(p, own+"/") {
		return own, nil
	}
	g, err := h.Load(own)
	if err != nil {
		return "", err
	}
	l, err := g.Evacuate(leaf)
	if err != nil {
		return "", fmt.Errorf("unable to make room below cgroup %s: %w", own, err)
	}
	return l.Path(), nil
}

// offered returns the controllers group p was given by its parent (its
// cgroup.controllers; at the root, every controller the kernel has).
func (h *Hierarchy) offered(p string) (map[string]bool, error) {
	file := filepath.Join(h.mount, p, "cgroup.controllers")
	s, err := readString(file)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			err = fmt.Errorf("%w: %s is missing", ErrNotExist, file)
		}
		return nil, fmt.Errorf("unable to read the controllers of %s: %w", filepath.Join(h.mount, p), err)
	}
	out := map[string]bool{}
	for _, c := range strings.Fields(s) {
		out[c] = true
	}
	return out, nil
}
