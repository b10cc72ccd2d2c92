package daemon

import (
	"fmt"
	"path"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// Core picking: a session's cpus limit pins it to whole cores, the
// cpus_offset-th and the next ones of those its parent group may use.

// pickCores chooses the cores of a session made in cgroup scope with
// limits l, from those scope may use.
func (r *Registry) pickCores(scope string, l spec.Limits) ([]int, error) {
	g, err := r.cg.Load(scope)
	if err != nil {
		return nil, err
	}
	avail, err := g.EffectiveCPUs()
	if err != nil {
		return nil, err
	}
	var off int64
	if l.CPUsOffset != nil {
		off = *l.CPUsOffset
	}
	return pickCores(avail, *l.CPUs, off)
}

// pickCores pins n cores, the offset-th and the next ones of avail. A
// request that does not fit is refused, never silently shrunk or wrapped
// around (Kolejka resets the offset to 0).
func pickCores(avail []int, n, offset int64) ([]int, error) {
	if offset < 0 || n < 1 || offset+n > int64(len(avail)) {
		return nil, fmt.Errorf("cpus %d from offset %d: the session's parent has only the %d cores %s: %w",
			n, offset, len(avail), cgroup.FormatCPUList(avail), observer.ErrUnsupported)
	}
	return append([]int(nil), avail[offset:offset+n]...), nil
}

// pickCoresBelow chooses the cores of a session to be made in cgroup scope,
// from those of scope or, while it does not exist yet (an adopted group's
// parents), of its nearest ancestor that does.
func (r *Registry) pickCoresBelow(scope string, l spec.Limits) ([]int, error) {
	for scope != "/" {
		if _, err := r.cg.Load(scope); err == nil {
			break
		}
		scope = path.Dir(scope)
	}
	return r.pickCores(scope, l)
}
