package daemon

import (
	"fmt"
	"path"

	"github.com/kolejka-go/kolejka/observer"
)

// The nesting policy: a session's cgroup_depth and cgroup_descendants
// limits bound the sessions that may be opened below it. The kernel knows
// nothing of them; the registry checks them before it makes a session.

// checkNesting refuses a new session in cgroup parent when the registry
// is shut down, or when nestingAllows refuses it.
func (r *Registry) checkNesting(parent string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shut {
		return observer.ErrClosed
	}
	return nestingAllows(r.byPath, parent)
}

// nestingAllows refuses a new session in cgroup parent, given the open
// sessions by cgroup path, when an enclosing session's cgroup_depth or
// cgroup_descendants limit forbids it. Depth counts sessions, not cgroups:
// a session's own sub-sessions are at depth 1, theirs at 2. Descendants are
// the open sessions below it at any depth. It also refuses one inside a
// session that is closing, or whose time limit has passed.
func nestingAllows(byPath map[string]*session, parent string) error {
	for i, s := range enclosing(byPath, parent) {
		if s.closing {
			return fmt.Errorf("session %s is closing: %w", s.id, observer.ErrNotFound)
		}
		if s.expired {
			return fmt.Errorf("the time limit of session %s has passed: %w", s.id, observer.ErrNotFound)
		}
		if d := s.limits.CgroupDepth; d != nil && int64(i+1) > *d {
			return fmt.Errorf("session %s allows sessions only %d deep below it (cgroup_depth), this one would be %d deep: %w",
				s.id, *d, i+1, observer.ErrForbidden)
		}
		if n := s.limits.CgroupDescendants; n != nil {
			count := descendants(byPath, s.path)
			if int64(count+1) > *n {
				return fmt.Errorf("session %s allows %d sessions below it (cgroup_descendants) and has %d: %w",
					s.id, *n, count, observer.ErrForbidden)
			}
		}
	}
	return nil
}

// enclosing returns the sessions whose cgroup is p or lies above it,
// nearest first.
func enclosing(byPath map[string]*session, p string) []*session {
	var out []*session
	for ; ; p = path.Dir(p) {
		if s := byPath[p]; s != nil {
			out = append(out, s)
		}
		if p == "/" {
			return out
		}
	}
}

// descendants counts the sessions below cgroup p, at any depth.
func descendants(byPath map[string]*session, p string) int {
	n := 0
	for q := range byPath {
		if q != p && within(q, p) {
			n++
		}
	}
	return n
}
