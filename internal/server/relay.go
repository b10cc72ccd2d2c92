package server

// This file owns the messages between replicas: every change that wakes
// this process's long polls (signalQueue, signalResult) or ends a cached
// credential (forgetCredentials) is published through the configured
// notify.Relay too, and what any replica publishes does the same here
// (relayLoop). With a relay, long polls also
// re-read the database every relayRecheck, so a wake-up the relay lost
// delays a waiter by that much at most.

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/internal/server/notify"
)

// Messages between replicas.
const (
	msgQueue  = "q"  // a task became available
	msgResult = "r:" // + task key: the task got its result, or ended
	msgRoom   = "n:" // + a node's user id: the node posted a result
	// msgAuth + a credential's cache key: it ended (a sign-out); msgAuth
	// alone: every cached credential may have (a user removed, a password
	// changed).
	msgAuth = "a:"
)

// defaultRelayRecheck is how often a long poll re-reads when a relay is
// in use (Config.RelayRecheck).
const defaultRelayRecheck = 2 * time.Second

// signalQueue wakes the dequeues waiting in every replica.
func (s *Server) signalQueue() {
	s.queue.Signal()
	if s.cfg.Relay != nil {
		s.cfg.Relay.Publish(msgQueue)
	}
}

// signalResult wakes whoever waits for key's result in every replica.
func (s *Server) signalResult(key string) {
	s.results.Signal(key)
	if s.cfg.Relay != nil {
		s.cfg.Relay.Publish(msgResult + key)
	}
}

// signalRoom ends the held dequeue of node, in every replica: it posted a
// result, so the task's room is free again (or soon, once its container is
// torn down) and the node asks anew with it. Without this a node whose
// free room fits no queued task waits out its whole poll while its tasks
// end.
func (s *Server) signalRoom(node int64) {
	key := strconv.FormatInt(node, 10)
	s.nodeRoom.Signal(key)
	if s.cfg.Relay != nil {
		s.cfg.Relay.Publish(msgRoom + key)
	}
}

// forgetCredentials drops credential key ("" for all) from the cache of
// who a credential is, here and in every replica, so that a sign-out or a
// removed user holds at once everywhere.
func (s *Server) forgetCredentials(key string) {
	if key == "" {
		s.auth.clear()
	} else {
		s.auth.drop(key)
	}
	if s.cfg.Relay != nil {
		s.cfg.Relay.Publish(msgAuth + key)
	}
}

// relayed is what another replica (or this one) published.
func (s *Server) relayed(msg string) {
	switch {
	case msg == notify.Gap:
		// Not nodeRoom: a lost room message costs its node one busy
		// poll, while ending every held poll would send every node back
		// at once with the room it had.
		s.queue.Signal()
		s.results.SignalAll()
		s.auth.clear()
	case msg == msgQueue:
		s.queue.Signal()
	case strings.HasPrefix(msg, msgResult):
		s.results.Signal(strings.TrimPrefix(msg, msgResult))
	case strings.HasPrefix(msg, msgRoom):
		s.nodeRoom.Signal(strings.TrimPrefix(msg, msgRoom))
	case msg == msgAuth:
		s.auth.clear()
	case strings.HasPrefix(msg, msgAuth):
		s.auth.drop(strings.TrimPrefix(msg, msgAuth))
	}
}

// relayLoop listens to the other replicas until the server stops.
func (s *Server) relayLoop() {
	if s.cfg.Relay == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := s.cfg.Relay.Listen(ctx, s.relayed); err != nil {
		s.log.Error("the replicas' relay stopped", "error", err)
	}
}

// recheck is when a long poll waiting until deadline re-reads the
// database at the latest: at once after a relay's message, and every
// RelayRecheck with a relay, as the relay may lose one.
func (s *Server) recheck(deadline time.Time) time.Time {
	if s.cfg.Relay == nil {
		return deadline
	}
	if soon := time.Now().Add(s.cfg.RelayRecheck); soon.Before(deadline) {
		return soon
	}
	return deadline
}
