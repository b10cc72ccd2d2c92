package api

// This file owns the messages of /schedule/ and /trigger/ (our extension
// "triggers", docs/triggers.md): what starts work without a user
// submitting it. A schedule starts its target at the ticks of a cron
// expression or every fixed interval; a trigger starts it when a task
// (or a workflow run) of its owner ends, or when a webhook request
// arrives at POST /trigger/<name>/. Both are kept by the server, which
// records each firing before it submits the work, so that each tick,
// result or request starts its target once.

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/kolejka-go/kolejka/spec"
)

// Trigger kinds, TriggerPut.Kind.
const (
	TriggerSchedule = "schedule" // cron or every: under /schedule/
	TriggerResult   = "result"   // a task of the owner ends with a result
	TriggerRun      = "run"      // a workflow run of the owner ends
	TriggerRequest  = "request"  // POST /trigger/<name>/ (a webhook)
)

// Overlap policies of a schedule: what a tick does while the work the
// previous tick started has not ended.
const (
	OverlapAllow   = "allow"   // start anyway (the default)
	OverlapForbid  = "forbid"  // skip the tick
	OverlapReplace = "replace" // cancel the previous work, then start
)

// TriggerTarget is what a schedule or trigger starts: exactly one of a
// task (a kolejka_task.json whose files carry their references, uploaded
// before), a task type (Type with its Params, Files, Queue and Limits, as
// POST /type/<name>/task/ takes them) or a workflow (a put of
// POST /workflow/).
type TriggerTarget struct {
	Files    map[string]TypeFile `json:"files,omitempty"`
	Limits   spec.Limits         `json:"limits,omitzero"`
	Params   map[string]string   `json:"params,omitempty"`
	Queue    string              `json:"queue,omitempty"`
	Task     json.RawMessage     `json:"task,omitempty"`
	Type     string              `json:"type,omitempty"`
	Workflow *WorkflowPut        `json:"workflow,omitempty"`
}

// TriggerOn is what a result or run trigger fires on: the owner's tasks
// (runs) that end in one of Status (any status if empty; a task's result
// status OK, RE, TLE, …; a run's state ok, failed, cancelled), and for
// tasks in queue Queue and made from type Type, where given.
type TriggerOn struct {
	Queue  string   `json:"queue,omitempty"`
	Status []string `json:"status,omitempty"`
	Type   string   `json:"type,omitempty"`
}

// TriggerPut is the body of POST /schedule/ and POST /trigger/: a new
// schedule or trigger, or the next version of one of the caller's (a put
// replaces it whole; its firings so far stay).
type TriggerPut struct {
	// Cron is a five-field cron expression (minute hour day month
	// weekday) or a descriptor (@hourly, @daily, …), read in TZ (an IANA
	// zone, default UTC). A schedule has Cron or Every.
	Cron  string `json:"cron,omitempty"`
	Every string `json:"every,omitempty"` // a Kolejka time ("30s"), at least 1s
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	// On: what a result or run trigger fires on.
	On      *TriggerOn `json:"on,omitempty"`
	Overlap string     `json:"overlap,omitempty"` // a schedule's: allow, forbid, replace
	// Target is what a firing starts.
	Target TriggerTarget `json:"target"`
	TZ     string        `json:"tz,omitempty"`
}

// ParseTriggerPut reads the body of POST /schedule/ and POST /trigger/
// strictly: unknown keys, bad limits and a file without a reference are
// errors naming them. What the fields mean is checked by the server.
func ParseTriggerPut(body []byte) (TriggerPut, error) {
	var raw struct {
		Cron    string     `json:"cron"`
		Every   string     `json:"every"`
		Kind    string     `json:"kind"`
		Name    string     `json:"name"`
		On      *TriggerOn `json:"on"`
		Overlap string     `json:"overlap"`
		Target  struct {
			Files    map[string]TypeFile `json:"files"`
			Limits   json.RawMessage     `json:"limits"`
			Params   map[string]string   `json:"params"`
			Queue    string              `json:"queue"`
			Task     json.RawMessage     `json:"task"`
			Type     string              `json:"type"`
			Workflow json.RawMessage     `json:"workflow"`
		} `json:"target"`
		TZ string `json:"tz"`
	}
	if err := Decode(body, &raw); err != nil {
		return TriggerPut{}, fmt.Errorf("trigger put: %w", err)
	}
	out := TriggerPut{Cron: raw.Cron, Every: raw.Every, Kind: raw.Kind, Name: raw.Name, On: raw.On, Overlap: raw.Overlap, TZ: raw.TZ,
		Target: TriggerTarget{Files: raw.Target.Files, Params: raw.Target.Params, Queue: raw.Target.Queue, Task: raw.Target.Task, Type: raw.Target.Type}}
	var err error
	if out.Target.Limits, err = parseLimits(raw.Target.Limits, "trigger put: target.limits"); err != nil {
		return TriggerPut{}, err
	}
	for param, f := range out.Target.Files {
		if strings.TrimSpace(f.Reference) == "" {
			return TriggerPut{}, fmt.Errorf("trigger put: target.files[%q].reference: missing (the reference of the file's bytes)", param)
		}
	}
	if len(raw.Target.Workflow) > 0 && string(raw.Target.Workflow) != "null" {
		put, err := ParseWorkflowPut(raw.Target.Workflow)
		if err != nil {
			return TriggerPut{}, fmt.Errorf("trigger put: target.%w", err)
		}
		out.Target.Workflow = &put
	}
	if string(out.Target.Task) == "null" {
		out.Target.Task = nil
	}
	return out, nil
}

