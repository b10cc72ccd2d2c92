package foreman

// This file owns retrying: how long to wait between attempts at a request
// the server could not answer, and which failures are worth another try.

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/client"
)

// Retry shapes retries of requests the server could not answer (it is
// restarting, the network is down): delays start at Initial and double up
// to Max, with ±20% jitter so that the nodes of a grid do not come back in
// lockstep; requests about one task give up after GiveUp.
type Retry struct {
	Initial time.Duration // default 250 ms
	Max     time.Duration // default 15 s
	GiveUp  time.Duration // default 10 min
}

// Defaults of Retry.
const (
	DefaultRetryInitial = 250 * time.Millisecond
	DefaultRetryMax     = 15 * time.Second
	DefaultRetryGiveUp  = 10 * time.Minute
)

func (r Retry) withDefaults() Retry {
	if r.Initial <= 0 {
		r.Initial = DefaultRetryInitial
	}
	if r.Max <= 0 {
		r.Max = DefaultRetryMax
	}
	if r.Max < r.Initial {
		r.Max = r.Initial
	}
	if r.GiveUp <= 0 {
		r.GiveUp = DefaultRetryGiveUp
	}
	return r
}

// backoff is one sequence of delays.
type backoff struct {
	r    Retry
	next time.Duration
}

func (r Retry) backoff() *backoff { return &backoff{r: r.withDefaults()} }

// delay returns the next delay and doubles the one after.
func (b *backoff) delay() time.Duration {
	if b.next == 0 {
		b.next = b.r.Initial
	}
	d := b.next
	b.next = min(2*b.next, b.r.Max)
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * jitter)
}

// reset starts the sequence again (after a success).
func (b *backoff) reset() { b.next = 0 }

// sleep waits d or until ctx ends (then it returns ctx's cause).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// transient reports whether a failed request may succeed if tried again
// unchanged: the server could not be reached, the connection broke, or it
// answered with something other than its API (a proxy's 502 while it
// restarts), or it cannot take the request now (507: its disk is full;
// 503: its blob store, an S3 bucket, is down, and nothing was stored, so a
// result's upload and post are tried again until it is back or GiveUp).
// Refusals (FAIL, 403, 404) are final.
func transient(err error) bool {
	return errors.Is(err, client.ErrConnect) || errors.Is(err, client.ErrProtocol) || errors.Is(err, client.ErrUnavailable)
}

// alreadyResolved reports whether the server refused a result because the
// task has another one: Kolejka's protocol has no error codes, so the
// message is the contract (server/README.md, "Late results").
func alreadyResolved(err error) bool {
	var se *client.ServerError
	return errors.As(err, &se) && strings.Contains(se.Message, "already has a result")
}
