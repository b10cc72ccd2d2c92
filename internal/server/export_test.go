package server

import (
	"context"
	"time"
)

// SetPauseHook makes f called each time a long poll of a server opened
// with c starts waiting for an event (a task, a result, its deadline), so
// that a test acts on a poll that waits rather than one still looking.
func SetPauseHook(c *Config, f func()) { c.pausing = f }

// SetCollectHook makes f called after each periodic garbage-collection
// pass of a server opened with c.
func SetCollectHook(c *Config, f func()) { c.collected = f }

// OweRun marks run as one an advance failed on, as a failing advance does:
// the next expiry pass advances it.
func OweRun(s *Server, run string) { s.owed.add(run) }

// DispatchTriggers runs one pass of the trigger loop now: due schedules
// fire and pending ends fire their triggers, before it returns.
func DispatchTriggers(s *Server) {
	ctx := context.Background()
	_ = s.fireDue(ctx)
	_ = s.dispatchEvents(ctx)
}

// SetFireHook makes f called by each firing of a trigger at "recorded"
// (inside its transaction) and "committed" (after it).
func SetFireHook(c *Config, f func(phase string)) { c.firing = f }

// SetUIPoll sets how often the web UI's live streams read the store.
func SetUIPoll(c *Config, d time.Duration) { c.uiPoll = d }

// SetUIStreams caps the web UI's open live streams.
func SetUIStreams(c *Config, n int) { c.uiStreams = n }
