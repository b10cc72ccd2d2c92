// Package clock is the time source of the server and the foreman: the
// system clock in production, a clock the test moves in tests. It serves
// what is compared with the time of day (lease and token expiry, the
// age of an upload or a cache entry, a retry's deadline to give up);
// waits (timers, tickers, long polls) keep the system's timers, among them
// Every, the periodic loop of the server's and the cgroup package's
// background work.
package clock

import (
	"sync"
	"time"
)

// Clock tells the time.
type Clock interface {
	Now() time.Time
}

// System is the system clock: time.Now.
var System Clock = system{}

type system struct{}

func (system) Now() time.Time { return time.Now() }

// Or returns c, or System when c is nil: the default of a Clock option.
func Or(c Clock) Clock {
	if c == nil {
		return System
	}
	return c
}

// Fake is a Clock that moves only when told to, safe for concurrent use.
type Fake struct {
	mu  sync.Mutex
	now time.Time
}

// NewFake returns a Fake showing start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now is the time the clock shows.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the clock forward by d.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

var _ Clock = (*Fake)(nil)

// Every calls fn every d, on the system's ticker, until stop is closed or
// fn returns false. The first call comes d after Every starts; a call that
// takes longer than d delays the next one (ticks do not queue up).
func Every(stop <-chan struct{}, d time.Duration, fn func() bool) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if !fn() {
				return
			}
		}
	}
}