// TriggerPutAnswer answers a put: the name and its version (1, 2, …).
type TriggerPutAnswer struct {
	Envelope
	Name    string `json:"name"`
	Version int    `json:"version"`
}

// TriggerFire is one firing: the tick (an RFC 3339 time), the key of the
// task or run whose end fired it, or the request's id; and what it
// started (Key, a task's or a workflow run's: Started "task" or
// "workflow"), or why it started nothing (State "skipped": a forbidden
// overlap; "refused": the target did not validate then).
type TriggerFire struct {
	Fire    string `json:"fire"`
	Key     string `json:"key,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Started string `json:"started,omitempty"`
	State   string `json:"state"`
	// Status is where the work it started is: a task's lifecycle state
	// or its result's status, a run's state.
	Status string `json:"status,omitempty"`
	Time   string `json:"time"`
}

// Firing states, TriggerFire.State.
const (
	FireStarted = "started"
	FireSkipped = "skipped"
	FireRefused = "refused"
)

// TriggerInfo describes a schedule or trigger; Fires (its recent firings,
// newest first) only in TriggerAnswer.
type TriggerInfo struct {
	Cron       string        `json:"cron,omitempty"`
	Every      string        `json:"every,omitempty"`
	Fires      []TriggerFire `json:"fires,omitempty"`
	Kind       string        `json:"kind"`
	Name       string        `json:"name"`
	NextFire   string        `json:"next_fire,omitempty"` // a schedule's next tick, RFC 3339
	On         *TriggerOn    `json:"on,omitempty"`
	Overlap    string        `json:"overlap,omitempty"`
	Owner      string        `json:"owner"`
	Paused     bool          `json:"paused"`
	Target     string        `json:"target"` // what it starts, in words: "task", "type compile", "workflow"
	TimeCreate string        `json:"time_create"`
	TZ         string        `json:"tz,omitempty"`
	Version    int           `json:"version"`
}

// TriggersAnswer answers GET /schedule/ and GET /trigger/: the caller's
// schedules (triggers); a manager's: everyone's.
type TriggersAnswer struct {
	Envelope
	Triggers []TriggerInfo `json:"triggers"`
}

// TriggerAnswer answers GET, pause and resume of /schedule/<name>/ and
// /trigger/<name>/.
type TriggerAnswer struct {
	Envelope
	Trigger TriggerInfo `json:"trigger"`
}

// TriggerFireAnswer answers a webhook, POST /trigger/<name>/ with a JSON
// object of parameters as its body: what the request started (a replay
// with the same Idempotency-Key header answers the first request's).
type TriggerFireAnswer struct {
	Envelope
	Key     string `json:"key"`
	Started string `json:"started"` // "task" or "workflow"
}

// ParseWebhookParams reads a webhook's body: a JSON object of string
// values (numbers and booleans are taken as their JSON text); an empty
// body is no parameters.
func ParseWebhookParams(body []byte) (map[string]string, error) {
	var raw map[string]json.RawMessage
	if err := Decode(body, &raw); err != nil {
		return nil, fmt.Errorf("webhook: the body is not a JSON object of parameters: %w", err)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		var s string
		switch {
		case json.Unmarshal(v, &s) == nil:
			out[k] = s
		case len(v) > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9') || string(v) == "true" || string(v) == "false"):
			out[k] = string(v)
		default:
			return nil, fmt.Errorf("webhook: params[%q]: not a string, number or boolean", k)
		}
	}
	return out, nil
}
