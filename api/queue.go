package api

// This file owns the messages of /queue/: dequeue (Kolejka's), heartbeat
// and release (our extensions "heartbeat" and "release"), and stats.

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/kolejka-go/kolejka/spec"
)

// DequeueRequest is the body of POST /queue/dequeue/: a node asks for
// tasks. Kolejka's foreman sends concurency, limits and tags; capacity,
// defaults, heartbeat, queues and wait are our extensions, sent only to a
// server that announces them.
type DequeueRequest struct {
	// Capacity is what the node offers tasks in all (extension "nodes";
	// our foreman's), shown beside the free limits on /node/.
	Capacity spec.Limits `json:"capacity,omitzero"`
	// Concurrency is how many tasks the node takes at most (Kolejka's key
	// is spelled "concurency"); a request without it means 1.
	Concurrency int `json:"concurency"`
	// Defaults are limits for tasks that omit one the node declares
	// (extension "dequeue_defaults").
	Defaults spec.Limits `json:"defaults,omitzero"`
	// Heartbeat says the node will heartbeat its tasks (extension
	// "heartbeat"): the server leases them for a short time only.
	Heartbeat bool `json:"heartbeat,omitempty"`
	// Limits are what the node has left (cores, memory, ...) and its
	// per-task maxima (time, image, ...).
	Limits spec.Limits `json:"limits"`
	// Queues are the queues the node takes tasks from, each a name
	// (spec.CheckName); none means the default queue (extension "queues").
	Queues []string `json:"queues,omitempty"`
	// Tags are the node's tags.
	Tags []string `json:"tags"`
	// RoomWake asks that a result the node posts while this request waits
	// end the wait at once, with what fits then, often nothing (extension
	// "room_wake"): the node has that task's room again and asks anew with
	// it. A node that does not ask again at once must not set it.
	RoomWake bool `json:"room_wake,omitempty"`
	// Wait lets the server hold the request this long for work when there
	// is none (extension "long_poll").
	Wait Seconds `json:"wait,omitzero"`
}

// ParseDequeue reads a dequeue request's body as the server does:
// strictly (unknown keys, data after the object, bad limits are errors
// naming them), "concurency" at least 1, "wait" in seconds or as a
// Kolejka time ("30s"). An empty body asks for one task. Its errors are
// the server's FAIL messages.
func ParseDequeue(body []byte) (DequeueRequest, error) {
	// The limits and the wait stay raw until the object's keys are known
	// good, so that each is then read with the name its errors give it.
	var raw struct {
		Capacity    json.RawMessage `json:"capacity"`
		Concurrency *int            `json:"concurency"`
		Defaults    json.RawMessage `json:"defaults"`
		Heartbeat   bool            `json:"heartbeat"`
		Limits      json.RawMessage `json:"limits"`
		Queues      []string        `json:"queues"`
		RoomWake    bool            `json:"room_wake"`
		Tags        []string        `json:"tags"`
		Wait        json.RawMessage `json:"wait"`
	}
	if err := Decode(body, &raw); err != nil {
		return DequeueRequest{}, fmt.Errorf("dequeue: %w", err)
	}
	req := DequeueRequest{Concurrency: 1, Heartbeat: raw.Heartbeat, Queues: raw.Queues, RoomWake: raw.RoomWake, Tags: raw.Tags}
	for i, q := range req.Queues {
		if err := spec.CheckName(q); err != nil {
			return DequeueRequest{}, fmt.Errorf("dequeue: queues[%d]: %w", i, err)
		}
	}
	if raw.Concurrency != nil {
		req.Concurrency = *raw.Concurrency
	}
	if req.Concurrency < 1 {
		return DequeueRequest{}, fmt.Errorf("dequeue: concurency: must be at least 1, not %d", req.Concurrency)
	}
	var err error
	if req.Limits, err = parseLimits(raw.Limits, "dequeue limits"); err != nil {
		return DequeueRequest{}, err
	}
	if req.Defaults, err = parseLimits(raw.Defaults, "dequeue defaults"); err != nil {
		return DequeueRequest{}, err
	}
	if req.Capacity, err = parseLimits(raw.Capacity, "dequeue capacity"); err != nil {
		return DequeueRequest{}, err
	}
	if len(raw.Wait) > 0 {
		if err := req.Wait.UnmarshalJSON(raw.Wait); err != nil {
			return DequeueRequest{}, fmt.Errorf("dequeue: wait: %w", err)
		}
	}
	return req, nil
}

