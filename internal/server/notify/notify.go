// Package notify wakes long-polling requests in the same process: a
// dequeue waiting for work, a client waiting for its result. It replaces a
// database poll loop: whoever changes the database (a task submitted or
// returned to the queue, a result stored) signals after commit, and every
// waiter re-reads the database once.
//
// The pattern that never loses a wake-up: take the channel (Broadcast.C or
// Keyed.Subscribe) first, then read the database, then wait on the channel.
// A signal between the read and the wait has already closed the channel.
package notify

import "sync"

// Broadcast wakes every waiter at once, for one topic (the queue).
type Broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// C returns a channel closed at the next Signal.
func (b *Broadcast) C() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// Signal wakes everyone waiting on a channel from C.
func (b *Broadcast) Signal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// Keyed wakes waiters of one key (a task's result).
type Keyed struct {
	mu      sync.Mutex
	waiters map[string]*entry
}

type entry struct {
	ch   chan struct{}
	refs int
}

// Subscribe returns a channel closed at the next Signal(key), and a cancel
// function the caller must call when it stops waiting (so keys nobody
// signals do not accumulate).
func (k *Keyed) Subscribe(key string) (<-chan struct{}, func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.waiters == nil {
		k.waiters = make(map[string]*entry)
	}
	e := k.waiters[key]
	if e == nil {
		e = &entry{ch: make(chan struct{})}
		k.waiters[key] = e
	}
	e.refs++
	var once sync.Once
	return e.ch, func() {
		once.Do(func() {
			k.mu.Lock()
			defer k.mu.Unlock()
			e.refs--
			if e.refs == 0 && k.waiters[key] == e {
				delete(k.waiters, key)
			}
		})
	}
}

// Signal wakes every waiter of key.
func (k *Keyed) Signal(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.waiters[key]; e != nil {
		close(e.ch)
		delete(k.waiters, key)
	}
}

// Len is the number of keys someone waits for (for tests and metrics).
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.waiters)
}
