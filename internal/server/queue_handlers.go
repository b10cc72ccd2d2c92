package server

// This file owns /queue/: dequeue, heartbeat and release (extensions) and
// stats. Their messages are package api's.
//
// POST /queue/dequeue/ (processors), body as Kolejka's foreman sends it:
//
//	{"concurency": N, "limits": {what the node has free}, "tags": [...]}
//
// plus our optional keys: "wait": seconds to wait for work when there is
// none (long poll, capped at MaxWait), "room_wake": true (extension
// "room_wake": a result the node posts meanwhile ends the wait, so that
// the node asks again with that task's room), "defaults": {limits for
// tasks that omit one the node declares}, "heartbeat": true (the node will heartbeat:
// its tasks get the short lease), "queues": [names] (extension "queues":
// the queues the node takes from, higher priority first; none: the default
// queue), "capacity": {what the node offers in all} (extension "nodes",
// shown on /node/). Answer: {"tasks": [...], "status": "OK"}, each task as
// stored but with the limits it runs with on this node; a drained node
// (nodes.go) gets {"tasks": []} at once. Every dequeue and heartbeat is
// noted as the node's contact (nodes.go).
//
// POST /queue/heartbeat/ (processors), body {"tasks": [keys]}; an empty
// body, {} or an empty list means all the node's tasks. Answer: {"tasks": [keys still held, leases extended],
// "lost": [keys asked for but no longer the node's], "lease": "60.0s"}.
// A node should stop working on a lost task: its result will be refused
// unless no other result came first.
//
// POST /queue/release/ (processors; extension "release"), body {"tasks":
// [keys]}; an empty body, {} or an empty list means all the node's tasks.
// The node hands back tasks it will not finish (it is being stopped): they
// return to the queue at once, keeping their place, and the hand-out is
// undone (attempts - 1, and its record goes: the node can no longer post a
// late result for them, unless it held them in an earlier attempt too).
// Answer: {"released": [keys back in the queue], "lost": [keys asked for
// but not the node's]}. A node that dies instead is handled by its leases,
// which count the attempt.
//
// GET /queue/stats/ (signed in): Kolejka's counts, and beside them
// "queues": {name: {depth, running, oldest_age_seconds, paused, private,
// priority}} (extension "queues").

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/queue"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/spec"
)

func (s *Server) handleDequeue(w http.ResponseWriter, r *http.Request) {
	u, body := s.postBody(w, r, store.RoleProcessor, "only processors dequeue", s.cfg.MaxJSONBody)
	if u == nil {
		return
	}
	req, err := api.ParseDequeue(body)
	if err != nil {
		fail(w, "%v", err)
		return
	}
	if err := unrunnableLimits(req.Defaults, "defaults"); err != nil {
		fail(w, "dequeue: %v", err)
		return
	}
	wanted, err := queue.Wanted(req.Queues)
	if err != nil {
		fail(w, "dequeue: %v", err)
		return
	}
	wait := min(time.Duration(req.Wait), s.cfg.MaxWait)
	deadline := time.Now().Add(wait)
	dq := store.DequeueRequest{
		Node: u.ID,
		Tags: req.Tags,
		Free: req.Limits,
		// The node knows its own shape: its defaults win, the server's
		// fill the rest (they always hold cpus, memory and time).
		Defaults:   req.Defaults.Or(s.cfg.Defaults),
		Concurency: req.Concurrency,
		Heartbeat:  req.Heartbeat,
		Window:     s.cfg.ScanWindow,
		Started:    s.now(),
		Lease:      s.lease,
		Expiry:     s.expiryPolicy(),
	}
	defer s.noteDequeue(r.Context(), u.ID, req)()
	// With "room_wake", a result this node posts while the poll waits
	// ends the poll (one more try, then the answer, empty or not): the
	// node has more room than it asked with and asks again with it
	// (signalRoom).
	var roomed <-chan struct{}
	if req.RoomWake {
		var unsubscribe func()
		roomed, unsubscribe = s.nodeRoom.Subscribe(strconv.FormatInt(u.ID, 10))
		defer unsubscribe()
	}
	for {
		// Take the channel first: a task submitted during the dequeue
		// transaction wakes us.
		woken := s.queue.C()
		// A drained node gets nothing, at once (nodes.go).
		drained, err := s.nodeDrained(r.Context(), u.ID)
		if err != nil {
			if r.Context().Err() == nil {
				s.internal(w, r, err)
			}
			return
		}
		if drained {
			emptyDequeue(w)
			return
		}
		dq.Now = s.now()
		start := time.Now()
		// The queues are read at every try: a pause or resume made by an
		// admin command holds from the next one.
		var held bool
		if dq.Queues, held, err = s.plan(r.Context(), wanted, u.Name); err != nil {
			if r.Context().Err() != nil {
				return
			}
			s.internal(w, r, err)
			return
		}
		res, err := s.db.Dequeue(r.Context(), dq)
		s.metrics.dequeue.Observe(time.Since(start).Seconds())
		if err != nil {
			if r.Context().Err() != nil {
				return
			}
			s.internal(w, r, err)
			return
		}
		s.expired(res.Expired)
		left := time.Until(deadline)
		if len(res.Tasks) > 0 || left <= 0 {
			tasks := make([]json.RawMessage, 0, len(res.Tasks))
			for _, a := range res.Tasks {
				desc, err := withLimits(a.Description, a.Limits)
				if err != nil {
					s.internal(w, r, err)
					return
				}
				tasks = append(tasks, desc)
			}
			ok(w, &api.DequeueAnswer{Tasks: tasks, PassEnv: s.passEnv(res.Tasks)})
			return
		}
		// A queue the node waits for that is paused or missing may come
		// back through an admin command in another process, which cannot
		// wake this poll: look again every queueRecheck.
		wake := s.recheck(deadline)
		if soon := time.Now().Add(queueRecheck); held && soon.Before(wake) {
			wake = soon
		}
		if !s.awaitWork(r, woken, roomed, wake, u.ID) {
			return
		}
		select {
		case <-s.stopped():
			deadline = time.Now()
		case <-roomed:
			deadline = time.Now()
		default:
		}
	}
}

