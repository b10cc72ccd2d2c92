package daemon

import (
	"fmt"
	"time"

	"github.com/kolejka-go/kolejka/internal/measure"
	"github.com/kolejka-go/kolejka/spec"
)

// A session's stats: measured from its cgroup while it is open, the final
// ones kept after its close (closed.go).

// Stats measures the session now, or returns its final stats if it closed
// less than KeepClosed ago. It needs the session's secret, as every command
// does (Kolejka's observer answers any session's stats without it).
func (r *Registry) Stats(caller int, id, secret string) (spec.Stats, error) {
	verb := "read the stats of session " + id
	s, c, err := r.lookup(caller, id, secret, verb)
	if err != nil {
		return spec.Stats{}, err
	}
	if c != nil {
		return c.stats, nil
	}
	st, err := r.measure(s, r.now())
	if err != nil {
		if c := r.closedStats(id); c != nil {
			return c.stats, nil // it closed meanwhile
		}
		return spec.Stats{}, fmt.Errorf("unable to %s: %w", verb, err)
	}
	return st, nil
}

// closedStats returns the closed session id, for a command that raced
// with its close.
func (r *Registry) closedStats(id string) *closedSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed.kept(id)
}

// measure reads the session's usage as Kolejka's stats, with its wall time
// from its start (first process in, or creation) until at.
func (r *Registry) measure(s *session, at time.Time) (spec.Stats, error) {
	u, err := s.group.Usage()
	if err != nil {
		return spec.Stats{}, err
	}
	r.mu.Lock()
	cores := s.cores
	start := s.started
	if start.IsZero() {
		start = s.created
	}
	r.mu.Unlock()
	if cores == nil {
		cores, _ = s.group.EffectiveCPUs() // nil where there is no cpuset: every core counted
	}
	st := measure.StatsOf(u, cores)
	st.Time = measure.Duration(max(at.Sub(start), 0))
	return st, nil
}
