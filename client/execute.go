package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/spec"
)

// State is what Execute reports as a task moves through the grid.
type State struct {
	Key    string
	Phase  string      // "queued", "running", "done"
	Node   string      // the node running it, when the server says
	Status spec.Status // the verdict, when done
}

// ExecuteOptions tune Execute.
type ExecuteOptions struct {
	Caps spec.Limits
	// Queue, if set, is the queue the task waits in (see TaskOptions).
	Queue string
	// Interval between polls on servers without long polling (Kolejka's
	// --interval, default 5 s); with long polling, how often the task's
	// state is looked at while waiting.
	Interval time.Duration
	// Consume removes the task folder once the result is saved.
	Consume bool
	// OnState is told of every change of state (optional).
	OnState func(State)
	// Type, if set, is submitted instead of a task folder (Execute's dir
	// is then unused): a task made from a type (execute_type.go).
	Type *TypeTask
}

// InterruptedError: Execute was stopped (Ctrl-C) after the task was
// submitted; the task stays queued or running and its result can be
// fetched later with Key.
type InterruptedError struct {
	Key   string
	Cause error
}

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("interrupted; task %s stays on the grid (fetch it later with `kolejka-client result get %s DIR`)", e.Key, e.Key)
}
func (e *InterruptedError) Unwrap() error { return e.Cause }

// longPollChunk is how long one long-polled result request waits.
const longPollChunk = 10 * time.Second

// Execute submits the task folder dir (or, with o.Type, a task made from
// a type), waits for its result and saves it into resultDir.
func (c *Client) Execute(ctx context.Context, dir, resultDir string, o ExecuteOptions) (*spec.Result, error) {
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if entries, err := os.ReadDir(resultDir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s is not empty; choose a new folder: %w", resultDir, ErrLocal)
	}
	t, err := c.executeSubmit(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	key := t.ID
	last := State{Key: key, Phase: "queued"}
	report := func(s State) {
		if o.OnState != nil && s != last {
			o.OnState(s)
		}
		last = s
	}
	if o.OnState != nil {
		o.OnState(last)
	}
	longPoll := c.Settings().Has(api.ExtLongPoll)
	reconnect := 200 * time.Millisecond
	var refused *ServerError
	for {
		var r *spec.Result
		var err error
		if longPoll {
			r, err = c.Result(ctx, key, min(longPollChunk, max(o.Interval, time.Second)))
		} else {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-time.After(o.Interval):
				r, err = c.Result(ctx, key, 0)
			}
		}
		if err == nil {
			// The result's files; a failure leaves resultDir as it was,
			// to be tried again when the server cannot answer now.
			if err = c.SaveResult(ctx, r, resultDir); err != nil && ctx.Err() != nil {
				return nil, &InterruptedError{Key: key, Cause: ctx.Err()}
			} else if err != nil && !errors.Is(err, ErrConnect) && !errors.Is(err, ErrUnavailable) {
				return nil, err
			}
		}
		if (errors.Is(err, ErrConnect) || errors.Is(err, ErrUnavailable)) && ctx.Err() == nil {
			// The server is away (restarting) or cannot answer now (its
			// blob store down): the task and its result are safe there,
			// so wait for it to come back rather than give up.
			select {
			case <-ctx.Done():
			case <-time.After(reconnect):
			}
			reconnect = min(2*reconnect, 5*time.Second)
			continue
		}
		reconnect = 200 * time.Millisecond
		switch {
		case err == nil:
			report(State{Key: key, Phase: "done", Node: last.Node, Status: r.Status})
			if o.Consume {
				os.RemoveAll(dir)
			}
			return r, nil
		case ctx.Err() != nil:
			return nil, &InterruptedError{Key: key, Cause: ctx.Err()}
		case errors.As(err, &refused), !errors.Is(err, ErrNotFound):
			// A refusal is final, "Task X is unknown" (the task was
			// deleted) too, though it means not found: only a 404 says
			// the result is not there yet.
			return nil, err
		}
		if st, err := c.TaskState(ctx, key); err == nil {
			report(st)
		}
	}
}

// TaskState tells whether a task waits or runs and where (servers that
// name the assignee; Kolejka's do not, so its tasks always look queued).
func (c *Client) TaskState(ctx context.Context, key string) (State, error) {
	var out api.TaskAnswer
	if err := c.call(ctx, http.MethodGet, "task/task/"+key+"/", nil, "", &out); err != nil {
		return State{}, err
	}
	s := State{Key: key, Phase: "queued"}
	if out.Assignee != "" {
		s.Phase, s.Node = "running", out.Assignee
	}
	return s, nil
}
