package api

// This file owns the messages of /workflow/ (our extension "workflows",
// docs/workflows.md): putting a run of a workflow, listing runs, reading
// one with every step and instance, cancelling and retrying it. The
// server keeps a run and advances it as its tasks end; a client only
// puts it and looks.

import (
	"encoding/json"
	"fmt"
	"strings"
)

// WorkflowPut is the body of POST /workflow/: a kolejka_workflow.json and
// what its steps need, each file as the reference of its bytes (uploaded
// before, as a task's).
type WorkflowPut struct {
	// Files gives each type step's file parameters: step → parameter →
	// the file (its name in the task folder, default the parameter's).
	Files map[string]map[string]TypeFile `json:"files,omitempty"`
	// Tasks gives the kolejka_task.json of each task folder the steps
	// name, its files with their references: folder → the task.
	Tasks map[string]json.RawMessage `json:"tasks,omitempty"`
	// Workflow is the kolejka_workflow.json.
	Workflow json.RawMessage `json:"workflow"`
}

// ParseWorkflowPut reads the body of POST /workflow/ strictly: unknown
// keys, a missing workflow and a file without a reference are errors
// naming them.
func ParseWorkflowPut(body []byte) (WorkflowPut, error) {
	var out WorkflowPut
	if err := Decode(body, &out); err != nil {
		return WorkflowPut{}, fmt.Errorf("workflow put: %w", err)
	}
	if len(out.Workflow) == 0 || string(out.Workflow) == "null" {
		return WorkflowPut{}, fmt.Errorf("workflow put: workflow: missing (the kolejka_workflow.json object)")
	}
	for step, files := range out.Files {
		for param, f := range files {
			if strings.TrimSpace(f.Reference) == "" {
				return WorkflowPut{}, fmt.Errorf("workflow put: files[%q][%q].reference: missing (the reference of the file's bytes)", step, param)
			}
		}
	}
	return out, nil
}

// WorkflowPutAnswer answers POST /workflow/: the run's key.
type WorkflowPutAnswer struct {
	Key string `json:"key"`
	Envelope
}

// WorkflowInstance is one instance of a step: its state in the run
// (waiting, ready, submitted, ok, failed, skipped, cancelled), the status
// of its last try, and its current task, where it runs and when.
type WorkflowInstance struct {
	Attempt    int      `json:"attempt,omitempty"`
	Earlier    []string `json:"earlier,omitempty"` // task keys of earlier tries, oldest first
	Index      int      `json:"index"`
	Item       string   `json:"item,omitempty"`
	Node       string   `json:"node,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	State      string   `json:"state"`
	Status     string   `json:"status,omitempty"`
	TaskKey    string   `json:"task_key,omitempty"`
	TaskState  string   `json:"task_state,omitempty"` // the task's lifecycle state (queued, running, done, cancelled)
	TimeAssign string   `json:"time_assign,omitempty"`
	TimeCreate string   `json:"time_create,omitempty"`
	TimeFinish string   `json:"time_finish,omitempty"`
}

// WorkflowStep is one step of a run, with its instances (none yet for an
// items_from step whose list is not read).
type WorkflowStep struct {
	After       []string           `json:"after,omitempty"`
	AfterAny    []string           `json:"after_any,omitempty"`
	AfterFailed []string           `json:"after_failed,omitempty"`
	Instances   []WorkflowInstance `json:"instances"`
	Name        string             `json:"name"`
	Reason      string             `json:"reason,omitempty"`
	State       string             `json:"state"`
	Task        string             `json:"task,omitempty"`
	Type        string             `json:"type,omitempty"`
}

// WorkflowInfo describes a run: running, ok, failed or cancelled; Steps
// only in WorkflowAnswer.
type WorkflowInfo struct {
	Key        string         `json:"key"`
	Owner      string         `json:"owner"`
	State      string         `json:"state"`
	Steps      []WorkflowStep `json:"steps,omitempty"`
	TimeCreate string         `json:"time_create"`
	TimeFinish string         `json:"time_finish,omitempty"`
}

// WorkflowAnswer answers GET /workflow/<key>/ and its cancel and retry.
type WorkflowAnswer struct {
	Envelope
	Workflow WorkflowInfo `json:"workflow"`
}

// WorkflowsAnswer answers GET /workflow/: the caller's runs (a
// manager's: all), oldest first.
type WorkflowsAnswer struct {
	Envelope
	Workflows []WorkflowInfo `json:"workflows"`
}
