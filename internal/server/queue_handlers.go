package server

// This file owns /queue/: dequeue, heartbeat (extension) and stats.
//
// POST /queue/dequeue/ (processors), body as Kolejka's foreman sends it:
//
//	{"concurency": N, "limits": {what the node has free}, "tags": [...]}
//
// plus our optional keys: "wait": seconds to wait for work when there is
// none (long poll, capped at MaxWait), "defaults": {limits for tasks that
// omit one the node declares}, "heartbeat": true (the node will heartbeat:
// its tasks get the short lease). Answer: {"tasks": [...], "status": "OK"},
// each task as stored but with the limits it runs with on this node.
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
// GET /queue/stats/ (signed in): Kolejka's counts.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/spec"
)

// decodeStrict decodes one JSON object into v, refusing unknown keys and
// trailing data. An empty body is an empty object.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

type dequeueRequest struct {
	Concurency *int            `json:"concurency"` // sic, as Kolejka
	Limits     json.RawMessage `json:"limits"`
	Tags       []string        `json:"tags"`
	Wait       json.RawMessage `json:"wait"`
	Defaults   json.RawMessage `json:"defaults"`
	Heartbeat  bool            `json:"heartbeat"`
}

func parseLimits(raw json.RawMessage, field string) (spec.Limits, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return spec.Limits{}, nil
	}
	return spec.ParseLimits(raw, field)
}

// parseWait reads a wait given as a number of seconds or a Kolejka time.
func parseWait(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var n float64
	if err := json.Unmarshal(raw, &n); err == nil {
		if math.IsNaN(n) || n < 0 || n > 1e9 {
			return 0, fmt.Errorf("%v is not a number of seconds", n)
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	var str string
	if err := json.Unmarshal(raw, &str); err != nil {
		return 0, fmt.Errorf("expected seconds, got %s", raw)
	}
	return spec.ParseTime(str)
}

func (s *Server) handleDequeue(w http.ResponseWriter, r *http.Request) {
	u := postBy(w, r, store.RoleProcessor, "only processors dequeue")
	if u == nil {
		return
	}
	body, good := s.readBody(w, r)
	if !good {
		return
	}
	var req dequeueRequest
	if err := decodeStrict(body, &req); err != nil {
		fail(w, "dequeue: %v", err)
		return
	}
	concurency := 1
	if req.Concurency != nil {
		concurency = *req.Concurency
	}
	if concurency < 1 {
		fail(w, "dequeue: concurency: must be at least 1, not %d", concurency)
		return
	}
	free, err := parseLimits(req.Limits, "dequeue limits")
	if err != nil {
		fail(w, "%v", err)
		return
	}
	defaults, err := parseLimits(req.Defaults, "dequeue defaults")
	if err != nil {
		fail(w, "%v", err)
		return
	}
	if err := unrunnableLimits(defaults, "defaults"); err != nil {
		fail(w, "dequeue: %v", err)
		return
	}
	wait, err := parseWait(req.Wait)
	if err != nil {
		fail(w, "dequeue: wait: %v", err)
		return
	}
	wait = min(wait, s.cfg.MaxWait)
	deadline := time.Now().Add(wait)
	dq := store.DequeueRequest{
		Node: u.ID,
		Tags: req.Tags,
		Free: free,
		// The node knows its own shape: its defaults win, the server's
		// fill the rest (they always hold cpus, memory and time).
		Defaults:   defaults.Or(s.cfg.Defaults),
		Concurency: concurency,
		Heartbeat:  req.Heartbeat,
		Window:     s.cfg.ScanWindow,
		Started:    s.now(),
		Lease:      s.lease,
		Expiry:     s.expiryPolicy(),
	}
	for {
		// Take the channel first: a task submitted during the dequeue
		// transaction wakes us.
		woken := s.queue.C()
		dq.Now = s.now()
		start := time.Now()
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
			ok(w, map[string]any{"tasks": tasks})
			return
		}
		var live bool
		if deadline, live = s.pause(r, woken, deadline); !live {
			return
		}
	}
}

// pause is one wait of a long poll: until woken, the deadline or the
// server's stop (which ends the poll: the deadline becomes now). It returns
// the deadline, and false when the request ended meanwhile (the client is
// gone: nothing to answer).
func (s *Server) pause(r *http.Request, woken <-chan struct{}, deadline time.Time) (time.Time, bool) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	if s.cfg.pausing != nil {
		s.cfg.pausing()
	}
	select {
	case <-woken:
	case <-timer.C:
	case <-s.stopped():
		deadline = time.Now()
	case <-r.Context().Done():
		return deadline, false
	}
	return deadline, true
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

type heartbeatRequest struct {
	Tasks []string `json:"tasks"`
}

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	u := postBy(w, r, store.RoleProcessor, "only processors heartbeat")
	if u == nil {
		return
	}
	body, good := s.readBody(w, r)
	if !good {
		return
	}
	var req heartbeatRequest
	if err := decodeStrict(body, &req); err != nil {
		fail(w, "heartbeat: %v", err)
		return
	}
	keys := req.Tasks
	if len(keys) == 0 {
		keys = nil // all the node's tasks
	}
	res, err := s.db.Heartbeat(r.Context(), u.ID, keys, s.now().Add(s.cfg.LeaseTime))
	if err != nil {
		s.internal(w, r, err)
		return
	}
	ok(w, map[string]any{"tasks": res.Held, "lost": res.Lost, "lease": spec.FormatTime(s.cfg.LeaseTime)})
}

func (s *Server) handleRelease(w http.ResponseWriter, r *http.Request) {
	u := postBy(w, r, store.RoleProcessor, "only processors release tasks")
	if u == nil {
		return
	}
	body, good := s.readBody(w, r)
	if !good {
		return
	}
	var req heartbeatRequest // the same shape: {"tasks": [keys]}
	if err := decodeStrict(body, &req); err != nil {
		fail(w, "release: %v", err)
		return
	}
	var keys []string // nil: all the node's tasks
	if len(req.Tasks) > 0 {
		seen := make(map[string]bool, len(req.Tasks))
		keys = make([]string, 0, len(req.Tasks))
		for _, k := range req.Tasks {
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
		s.queue.Signal()
	}
	ok(w, map[string]any{"released": res.Released, "lost": res.Lost})
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	if signedIn(w, r) == nil {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		notAllowed(w, "GET", "HEAD")
		return
	}
	st, err := s.db.Stats(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	ok(w, map[string]any{
		"task_count":            st.Total,
		"task_resolved_count":   st.Resolved,
		"task_unresolved_count": st.Unresolved,
		"task_unassigned_count": st.Unassigned,
		"task_assigned_count":   st.Assigned,
		"task_assignees":        st.Assignees,
	})
}
