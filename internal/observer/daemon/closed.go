package daemon

import (
	"time"

	"github.com/kolejka-go/kolejka/spec"
)

// closedSession is what is kept of a session after its close: who may read
// its final stats, and the stats.
type closedSession struct {
	ident
	stats    spec.Stats
	closedAt time.Time
}

// closedSessions keeps the closed sessions, so that their final stats stay
// readable for keep after the close (a judge reads them once it has reaped
// its child), at most max of them: past max the oldest go first. It has no
// lock of its own: Registry.mu guards it. Its owner removes the records of
// the ones it drops (add and expire return their ids).
type closedSessions struct {
	keep time.Duration
	max  int
	byID map[string]*closedSession
}

func newClosedSessions(keep time.Duration, max int) closedSessions {
	return closedSessions{keep: keep, max: max, byID: map[string]*closedSession{}}
}

// get returns the closed session id, or nil if there is none or it closed
// more than keep before now (the reaper then drops it).
func (cs *closedSessions) get(id string, now time.Time) *closedSession {
	c := cs.byID[id]
	if c == nil || cs.outdated(c.closedAt, now) {
		return nil
	}
	return c
}

// kept returns the closed session id whether or not it is outdated: for
// a command that found it open and lost the race with its close.
func (cs *closedSessions) kept(id string) *closedSession { return cs.byID[id] }

// outdated reports whether a session closed at at is no longer kept at now.
func (cs *closedSessions) outdated(at, now time.Time) bool { return now.Sub(at) > cs.keep }

// add keeps c, and drops the oldest past max; it returns their ids.
func (cs *closedSessions) add(c *closedSession) (dropped []string) {
	cs.byID[c.id] = c
	for len(cs.byID) > cs.max {
		var oldest *closedSession
		for _, o := range cs.byID {
			if oldest == nil || o.closedAt.Before(oldest.closedAt) {
				oldest = o
			}
		}
		delete(cs.byID, oldest.id)
		dropped = append(dropped, oldest.id)
	}
	return dropped
}

// expire drops the sessions outdated at now and returns their ids.
func (cs *closedSessions) expire(now time.Time) (dropped []string) {
	for id, c := range cs.byID {
		if cs.outdated(c.closedAt, now) {
			delete(cs.byID, id)
			dropped = append(dropped, id)
		}
	}
	return dropped
}