func parseLimits(raw json.RawMessage, field string) (spec.Limits, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return spec.Limits{}, nil
	}
	return spec.ParseLimits(raw, field)
}

// Seconds is a duration written as a number of seconds (0.25), as the
// dequeue request's wait. It reads a Kolejka time ("30s") too.
type Seconds time.Duration

// MarshalJSON writes the number of seconds.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(s).Seconds())
}

// UnmarshalJSON reads a number of seconds (at most 10⁹) or a Kolejka time;
// null is 0.
func (s *Seconds) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*s = 0
		return nil
	}
	var n float64
	if err := json.Unmarshal(data, &n); err == nil {
		if math.IsNaN(n) || n < 0 || n > 1e9 {
			return fmt.Errorf("%v is not a number of seconds", n)
		}
		*s = Seconds(n * float64(time.Second))
		return nil
	}
	var str string
	if err := json.Unmarshal(data, &str); err != nil {
		return fmt.Errorf("expected seconds, got %s", data)
	}
	d, err := spec.ParseTime(str)
	if err != nil {
		return err
	}
	*s = Seconds(d)
	return nil
}

// DequeueAnswer hands the node its tasks, each as stored but with the
// limits it runs with on this node (spec.ParseTask reads one). Tasks is
// [] when there are none.
type DequeueAnswer struct {
	// PassEnv names, by task key, the host environment variables a task
	// made from a type may take from its node (extension "types"; the
	// node passes only those its own configuration allows). Absent when
	// no task handed out has any; Kolejka's foreman ignores it.
	PassEnv map[string][]string `json:"pass_env,omitempty"`
	Envelope
	Tasks []json.RawMessage `json:"tasks"`
}

// TaskKeys is the body of POST /queue/heartbeat/ and /queue/release/:
// the keys of the node's tasks it means; none (or an empty body) means
// all of them.
type TaskKeys struct {
	Tasks []string `json:"tasks"`
}

// HeartbeatAnswer says which tasks the node still holds (their leases
// extended) and which it lost (asked for, but no longer the node's).
type HeartbeatAnswer struct {
	// Lease is how long a lease now lasts, as a Kolejka time.
	Lease string   `json:"lease"`
	Lost  []string `json:"lost"`
	Envelope
	Tasks []string `json:"tasks"`
}

// ReleaseAnswer says which tasks went back to the queue and which were
// not the node's.
type ReleaseAnswer struct {
	Lost     []string `json:"lost"`
	Released []string `json:"released"`
	Envelope
}

// QueueStats are the queue's counts, as GET /queue/stats/ answers them.
type QueueStats struct {
	// Queues are each named queue's figures, by name (extension
	// "queues"; Kolejka's clients ignore the key).
	Queues            map[string]QueueFigures `json:"queues,omitempty"`
	TaskAssignedCount int                     `json:"task_assigned_count"`
	// TaskAssignees counts each node's assigned, unresolved tasks.
	TaskAssignees map[string]int `json:"task_assignees"`
	// TaskCancelledCount counts cancelled tasks (extension "cancel";
	// written only when there are some). They are in TaskCount but
	// neither resolved nor unresolved: no result will ever come.
	TaskCancelledCount  int `json:"task_cancelled_count,omitempty"`
	TaskCount           int `json:"task_count"`
	TaskResolvedCount   int `json:"task_resolved_count"`
	TaskUnassignedCount int `json:"task_unassigned_count"`
	TaskUnresolvedCount int `json:"task_unresolved_count"`
}

// QueueFigures are one named queue's figures and settings.
type QueueFigures struct {
	Depth   int `json:"depth"`   // queued tasks
	Running int `json:"running"` // tasks assigned to nodes
	// OldestAgeSeconds is how long the task at the queue's head has waited
	// since it last entered the queue (0 when the queue is empty).
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	Paused           bool    `json:"paused"`
	Private          bool    `json:"private"`
	Priority         int     `json:"priority"`
}

// StatsAnswer is GET /queue/stats/'s answer.
type StatsAnswer struct {
	Envelope
	QueueStats
}
