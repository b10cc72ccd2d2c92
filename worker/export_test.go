package worker

import (
	"testing"
	"time"
)

// DelayTimeLimit makes the time limit's timer fire d late for the rest of
// the test, as timers do on a loaded machine.
func DelayTimeLimit(t testing.TB, d time.Duration) {
	t.Cleanup(func() { afterFunc = time.AfterFunc })
	afterFunc = func(limit time.Duration, f func()) *time.Timer { return time.AfterFunc(limit+d, f) }
}
