package server

// This file owns leases: how long a node keeps the tasks a dequeue gave it,
// and the loop that takes them back when it stops answering.

import (
	"context"
	"time"

	"github.com/kolejka-go/kolejka/internal/clock"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/spec"
)

// lease is how long a node holds the tasks one dequeue gave it. A node that
// heartbeats holds them for LeaseTime after each heartbeat. A node that
// never heartbeats (Kolejka's Python foreman) gets enough to run them all
// one after another, twice over, plus a margin for pulling images and
// uploading results: LeaseMargin + 2 × Σ time limits (DefaultTaskTime for a
// task without one), and never less than LeaseTime.
func (s *Server) lease(taken []spec.Limits, heartbeat bool) time.Duration {
	if heartbeat {
		return s.cfg.LeaseTime
	}
	var total time.Duration
	for _, l := range taken {
		if l.Time != nil && *l.Time > 0 {
			total += *l.Time
		} else {
			total += s.cfg.DefaultTaskTime
		}
	}
	return max(s.cfg.LeaseTime, s.cfg.LeaseMargin+2*total)
}

func (s *Server) expiryPolicy() store.Expiry {
	return store.Expiry{MaxAttempts: s.cfg.MaxAttempts, QueueTimeout: s.cfg.QueueTimeout, QueueHead: s.cfg.ScanWindow}
}

// expired wakes whoever waits for what an expiry pass changed.
func (s *Server) expired(r store.ExpiryResult) {
	if len(r.Requeued) > 0 {
		s.metrics.requeued.Add(float64(len(r.Requeued)))
		s.log.Warn("leases lapsed: tasks back in the queue", "tasks", r.Requeued)
		s.signalQueue()
	}
	if len(r.Failed) > 0 {
		s.metrics.failed.Add(float64(len(r.Failed)))
		s.log.Warn("tasks given an SE result by the server (lease lost too often or queue timeout)", "tasks", r.Failed)
		for _, k := range r.Failed {
			s.signalResult(k)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		for _, k := range r.Failed {
			s.advanceRunOf(ctx, k) // a step's server-made SE result ends it
		}
		cancel()
		s.signalQueue() // the scan window may have room now
	}
	if r.Callback {
		s.wakeCallbacks()
	}
}

// expiryLoop reclaims lapsed leases every ExpiryInterval (dequeues do it
// too, so a waiting node gets a dead node's task at once).
func (s *Server) expiryLoop() {
	clock.Every(s.stop, s.cfg.ExpiryInterval, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		r, err := s.db.ExpireLeases(ctx, s.now(), s.expiryPolicy())
		cancel()
		if err != nil {
			s.log.Error("lease expiry", "error", err)
			return true
		}
		s.expired(r)
		// The safety net: a run an advance failed on moves now (a crash
		// between a result and its advance is the startup's, Open).
		ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
		s.advanceOwed(ctx)
		cancel()
		return true
	})
}
