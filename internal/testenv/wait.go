package testenv

import (
	"testing"
	"time"
)

// WaitFor polls cond until it holds and fails t, naming what, if it does
// not within limit. It is for a state something reaches in the background
// with nothing to announce it; a test acts on an announcement (a hook, a
// channel, a helper's line) where there is one.
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond) // the poll's period
	}
}
