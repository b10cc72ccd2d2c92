package client

// This file owns schedules, triggers and webhooks on the client's side
// (extension "triggers", docs/triggers.md): a target built from local
// input (a task folder, a task type with its parameters, or a workflow
// folder; its files uploaded first), a schedule or trigger put with it,
// listed, read, paused, resumed and removed, and a webhook fired. The
// server keeps them and starts their targets; the client only puts them
// and looks.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/tasktype"
	"github.com/kolejka-go/kolejka/spec"
)

// TriggerInfo describes a schedule or trigger (api.TriggerInfo).
type TriggerInfo = api.TriggerInfo

func (c *Client) needTriggers() error {
	if !c.Settings().Has(api.ExtTriggers) {
		return fmt.Errorf("schedules and triggers: %w", ErrUnsupported)
	}
	return nil
}

// Target is what a schedule or trigger starts, as local input: exactly
// one of a task folder (Task), a task type (Type, with Params, Files and
// Queue) or a workflow folder (Workflow).
type Target struct {
	Task     string            // a task folder: its kolejka_task.json and files
	Type     string            // a task type's name
	Params   map[string]string // with Type: value parameters
	Files    map[string]string // with Type: file parameters, each a local file
	Queue    string            // with Task or Type: the queue of the tasks it starts ("": the task's, the type's)
	Caps     spec.Limits       // with Task or Type: caps of the limits, beside the client's own
	Workflow string            // a workflow folder: its kolejka_workflow.json and task folders
}

// BuildTarget checks the local target t of a schedule or trigger of kind
// (api.TriggerSchedule, …) and uploads its files: the target to put and
// the references it made (to delete, with Discard, if the put is
// refused). A task folder becomes its kolejka_task.json with each file's
// reference and its limits capped as TaskSubmit caps them; a type is
// rendered here first, as TypeTaskPut does, so that a wrong parameter is
// refused by name before anything is uploaded (with the parameters its
// firings give: fireParams); a workflow folder is checked and uploaded as
// WorkflowPut does. On failure the references it made are deleted again.
func (c *Client) BuildTarget(ctx context.Context, kind string, t Target) (api.TriggerTarget, []string, error) {
	n := 0
	for _, s := range []string{t.Task, t.Type, t.Workflow} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return api.TriggerTarget{}, nil, &spec.Error{Field: "target", Problem: "give exactly one of a task folder, a task type or a workflow folder"}
	}
	if t.Type == "" && (len(t.Params) > 0 || len(t.Files) > 0) {
		return api.TriggerTarget{}, nil, &spec.Error{Field: "target", Problem: "parameters and files are a task type's: there is no type"}
	}
	if t.Workflow != "" && t.Queue != "" {
		return api.TriggerTarget{}, nil, &spec.Error{Field: "target", Problem: "a workflow's steps name their queues: no queue with a workflow"}
	}
	switch {
	case t.Task != "":
		return c.taskTarget(ctx, t)
	case t.Type != "":
		params, err := c.fireParams(ctx, kind, t)
		if err != nil {
			return api.TriggerTarget{}, nil, err
		}
		body, uploaded, err := c.typeTaskBuild(ctx, TypeTask{Type: t.Type, Params: params, Files: t.Files, Queue: t.Queue, Caps: t.Caps})
		if err != nil {
			return api.TriggerTarget{}, nil, err
		}
		// The put carries the parameters given; the firings give the rest.
		return api.TriggerTarget{Type: t.Type, Params: t.Params, Files: body.Files, Queue: body.Queue, Limits: body.Limits}, uploaded, nil
	default:
		put, uploaded, err := c.workflowBuild(ctx, t.Workflow)
		if err != nil {
			return api.TriggerTarget{}, nil, err
		}
		return api.TriggerTarget{Workflow: &put}, uploaded, nil
	}
}

// sampleValue stands for a parameter a firing gives, in the render check
// of a put.
const sampleValue = "sample"

