package client

// This file owns what Execute submits: a task folder, or a task made from
// a type (ExecuteOptions.Type); the waiting and the result's download are
// the same for both.

import (
	"context"

	"github.com/kolejka-go/kolejka/spec"
)

// executeSubmit submits Execute's task: the folder dir with the caps, or
// o.Type with them.
func (c *Client) executeSubmit(ctx context.Context, dir string, o ExecuteOptions) (*spec.Task, error) {
	if o.Type == nil {
		return c.TaskSubmit(ctx, dir, TaskOptions{Caps: o.Caps, Queue: o.Queue})
	}
	tt := *o.Type
	tt.Caps = tt.Caps.Merge(o.Caps)
	if o.Queue != "" {
		tt.Queue = o.Queue
	}
	return c.TypeTaskPut(ctx, tt)
}
