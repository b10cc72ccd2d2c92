// Package pgrelay is a notify.Relay over PostgreSQL's LISTEN/NOTIFY, for
// server replicas that share one PostgreSQL database: NOTIFY reaches every
// session LISTENing on the channel in the same database, so replicas of
// one installation hear each other and no other installation's.
//
// Publishing goes through one connection of its own, in the background:
// messages queue in memory, repeated ones are sent once, a batch costs one
// round trip, and Close sends what is still queued. Listening holds another connection; after it is lost the
// relay reconnects (backing off up to maxBackoff) and delivers notify.Gap,
// since notifications sent while no session listened are gone for good.
package pgrelay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kolejka-go/kolejka/internal/server/notify"
	"github.com/kolejka-go/kolejka/internal/server/store"
)

// Channel is the NOTIFY channel of the server's wake-ups.
const Channel = "kolejka"

const (
	queueLen   = 4096 // messages waiting to be sent; beyond, new ones are dropped
	maxBatch   = 256  // messages sent in one round trip
	maxBackoff = 2 * time.Second
	closeGrace = 2 * time.Second
	// maxPayload is below PostgreSQL's 8000-byte limit on a payload.
	maxPayload = 7900
)

// Relay is a notify.Relay on a PostgreSQL database.
type Relay struct {
	cfg *pgx.ConnConfig // with the store's liveness settings
	log *slog.Logger

	out       chan string
	closeOnce sync.Once
	closed    chan struct{}
	done      chan struct{}
}

var _ notify.Relay = (*Relay)(nil)

// New connects once to check url (so that a wrong address or password
// stops the server at start) and starts the publisher.
//
// Its connections have the store's liveness settings (store.Liveness): on
// a network cut silently, the listening connection fails in about 15 s
// (keepalives) rather than waiting for ever for a notification, and the
// relay reconnects once the network is back; PostgreSQL ends the session
// of a listener cut off likewise, so that notifications do not pile up
// for it.
func New(ctx context.Context, url string, log *slog.Logger) (*Relay, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, errors.New("unable to connect the replicas' relay: not a valid PostgreSQL URL")
	}
	store.Liveness(cfg)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("unable to connect the replicas' relay: %w", err)
	}
	r := &Relay{cfg: cfg, log: log, out: make(chan string, queueLen),
		closed: make(chan struct{}), done: make(chan struct{})}
	go r.publish(conn)
	return r, nil
}

// Publish queues msg for every replica. A full queue drops it: the long
// polls' periodic re-read covers a lost wake-up.
func (r *Relay) Publish(msg string) {
	if len(msg) > maxPayload {
		r.log.Warn("relay: message too long, dropped", "bytes", len(msg))
		return
	}
	select {
	case <-r.closed:
		return
	default:
	}
	select {
	case r.out <- msg:
	default:
		r.log.Warn("relay: queue full, message dropped")
	}
}

// Close sends what is queued (for at most closeGrace), then stops the
// publisher.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() { close(r.closed) })
	<-r.done
	return nil
}

// publish sends queued messages until Close, reconnecting after a failure.
func (r *Relay) publish(conn *pgx.Conn) {
	defer close(r.done)
	// After Close the publisher has closeGrace to send what is queued (an
	// admin command publishes and exits at once).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.closed:
			time.AfterFunc(closeGrace, cancel)
		case <-ctx.Done():
		}
	}()
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	backoff := 50 * time.Millisecond
	for {
		var first string
		select {
		case first = <-r.out:
		default:
			select {
			case <-r.closed:
				return // nothing left to send
			case first = <-r.out:
			}
		}
		batch := collect(first, r.out)
		for {
			if conn == nil {
				c, err := pgx.ConnectConfig(ctx, r.cfg)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					r.log.Warn("relay: unable to connect to publish", "error", err)
					if !sleep(ctx, backoff) {
						return
					}
					backoff = min(2*backoff, maxBackoff)
					continue
				}
				conn = c
			}
			err := send(ctx, conn, batch)
			if err == nil {
				backoff = 50 * time.Millisecond
				break
			}
			if ctx.Err() != nil {
				return
			}
			// The connection may be broken: the next try makes a new one.
			r.log.Warn("relay: unable to publish", "error", err)
			_ = conn.Close(context.Background())
			conn = nil
		}
	}
}

// collect takes first and whatever else is queued (up to maxBatch),
// without repeats.
func collect(first string, out <-chan string) []string {
	seen := map[string]bool{first: true}
	batch := []string{first}
	for len(batch) < maxBatch {
		select {
		case m := <-out:
			if !seen[m] {
				seen[m] = true
				batch = append(batch, m)
			}
		default:
			return batch
		}
	}
	return batch
}

// send notifies every message of batch in one round trip.
func send(ctx context.Context, conn *pgx.Conn, batch []string) error {
	b := &pgx.Batch{}
	for _, m := range batch {
		b.Queue("SELECT pg_notify($1, $2)", Channel, m)
	}
	return conn.SendBatch(ctx, b).Close()
}

// Listen delivers every message of every replica until ctx ends, and
// notify.Gap after each (re)connection.
func (r *Relay) Listen(ctx context.Context, deliver func(msg string)) error {
	backoff := 50 * time.Millisecond
	for {
		err := r.listenOnce(ctx, deliver, func() { backoff = 50 * time.Millisecond })
		if ctx.Err() != nil {
			return nil //nolint:nilerr // the end asked for: the connection's error is its consequence
		}
		r.log.Warn("relay: listening connection lost", "error", err)
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listenOnce listens on one connection until it fails or ctx ends.
func (r *Relay) listenOnce(ctx context.Context, deliver func(string), connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, r.cfg)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	connected()
	// Whatever was published while nobody here listened is lost.
	deliver(notify.Gap)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Payload == notify.Gap {
			continue // nobody publishes an empty message; not a gap
		}
		deliver(n.Payload)
	}
}

// sleep waits d, or less if ctx ends (then it returns false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