// fireParams are t's parameters for the render check of a put of kind,
// with a sample for each one its firings give, as the server checks a
// put: a request's body gives the type's required value parameters, and
// a result or run trigger gives the key of what fired it in a declared
// "trigger" parameter. Without them a webhook of a type with a required
// parameter could not be put.
func (c *Client) fireParams(ctx context.Context, kind string, t Target) (map[string]string, error) {
	if kind != api.TriggerRequest && kind != api.TriggerResult && kind != api.TriggerRun {
		return t.Params, nil
	}
	info, err := c.Type(ctx, t.Type, 0)
	if err != nil {
		return nil, err
	}
	typ, err := tasktype.Parse(info.Type, "type "+t.Type)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrProtocol)
	}
	params := maps.Clone(t.Params)
	if params == nil {
		params = map[string]string{}
	}
	for name, p := range typ.Params() {
		if _, given := params[name]; given || p.File {
			continue
		}
		if (kind == api.TriggerRequest && p.Default == nil) || (kind != api.TriggerRequest && name == "trigger") {
			params[name] = sampleValue
		}
	}
	return params, nil
}

// taskTarget is BuildTarget of a task folder: what TaskSubmit would post,
// not posted.
func (c *Client) taskTarget(ctx context.Context, t Target) (api.TriggerTarget, []string, error) {
	task, err := spec.LoadTask(t.Task)
	if err != nil {
		return api.TriggerTarget{}, nil, err
	}
	if t.Queue != "" {
		task.Queue = t.Queue
	}
	if task.Queue != "" && task.Queue != spec.DefaultQueue && !c.Settings().Has(api.ExtQueues) {
		return api.TriggerTarget{}, nil, fmt.Errorf("queue %q: this server has only the default queue: %w", task.Queue, ErrUnsupported)
	}
	task.Limits = task.Limits.Merge(c.cfg.Limits, t.Caps)
	task.ID = "" // the server assigns keys
	files, uploaded, err := c.uploadFiles(ctx, t.Task, task.Files)
	if err != nil {
		return api.TriggerTarget{}, nil, err
	}
	task.Files = files
	data, err := task.Encode()
	if err != nil {
		c.discard(ctx, uploaded)
		return api.TriggerTarget{}, nil, err
	}
	return api.TriggerTarget{Task: data}, uploaded, nil
}

// Discard deletes references BuildTarget made, when what they were made
// for is not put (best effort).
func (c *Client) Discard(ctx context.Context, uploaded []string) { c.discard(ctx, uploaded) }

// SchedulePut puts put (Kind "schedule" if empty) as a new schedule or
// the next version of one of the user's, and returns the version. With
// target, its target is built from local input first (BuildTarget);
// without (nil), put.Target is sent as it is. If the server does not
// store it, the references uploaded for it are deleted again (best
// effort).
func (c *Client) SchedulePut(ctx context.Context, put api.TriggerPut, target *Target) (int, error) {
	if put.Kind == "" {
		put.Kind = api.TriggerSchedule
	}
	return c.triggerPut(ctx, "schedule/", put, target)
}

// TriggerPut is SchedulePut of a trigger (Kind result, run or request).
func (c *Client) TriggerPut(ctx context.Context, put api.TriggerPut, target *Target) (int, error) {
	return c.triggerPut(ctx, "trigger/", put, target)
}

func (c *Client) triggerPut(ctx context.Context, path string, put api.TriggerPut, target *Target) (int, error) {
	if err := c.needTriggers(); err != nil {
		return 0, err
	}
	if err := spec.CheckName(put.Name); err != nil {
		return 0, &spec.Error{Field: "name", Problem: err.Error()}
	}
	var uploaded []string
	if target != nil {
		var err error
		if put.Target, uploaded, err = c.BuildTarget(ctx, put.Kind, *target); err != nil {
			return 0, err
		}
	}
	body, err := json.Marshal(put)
	if err == nil {
		var out api.TriggerPutAnswer
		if err = c.call(ctx, http.MethodPost, path, body, "application/json", &out); err == nil {
			return out.Version, nil
		}
	}
	c.discard(ctx, uploaded)
	return 0, err
}

// Schedules lists the user's schedules (a manager's: everyone's).
func (c *Client) Schedules(ctx context.Context) ([]TriggerInfo, error) {
	return c.triggerList(ctx, "schedule/")
}

