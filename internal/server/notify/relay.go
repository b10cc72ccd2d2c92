package notify

import "context"

// A Relay carries wake-ups between server replicas that share one
// database: a task submitted through one replica must wake a dequeue long
// poll waiting in another, a result stored through one must wake the
// client waiting in another.
//
// The lifecycle: the server starts Listen once, in the background, with a
// deliver function that signals its own Broadcast and Keyed; after every
// commit that would signal them it also Publishes the same wake-up. A
// replica receives its own messages too, which costs one extra re-read.
//
// Delivery is best-effort, never the only way a waiter learns of a
// change: a relay that lost its connection delivers Gap once it has it
// back (whatever was published meanwhile is gone), and the server's long
// polls re-read the database at a bounded interval whenever a relay is in
// use.
type Relay interface {
	// Publish sends msg to every replica's Listen. It does not wait for
	// the network: a relay queues what it cannot send at once.
	Publish(msg string)
	// Listen calls deliver for every message published by any replica,
	// and with Gap after each (re)connection, until ctx ends.
	Listen(ctx context.Context, deliver func(msg string)) error
	// Close sends what is still queued, briefly, and stops publishing.
	Close() error
}

// Gap is delivered when messages may have been lost: every waiter must
// re-read.
const Gap = ""

// SignalAll wakes every waiter of every key (after a Relay's Gap).
func (k *Keyed) SignalAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, e := range k.waiters {
		close(e.ch)
		delete(k.waiters, key)
	}
}
