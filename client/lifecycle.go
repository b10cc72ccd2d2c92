package client

// This file owns the task lifecycle as a user drives it (our servers'
// extensions task_list, task_detail, cancel, clone): listing one's tasks,
// a task's state and history, cancelling and cloning. A result asked for
// (or waited on) of a cancelled task is ErrCancelled.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/spec"
)

// ErrCancelled: the task was cancelled; it has no result and never will.
// Execute and Result (also while waiting) return it at once, as a
// *ServerError that wraps it.
var ErrCancelled = errors.New("task was cancelled")

// TaskFilter selects tasks for Tasks. Zero fields do not filter.
type TaskFilter struct {
	State  string // api.StateQueued, …
	Queue  string
	Type   string
	All    bool   // every user's tasks (inspectors, managers)
	Before string // the page after this task (TaskList.Next)
	Limit  int    // at most this many (0: the server's default, 50)
}

// TaskList is one page of tasks, newest first; Next, if not "", is the
// Before of the next page.
type TaskList struct {
	Tasks []api.TaskSummary
	Next  string
}

// need returns ErrUnsupported when the server does not announce ext.
func (c *Client) need(ext, what string) error {
	if !c.Settings().Has(ext) {
		return fmt.Errorf("%s: the server does not announce %q: %w", what, ext, ErrUnsupported)
	}
	return nil
}

// Tasks lists the user's tasks (with f.All, every user's), newest first,
// one page.
func (c *Client) Tasks(ctx context.Context, f TaskFilter) (*TaskList, error) {
	if err := c.need(api.ExtTaskList, "task list"); err != nil {
		return nil, err
	}
	q := url.Values{}
	for k, v := range map[string]string{"state": f.State, "queue": f.Queue, "type": f.Type, "before": f.Before} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.All {
		q.Set("all", "1")
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	path := "task/list/"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out api.TaskListAnswer
	if err := c.call(ctx, http.MethodGet, path, nil, "", &out); err != nil {
		return nil, err
	}
	if out.Tasks == nil {
		out.Tasks = []api.TaskSummary{}
	}
	return &TaskList{Tasks: out.Tasks, Next: out.Next}, nil
}

// TaskDetail reads a task with its lifecycle: state, queue, type, node,
// hand-outs, times and its result's verdict.
func (c *Client) TaskDetail(ctx context.Context, key string) (*api.TaskAnswer, error) {
	if err := c.need(api.ExtTaskDetail, "task show"); err != nil {
		return nil, err
	}
	var out api.TaskAnswer
	if err := c.call(ctx, http.MethodGet, "task/task/"+key+"/", nil, "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CancelError is the failure to cancel one task of several.
type CancelError struct {
	Key string
	Err error
}

func (e *CancelError) Error() string { return "task " + e.Key + ": " + e.Err.Error() }
func (e *CancelError) Unwrap() error { return e.Err }

// Cancel cancels each task named and returns, in order, the state each
// was in (api.StateCancelled: it already was). A task that cannot be
// cancelled (finished, unknown, not the caller's) does not stop the
// others: the error joins a *CancelError for each.
func (c *Client) Cancel(ctx context.Context, keys ...string) ([]string, error) {
	if err := c.need(api.ExtCancel, "task cancel"); err != nil {
		return nil, err
	}
	was := make([]string, len(keys))
	var errs []error
	for i, k := range keys {
		var out api.CancelAnswer
		if err := c.call(ctx, http.MethodPost, "task/task/"+k+"/cancel/", nil, "", &out); err != nil {
			if ctx.Err() != nil {
				return was, ctx.Err()
			}
			errs = append(errs, &CancelError{Key: k, Err: err})
			continue
		}
		was[i] = out.Was
	}
	return was, errors.Join(errs...)
}

// Clone submits task key again (the same spec and files, by reference)
// and returns the new task, whose ID is its key.
func (c *Client) Clone(ctx context.Context, key string) (*spec.Task, error) {
	if err := c.need(api.ExtClone, "task clone"); err != nil {
		return nil, err
	}
	var out api.NewTaskAnswer
	if err := c.call(ctx, http.MethodPost, "task/task/"+key+"/clone/", nil, "", &out); err != nil {
		return nil, err
	}
	t, err := spec.ParseTask(out.Task, "the server's task")
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrProtocol)
	}
	return t, nil
}