// Triggers lists the user's triggers (a manager's: everyone's).
func (c *Client) Triggers(ctx context.Context) ([]TriggerInfo, error) {
	return c.triggerList(ctx, "trigger/")
}

func (c *Client) triggerList(ctx context.Context, path string) ([]TriggerInfo, error) {
	if err := c.needTriggers(); err != nil {
		return nil, err
	}
	var out api.TriggersAnswer
	if err := c.call(ctx, http.MethodGet, path, nil, "", &out); err != nil {
		return nil, err
	}
	return out.Triggers, nil
}

// Schedule reads the schedule name, with its recent firings (newest
// first).
func (c *Client) Schedule(ctx context.Context, name string) (*TriggerInfo, error) {
	return c.triggerCall(ctx, http.MethodGet, "schedule/"+url.PathEscape(name)+"/")
}

// Trigger reads the trigger name, with its recent firings (newest first).
func (c *Client) Trigger(ctx context.Context, name string) (*TriggerInfo, error) {
	return c.triggerCall(ctx, http.MethodGet, "trigger/"+url.PathEscape(name)+"/")
}

// SchedulePause stops the schedule name firing until it is resumed.
func (c *Client) SchedulePause(ctx context.Context, name string) (*TriggerInfo, error) {
	return c.triggerCall(ctx, http.MethodPost, "schedule/"+url.PathEscape(name)+"/pause/")
}

// ScheduleResume lets the paused schedule name fire again.
func (c *Client) ScheduleResume(ctx context.Context, name string) (*TriggerInfo, error) {
	return c.triggerCall(ctx, http.MethodPost, "schedule/"+url.PathEscape(name)+"/resume/")
}

// TriggerPause stops the trigger name firing until it is resumed.
func (c *Client) TriggerPause(ctx context.Context, name string) (*TriggerInfo, error) {
	return c.triggerCall(ctx, http.MethodPost, "trigger/"+url.PathEscape(name)+"/pause/")
}

// TriggerResume lets the paused trigger name fire again.
func (c *Client) TriggerResume(ctx context.Context, name string) (*TriggerInfo, error) {
	return c.triggerCall(ctx, http.MethodPost, "trigger/"+url.PathEscape(name)+"/resume/")
}

func (c *Client) triggerCall(ctx context.Context, method, path string) (*TriggerInfo, error) {
	if err := c.needTriggers(); err != nil {
		return nil, err
	}
	var out api.TriggerAnswer
	if err := c.call(ctx, method, path, nil, "", &out); err != nil {
		return nil, err
	}
	return &out.Trigger, nil
}

// ScheduleRemove removes the schedule name (the work it started stays).
func (c *Client) ScheduleRemove(ctx context.Context, name string) error {
	if err := c.needTriggers(); err != nil {
		return err
	}
	return c.call(ctx, http.MethodDelete, "schedule/"+url.PathEscape(name)+"/", nil, "", nil)
}

// TriggerRemove removes the trigger name (the work it started stays).
func (c *Client) TriggerRemove(ctx context.Context, name string) error {
	if err := c.needTriggers(); err != nil {
		return err
	}
	return c.call(ctx, http.MethodDelete, "trigger/"+url.PathEscape(name)+"/", nil, "", nil)
}

// TriggerFire fires the request trigger name (its webhook, POST
// /trigger/<name>/) with params and returns what it started. A non-empty
// idempotencyKey is sent as the Idempotency-Key header: the server
// answers a repeat of it with what the first request started.
func (c *Client) TriggerFire(ctx context.Context, name string, params map[string]string, idempotencyKey string) (*api.TriggerFireAnswer, error) {
	if err := c.needTriggers(); err != nil {
		return nil, err
	}
	if params == nil {
		params = map[string]string{}
	}
	body, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	var header http.Header
	if idempotencyKey != "" {
		header = http.Header{"Idempotency-Key": {idempotencyKey}}
	}
	path := "trigger/" + url.PathEscape(name) + "/"
	resp, err := c.doHeader(ctx, http.MethodPost, path, bytes.NewReader(body), "application/json", header)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out api.TriggerFireAnswer
	if err := c.decode(resp, path, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
