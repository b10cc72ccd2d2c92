package clock

import (
	"sync"
	"testing"
	"time"
)

func TestFake(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	if got := f.Now(); !got.Equal(start) {
		t.Fatalf("Now() = %v, want %v", got, start)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.Advance(time.Second)
			_ = f.Now()
		}()
	}
	wg.Wait()
	if got := f.Now(); !got.Equal(start.Add(10 * time.Second)) {
		t.Errorf("after ten seconds: %v", got)
	}
}

func TestOr(t *testing.T) {
	if Or(nil) != System {
		t.Error("Or(nil) is not the system clock")
	}
	f := NewFake(time.Time{})
	if Or(f) != Clock(f) {
		t.Error("Or(f) is not f")
	}
	before := time.Now()
	if now := System.Now(); now.Before(before) || now.Sub(before) > time.Minute {
		t.Errorf("System.Now() = %v, time.Now() was %v", now, before)
	}
}

func TestEvery(t *testing.T) {
	// fn returning false ends the loop, after as many calls as it allowed.
	calls := 0
	Every(make(chan struct{}), time.Millisecond, func() bool {
		calls++
		return calls < 3
	})
	if calls != 3 {
		t.Errorf("fn called %d times, want 3 (it returned false on the third)", calls)
	}

	// Closing stop ends the loop (Every returns although fn never says
	// stop).
	stop := make(chan struct{})
	n := 0
	Every(stop, time.Millisecond, func() bool {
		n++
		if n == 2 {
			close(stop)
		}
		return true
	})
	if n < 2 {
		t.Errorf("fn called %d times before stop, want 2", n)
	}
}
