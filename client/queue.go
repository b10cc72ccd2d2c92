package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/kolejka-go/kolejka/api"
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
	// RoomWake asks that a result the node posts while a long poll waits
	// end it (extension "room_wake"): set it only where the caller asks
	// again at once with the room the task had.
	RoomWake bool
	// Queues are the queues the node takes from, higher priority first by
	// the server's rules (extension "queues"); none: the default queue.
	Queues []string
	// Capacity is what the node offers in all, shown on the server's
	// /node/ (extension "nodes"; not sent to a server without it).
	Capacity spec.Limits
}

// Dequeue takes tasks for this node (a processor's call). The tasks come
// with the limits they run with on this node.
func (c *Client) Dequeue(ctx context.Context, req DequeueRequest) ([]*spec.Task, error) {
	d, err := c.DequeueTasks(ctx, req)
	return d.Tasks, err
}

// Dequeued is what a dequeue handed the node.
type Dequeued struct {
	Tasks []*spec.Task
	// PassEnv names, by task key, the host environment variables a task
	// made from a type may take from its node (extension "types"); the
	// node passes only those its configuration allows.
	PassEnv map[string][]string
}

// DequeueTasks is Dequeue with what the server says beside the tasks.
func (c *Client) DequeueTasks(ctx context.Context, req DequeueRequest) (Dequeued, error) {
	s := c.Settings()
	body := api.DequeueRequest{
		Concurrency: req.Concurrency,
		Limits:      req.Free,
		Tags:        append([]string{}, req.Tags...),
	}
	if req.Wait > 0 && s.Has(api.ExtLongPoll) {
		body.Wait = api.Seconds(req.Wait)
	}
	if s.Has(api.ExtDequeueDefaults) {
		body.Defaults = req.Defaults
	}
	body.Heartbeat = req.Heartbeat && s.Has(api.ExtHeartbeat)
	body.RoomWake = req.RoomWake && body.Wait > 0 && s.Has(api.ExtRoomWake)
	if s.Has(api.ExtNodes) {
		body.Capacity = req.Capacity
	}
	if len(req.Queues) > 0 {
		switch {
		case s.Has(api.ExtQueues):
			body.Queues = append([]string{}, req.Queues...)
		case !OnlyDefaultQueue(req.Queues):
			// Asked without the key, the server would hand out the
			// default queue's tasks: not what the node serves.
			return Dequeued{}, fmt.Errorf("queue/dequeue/: named queues %v: %w", req.Queues, ErrUnsupported)
		}
	}
	var out api.DequeueAnswer
	if err := c.postJSON(ctx, "queue/dequeue/", body, &out); err != nil {
		return Dequeued{}, err
	}
	tasks := make([]*spec.Task, 0, len(out.Tasks))
	for i, raw := range out.Tasks {
		t, err := spec.ParseTask(raw, fmt.Sprintf("dequeued task %d", i))
		if err != nil {
			return Dequeued{}, fmt.Errorf("%v: %w", err, ErrProtocol)
		}
		tasks = append(tasks, t)
	}
	return Dequeued{Tasks: tasks, PassEnv: out.PassEnv}, nil
}

// OnlyDefaultQueue reports whether queues names the default queue alone
// (or none): what every server serves, with or without the extension
// "queues".
func OnlyDefaultQueue(queues []string) bool {
	for _, q := range queues {
		if q != spec.DefaultQueue {
			return false
		}
	}
	return true
}

// Heartbeat extends the leases of the node's tasks keys (all of them when
// keys is empty) and reports which it still holds and which it lost (their
// results will be refused if another node's came first). Servers without
// the "heartbeat" extension hold everything forever: all are held.
func (c *Client) Heartbeat(ctx context.Context, keys []string) (held, lost []string, err error) {
	if !c.Settings().Has(api.ExtHeartbeat) {
		return keys, nil, nil
	}
	var out api.HeartbeatAnswer
	if err := c.postJSON(ctx, "queue/heartbeat/", taskKeys(keys), &out); err != nil {
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
	if !c.Settings().Has(api.ExtRelease) {
		return nil, nil, fmt.Errorf("queue/release/: %w", ErrUnsupported)
	}
	var out api.ReleaseAnswer
	if err := c.postJSON(ctx, "queue/release/", taskKeys(keys), &out); err != nil {
		return nil, nil, err
	}
	return out.Released, out.Lost, nil
}

// taskKeys is the body naming keys, [] (not null) for none.
func taskKeys(keys []string) api.TaskKeys {
	return api.TaskKeys{Tasks: append([]string{}, keys...)}
}

// postJSON posts req (one of package api's requests) and decodes an OK
// answer into out.
func (c *Client) postJSON(ctx context.Context, path string, req, out any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return c.call(ctx, http.MethodPost, path, data, "application/json", out)
}

// QueueStats is /queue/stats/.
type QueueStats = api.QueueStats

// Stats returns the queue's counts.
func (c *Client) Stats(ctx context.Context) (*QueueStats, error) {
	var out api.StatsAnswer
	if err := c.call(ctx, http.MethodGet, "queue/stats/", nil, "", &out); err != nil {
		return nil, err
	}
	return &out.QueueStats, nil
}
