package server

// This file owns named queues on the server's side (docs/queues.md): the
// check of a submission's queue, the plan of a node's dequeue, the
// per-queue figures of /queue/stats/ and /metrics, and the admin API of
// `kolejka-server queue`. The rules themselves are package queue's.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/queue"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/spec"
)

// mayQueue refuses a task of u for the queue named name that does not
// exist or that u may not submit to, naming the queue: the check of a
// workflow's steps at its put (a task inserted now has the store apply
// the same rules in its transaction).
func (s *Server) mayQueue(ctx context.Context, u *store.User, name string) error {
	q, err := s.db.QueueRule(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return refuse("%s: queue: no queue named %q", spec.TaskFile, name)
	}
	if err != nil {
		return err
	}
	if err := q.MaySubmit(u.Name); err != nil {
		return refuse("%s: queue: %v", spec.TaskFile, err)
	}
	return nil
}

// queueRecheck is how often a long poll waiting for a paused or missing
// queue looks at the queues table again.
const queueRecheck = time.Second

// plan is what a dequeue by node, asking for the queues wanted, scans
// (queue.PlanFor), read from the queues table now; held says some wanted
// queue is paused or missing (it may come back from another process).
func (s *Server) plan(ctx context.Context, wanted []string, node string) (p queue.Plan, held bool, err error) {
	rules, err := s.db.QueueRules(ctx)
	if err != nil {
		return nil, false, err
	}
	for _, name := range wanted {
		i := slices.IndexFunc(rules, func(q queue.Queue) bool { return q.Name == name })
		if i < 0 || rules[i].Paused {
			held = true
		}
	}
	return queue.PlanFor(wanted, rules, node), held, nil
}

// queueFigures are every queue's figures as /queue/stats/ shows them.
func (s *Server) queueFigures(ctx context.Context) (map[string]api.QueueFigures, error) {
	qs, err := s.db.Queues(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := make(map[string]api.QueueFigures, len(qs))
	for _, q := range qs {
		out[q.Name] = api.QueueFigures{
			Depth:            int(q.Depth),
			Running:          int(q.Running),
			OldestAgeSeconds: oldestAge(q, now).Seconds(),
			Paused:           q.Paused,
			Private:          q.Private,
			Priority:         q.Priority,
		}
	}
	return out, nil
}

// oldestAge is how long q's head task has waited (0 for an empty queue,
// and never negative: the admin's clock may be behind).
func oldestAge(q store.QueueInfo, now time.Time) time.Duration {
	if q.Oldest.IsZero() {
		return 0
	}
	return max(now.Sub(q.Oldest), 0)
}

// QueueInfo is a queue with its figures, as `kolejka-server queue ls`
// shows it.
type QueueInfo = store.QueueInfo

// Queue is a queue's definition (package queue).
type Queue = queue.Queue

// Errors of the queue admin API besides ErrInvalid, ErrExists and
// ErrNotFound: a queue that still holds tasks.
var ErrInUse = store.ErrInUse

// AddQueue adds a queue. A definition that breaks the rules (a name that
// is not one, lists on a public queue, an unknown user, a submitter who
// is not a client, a node that is not a processor) is ErrInvalid naming
// the field; a taken name ErrExists.
func (s *Server) AddQueue(ctx context.Context, q Queue) error {
	err := s.db.AddQueue(ctx, q, s.now())
	var fe *queue.FieldError
	if errors.As(err, &fe) {
		return fmt.Errorf("unable to add queue: %w: %w", ErrInvalid, fe)
	}
	return err
}

// Queues lists the queues with their figures, by name.
func (s *Server) Queues(ctx context.Context) ([]QueueInfo, error) {
	return s.db.Queues(ctx)
}

// OldestAge is how long q's head task has waited, as of now.
func (s *Server) OldestAge(q QueueInfo) time.Duration { return oldestAge(q, s.now()) }

// SetQueuePaused pauses (the queue keeps its tasks and hands none out) or
// resumes a queue; ErrNotFound for an unknown one. A server in another
// process sees it at its next dequeue; a node long-polling this one is
// woken at once.
func (s *Server) SetQueuePaused(ctx context.Context, name string, paused bool) error {
	if err := s.db.SetPaused(ctx, name, paused); err != nil {
		return err
	}
	if !paused {
		s.signalQueue()
	}
	return nil
}

// RemoveQueue removes a queue that holds no queued or running tasks
// (ErrInUse says how many it holds); the default queue cannot be removed
// (ErrInvalid); an unknown one is ErrNotFound.
func (s *Server) RemoveQueue(ctx context.Context, name string) error {
	err := s.db.RemoveQueue(ctx, name)
	if errors.Is(err, store.ErrDefaultQueue) {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}