// pause is one wait of a long poll: until woken, wake or the server's
// stop (which ends the poll: stop is true). live is false when the request
// ended meanwhile (the client is gone: nothing to answer).
func (s *Server) pause(r *http.Request, woken <-chan struct{}, wake time.Time) (stop, live bool) {
	timer := time.NewTimer(time.Until(wake))
	defer timer.Stop()
	if s.cfg.pausing != nil {
		s.cfg.pausing()
	}
	select {
	case <-woken:
	case <-timer.C:
	case <-s.stopped():
		return true, true
	case <-r.Context().Done():
		return false, false
	}
	return false, true
}

// awaitWork is one wait of a dequeue's long poll, like pause, that also
// ends when the node posts a result (roomed) or is drained by an admin
// command in another process (which cannot wake it: it rereads the flag
// every queueRecheck). It returns false when the request ended meanwhile.
func (s *Server) awaitWork(r *http.Request, woken, roomed <-chan struct{}, wake time.Time, node int64) bool {
	if s.cfg.pausing != nil {
		s.cfg.pausing()
	}
	for {
		until := wake
		if soon := time.Now().Add(queueRecheck); soon.Before(until) {
			until = soon
		}
		timer := time.NewTimer(time.Until(until))
		select {
		case <-woken:
			timer.Stop()
			return true
		case <-roomed:
			timer.Stop()
			return true
		case <-s.stopped():
			timer.Stop()
			return true
		case <-r.Context().Done():
			timer.Stop()
			return false
		case <-timer.C:
		}
		if !time.Now().Before(wake) {
			return true
		}
		if drained, err := s.nodeDrained(r.Context(), node); err != nil || drained {
			// The dequeue's next try answers (or fails) for it.
			return true
		}
	}
}

// withLimits is a stored task with the limits it runs with on its node.
func withLimits(desc []byte, l spec.Limits) (json.RawMessage, error) {
	t, err := spec.ParseTask(desc, "stored task")
	if err != nil {
		return nil, fmt.Errorf("unable to read stored task: %w", err)
	}
	t.Limits = l
	out, err := t.Encode()
	if err != nil {
		return nil, fmt.Errorf("unable to encode task: %w", err)
	}
	return out, nil
}

// taskKeys reads the body of a heartbeat or a release (what names it in
// a FAIL): a processor's POST of api.TaskKeys; refusal is the 403's
// reason for others. On refusal it has answered and returns a nil user.
func (s *Server) taskKeys(w http.ResponseWriter, r *http.Request, what, refusal string) (*store.User, []string) {
	u, body := s.postBody(w, r, store.RoleProcessor, refusal, s.cfg.MaxJSONBody)
	if u == nil {
		return nil, nil
	}
	var req api.TaskKeys
	if err := api.Decode(body, &req); err != nil {
		fail(w, "%s: %v", what, err)
		return nil, nil
	}
	return u, req.Tasks
}

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	u, keys := s.taskKeys(w, r, "heartbeat", "only processors heartbeat")
	if u == nil {
		return
	}
	if len(keys) == 0 {
		keys = nil // all the node's tasks
	}
	res, err := s.db.Heartbeat(r.Context(), u.ID, keys, s.now().Add(s.cfg.LeaseTime))
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.noteHeartbeat(r.Context(), u.ID)
	ok(w, &api.HeartbeatAnswer{Lease: spec.FormatTime(s.cfg.LeaseTime), Lost: res.Lost, Tasks: res.Held})
}

func (s *Server) handleRelease(w http.ResponseWriter, r *http.Request) {
	u, asked := s.taskKeys(w, r, "release", "only processors release tasks")
	if u == nil {
		return
	}
	var keys []string // nil: all the node's tasks
	if len(asked) > 0 {
		seen := make(map[string]bool, len(asked))
		keys = make([]string, 0, len(asked))
		for _, k := range asked {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	res, err := s.db.Release(r.Context(), u.ID, keys, s.now())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if len(res.Released) > 0 {
		s.log.Info("tasks released by their node: back in the queue", "tasks", res.Released, "node", u.Name)
		s.signalQueue()
	}
	ok(w, &api.ReleaseAnswer{Lost: res.Lost, Released: res.Released})
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	if getBy(w, r) == nil {
		return
	}
	st, err := s.db.Stats(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	var assignees map[string]int
	if st.Assignees != nil {
		assignees = make(map[string]int, len(st.Assignees))
		for node, n := range st.Assignees {
			assignees[node] = int(n)
		}
	}
	queues, err := s.queueFigures(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	ok(w, &api.StatsAnswer{QueueStats: api.QueueStats{
		Queues:              queues,
		TaskAssignedCount:   int(st.Assigned),
		TaskAssignees:       assignees,
		TaskCancelledCount:  int(st.Cancelled),
		TaskCount:           int(st.Total),
		TaskResolvedCount:   int(st.Resolved),
		TaskUnassignedCount: int(st.Unassigned),
		TaskUnresolvedCount: int(st.Unresolved),
	}})
}
