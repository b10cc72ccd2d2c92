package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/kolejka-go/kolejka/spec"
)

// DequeueRequest is what a node asks for.
type DequeueRequest struct {
	// Concurrency is how many tasks the node takes at most.
	Concurrency int
	// Free is what the node has left (cores, memory, ...) and its per-task
	// maxima (time, image, ...).
	Free spec.Limits
	// Tags are the node's tags.
	Tags []string
	// Defaults are limits for tasks that omit one the node declares
	// (our extension "dequeue_defaults"; ignored by Kolejka).
	Defaults spec.Limits
	// Wait lets the server hold the request up to this long for work
	// (extension "long_poll").
	Wait time.Duration
	// Heartbeat says the node will heartbeat its tasks (extension
	// "heartbeat"): the server then leases them for a short time only.
	Heartbeat bool
}

// Dequeue takes tasks for this node (a processor's call). The tasks come
// with the limits they run with on this node.
func (c *Client) Dequeue(ctx context.Context, req DequeueRequest) ([]*spec.Task, error) {
	s := c.Settings()
	body := map[string]any{
		"concurency": req.Concurrency, // sic: Kolejka's spelling
		"limits":     req.Free,
		"tags":       append([]string{}, req.Tags...),
	}
	if req.Wait > 0 && s.Has("long_poll") {
		body["wait"] = req.Wait.Seconds()
	}
	if !req.Defaults.IsZero() && s.Has("dequeue_defaults") {
		body["defaults"] = req.Defaults
	}
	if req.Heartbeat && s.Has("heartbeat") {
		body["heartbeat"] = true
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	var out struct {
		Tasks []json.RawMessage `json:"tasks"`
	}
	if err := c.call(ctx, http.MethodPost, "queue/dequeue/", data, "application/json", &out); err != nil {
		return nil, err
	}
	tasks := make([]*spec.Task, 0, len(out.Tasks))
	for i, raw := range out.Tasks {
		t, err := spec.ParseTask(raw, fmt.Sprintf("dequeued task %d", i))
		if err != nil {
			return nil, fmt.Errorf("%v: %w", err, ErrProtocol)
		}
		tasks = append(tasks, t)
	}
	return tasks, nil
}

// Heartbeat extends the leases of the node's tasks keys (all of them when
// keys is empty) and reports which it still holds and which it lost (their
// results will be refused if another node's came first). Servers without
// the "heartbeat" extension hold everything forever: all are held.
func (c *Client) Heartbeat(ctx context.Context, keys []string) (held, lost []string, err error) {
	if !c.Settings().Has("heartbeat") {
		return keys, nil, nil
	}
	data, err := json.Marshal(map[string]any{"tasks": append([]string{}, keys...)})
	if err != nil {
		return nil, nil, err
	}
	var out struct {
		Tasks []string `json:"tasks"`
		Lost  []string `json:"lost"`
	}
	if err := c.call(ctx, http.MethodPost, "queue/heartbeat/", data, "application/json", &out); err != nil {
		return nil, nil, err
	}
	return out.Tasks, out.Lost, nil
}

// Release hands the node's tasks keys (all of them when keys is empty)
// back to the queue at once, undoing their hand-out (extension "release"):
// a node that is stopped before finishing them calls it. It reports which
// were released and which were no longer the node's. On servers without the
// extension it returns an error wrapping ErrUnsupported and changes
// nothing: the tasks come back when their leases lapse.
func (c *Client) Release(ctx context.Context, keys []string) (released, lost []string, err error) {
	if !c.Settings().Has("release") {
		return nil, nil, fmt.Errorf("queue/release/: %w", ErrUnsupported)
	}
	data, err := json.Marshal(map[string]any{"tasks": append([]string{}, keys...)})
	if err != nil {
		return nil, nil, err
	}
	var out struct {
		Released []string `json:"released"`
		Lost     []string `json:"lost"`
	}
	if err := c.call(ctx, http.MethodPost, "queue/release/", data, "application/json", &out); err != nil {
		return nil, nil, err
	}
	return out.Released, out.Lost, nil
}

// QueueStats is /queue/stats/.
type QueueStats struct {
	TaskCount           int            `json:"task_count"`
	TaskResolvedCount   int            `json:"task_resolved_count"`
	TaskUnresolvedCount int            `json:"task_unresolved_count"`
	TaskUnassignedCount int            `json:"task_unassigned_count"`
	TaskAssignedCount   int            `json:"task_assigned_count"`
	TaskAssignees       map[string]int `json:"task_assignees"`
}

// Stats returns the queue's counts.
func (c *Client) Stats(ctx context.Context) (*QueueStats, error) {
	var s QueueStats
	if err := c.call(ctx, http.MethodGet, "queue/stats/", nil, "", &s); err != nil {
		return nil, err
	}
	return &s, nil
}
