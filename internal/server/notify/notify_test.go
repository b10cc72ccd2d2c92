package notify

import (
	"testing"
	"time"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(10 * time.Millisecond):
		return false
	}
}

func TestBroadcast(t *testing.T) {
	var b Broadcast
	c1 := b.C()
	if closed(c1) {
		t.Fatal("closed before Signal")
	}
	b.Signal()
	if !closed(c1) {
		t.Fatal("Signal did not wake")
	}
	c2 := b.C()
	if closed(c2) {
		t.Fatal("a channel taken after Signal is already closed")
	}
	b.Signal()
	b.Signal() // no waiter: no panic
	if !closed(c2) {
		t.Fatal("second Signal did not wake")
	}
}

func TestKeyed(t *testing.T) {
	var k Keyed
	a, cancelA := k.Subscribe("x")
	b, cancelB := k.Subscribe("x")
	other, cancelO := k.Subscribe("y")
	k.Signal("x")
	if !closed(a) || !closed(b) || closed(other) {
		t.Fatal("Signal woke the wrong waiters")
	}
	cancelA()
	cancelB()
	cancelB() // twice is harmless
	cancelO()
	if n := k.Len(); n != 0 {
		t.Errorf("%d keys left after every waiter left", n)
	}
	c, cancel := k.Subscribe("x")
	defer cancel()
	if closed(c) {
		t.Error("a new subscription is woken by an old signal")
	}
}
