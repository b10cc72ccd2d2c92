package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"syscall"
)

// evacuateRounds is how many rounds of moves Evacuate tries before it
// freezes the group: a process that forks while its siblings are moved
// leaves a child behind, which the next round moves.
const evacuateRounds = 8

// Evacuate moves every process of g itself (not those of its sub-groups)
// into g's sub-group leaf, made without limits if it is missing, and returns
// the leaf. Afterwards g holds processes only through its sub-groups.
//
// cgroup v2 allows no processes in a non-root group whose sub-groups have
// controllers ("no internal processes", see enableControllers): the kernel
// refuses to enable a controller in cgroup.subtree_control of a group that
// holds processes, and refuses to move a process into a group whose
// subtree_control is not empty. So a group that its own processes run in
// cannot get limited sub-groups until they have moved down into a leaf. On
// v2 the leaf is therefore made as a plain folder (creating it through Create
// would enable controllers in g, which the kernel refuses while g holds
// processes), the processes move, and only then are the controllers enabled
// down to the leaf, so that g and the leaf get their counters and later
// sub-groups of g their limits. The usage of g keeps counting everything:
// the leaf is below it.
//
// Processes may fork while their siblings are moved, leaving a child in g
// (a process forks into its own group), so the moves repeat until g's
// cgroup.procs is empty. If that takes more than a few rounds (a fork bomb),
// g is frozen, which also freezes the leaf below it, for a last round: a
// frozen process cannot fork. v1 allows internal processes and needs none of
// this, but Evacuate works there too, in every hierarchy.
func (g *Group) Evacuate(leaf string) (*Group, error) {
	if err := g.refuseRoot("evacuate"); err != nil {
		return nil, err
	}
	if leaf == "" || leaf == "." || leaf == ".." || filepath.Base(leaf) != leaf {
		return nil, fmt.Errorf("leaf name %q of cgroup %s: want one path element: %w", leaf, g.path, ErrInvalid)
	}
	p := path.Join(g.path, leaf)
	var l *Group
	var err error
	if g.v2 != nil {
		l, err = g.h.mkdirUnified(p)
	} else {
		l, err = g.h.Create(p, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("unable to evacuate cgroup %s: %w", g.path, err)
	}
	if err := g.moveAll(l); err != nil {
		return nil, fmt.Errorf("unable to evacuate cgroup %s: %w", g.path, err)
	}
	if g.v2 != nil {
		if err := g.h.enableControllers(p); err != nil {
			return nil, fmt.Errorf("unable to evacuate cgroup %s: %w", g.path, err)
		}
	}
	return l, nil
}

// moveAll moves g's own processes into dst until none is left.
func (g *Group) moveAll(dst *Group) error {
	frozen := false
	defer func() {
		if frozen {
			_ = g.freeze(false, freezeTimeout)
		}
	}()
	for round := 0; ; round++ {
		pids, err := g.Procs(false)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if round == evacuateRounds {
			if err := g.freeze(true, freezeTimeout); err != nil {
				return fmt.Errorf("processes %v keep appearing and the group does not freeze: %w", pids, err)
			}
			frozen = true
			continue // list again: what forked before the freeze completed
		}
		if round > evacuateRounds+2 {
			return fmt.Errorf("processes %v stay in the group", pids)
		}
		for _, pid := range pids {
			// ESRCH: it exited meanwhile, which empties g just as well.
			if err := dst.Add(pid); err != nil && !errors.Is(err, syscall.ESRCH) {
				return err
			}
		}
	}
}

// mkdirUnified makes the v2 group p as a bare folder, without enabling
// controllers in its parent (which the kernel refuses while the parent holds
// processes), and opens it. An existing folder is reused.
func (h *Hierarchy) mkdirUnified(p string) (*Group, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(h.mount, p), 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("unable to make cgroup %s: %w", p, err)
	}
	return h.loadUnified(p)
}
