package daemon

import (
	"time"
)

// The time limit is wall-clock time. It counts from the later of two
// moments: the limits call that set it, and the session's start (the first
// process entering it: its attach, or Adopt). So a runner that opens a
// session, limits it and only then starts its child gives the child the
// whole time, and a limit set on a running session counts from the call.
// A new limits call with a time restarts the count. Each session has its
// own timer (time.AfterFunc, not a polling loop): at the deadline the
// session's cgroup is killed, the sessions below it included; the session
// stays open, empty, until it is closed, and no process may attach to it
// any more. Lateness is the timer's (well under a millisecond) plus the
// kill's: v2's cgroup.kill, or v1's freeze-signal-thaw rounds (see
// cgroup.Group.Kill); BenchmarkTimeLimit measures it.

// armLocked (Registry.mu held) sets the session's timer from its limits,
// replacing the one before. Without a time limit, or before a process has
// entered the session, nothing is armed.
func (r *Registry) armLocked(s *session) {
	s.disarmLocked()
	if s.limits.Time == nil || s.started.IsZero() || s.closing || r.shut {
		return
	}
	from := s.limitsAt
	if s.started.After(from) {
		from = s.started
	}
	s.deadline = from.Add(*s.limits.Time)
	s.expired = false
	s.timer = time.AfterFunc(max(s.deadline.Sub(r.now()), 0), func() { r.expire(s) })
}

// disarmLocked stops the session's timer (Registry.mu held). A callback
// already running finishes; expire checks the session is still live.
func (s *session) disarmLocked() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.deadline = time.Time{}
}

// expire is the timer's callback: kill the session, it ran out of time.
func (r *Registry) expire(s *session) {
	r.mu.Lock()
	if r.shut || s.closing || r.live[s.id] != s || s.deadline.IsZero() {
		r.mu.Unlock()
		return
	}
	r.timers.Add(1)
	defer r.timers.Done()
	s.expired = true
	deadline := s.deadline
	r.mu.Unlock()
	fired := r.now().Sub(deadline)
	err := s.group.Kill()
	late := r.now().Sub(deadline)
	if err != nil {
		r.log.Warn("killing a session at its time limit failed", "session", s.id, "error", err)
	} else {
		r.log.Info("session killed at its time limit", "session", s.id, "late", late, "timer_late", fired)
	}
	r.persist(s)
}
