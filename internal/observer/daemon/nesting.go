package daemon

import (
	"fmt"
	"path"

	"github.com/kolejka-go/kolejka/observer"
)

// checkNesting refuses a new session in cgroup parent when an enclosing
// session's cgroup_depth or cgroup_descendants limit forbids it. Depth
// counts sessions, not cgroups: a session's own sub-sessions are at depth
// 1, theirs at 2. Descendants are the open sessions below it at any depth.
// It also refuses one inside a session that is closing.
func (r *Registry) checkNesting(parent string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shut {
		return observer.ErrClosed
	}
	var enclosing []*session // nearest first
	for p := parent; ; p = path.Dir(p) {
		if s := r.byPath[p]; s != nil {
			enclosing = append(enclosing, s)
		}
		if p == "/" {
			break
		}
	}
	for i, s := range enclosing {
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
			count := 0
			for p := range r.byPath {
				if p != s.path && within(p, s.path) {
					count++
				}
			}
			if int64(count+1) > *n {
				return fmt.Errorf("session %s allows %d sessions below it (cgroup_descendants) and has %d: %w",
					s.id, *n, count, observer.ErrForbidden)
			}
		}
	}
	return nil
}
