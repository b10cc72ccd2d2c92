package daemon

import (
	"fmt"
	"path"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/observer"
)

// Where sessions and processes go in the cgroup tree. On cgroup v2 the
// kernel gives controllers (and so limits, memory.peak and pids.peak) only
// to the sub-groups of a group that holds no process itself ("no internal
// processes"), so the processes of a group that gets sessions below it
// move down into its procsLeaf (cgroup.Group.Evacuate), and those that come
// back to it later go there too. The root group may hold processes and
// controllers at once, and v1 has no such rule: there a group is its own
// home.

// procsLeaf is the sub-group that, on cgroup v2, the processes of a group
// move into before a session is made below it.
const procsLeaf = groupPrefix + "procs"

// callerGroup returns the cgroup a caller belongs to (see logicalGroup).
func (r *Registry) callerGroup(pid int) (string, error) {
	p, err := r.cg.PathOf(pid)
	if err != nil {
		return "", fmt.Errorf("caller %d: %v: %w", pid, err, observer.ErrBadRequest)
	}
	return logicalGroup(p), nil
}

// prepareParent makes cgroup parent ready to get a session below it. On v2
// its processes move into its procsLeaf (cgroup.Group.Evacuate): the kernel
// gives controllers, and so limits, memory.peak and pids.peak, only to the
// sub-groups of a group without processes of its own. The root group may
// hold processes and controllers at once, and v1 has no such rule.
func (r *Registry) prepareParent(parent string) error {
	if r.cg.Mode() != cgroup.Unified || parent == "/" {
		return nil
	}
	g, err := r.cg.Load(parent)
	if err != nil {
		return err
	}
	_, err = g.Evacuate(procsLeaf)
	return err
}

// home returns where a process that returns to cgroup p goes: p itself, or
// on v2 its procsLeaf (p has sessions below it, so its processes live in
// the leaf).
func (r *Registry) home(p string) (*cgroup.Group, error) {
	g, err := r.cg.Load(p)
	if err != nil || r.cg.Mode() != cgroup.Unified || p == "/" {
		return g, err
	}
	return g.Evacuate(procsLeaf)
}

// sessionHome returns where a process attaching to s goes: s's cgroup, or
// on v2 its procsLeaf once sessions were made below it.
func (r *Registry) sessionHome(s *session) *cgroup.Group {
	if r.cg.Mode() == cgroup.Unified {
		if leaf, err := r.cg.Load(path.Join(s.path, procsLeaf)); err == nil {
			return leaf
		}
	}
	return s.group
}

// logicalGroup maps the cgroup a process is in to the group it belongs to:
// a process in a procsLeaf belongs to the leaf's parent, where it ran
// before it was moved down.
func logicalGroup(p string) string {
	if path.Base(p) == procsLeaf {
		return path.Dir(p)
	}
	return p
}
