package api

// This file owns the answers of /task/. A task or a result is posted as
// its own JSON (package spec's formats), and answered as the server
// stored it: raw, for spec.ParseTask and spec.ParseResult to read with the
// name their errors should give it.

import "encoding/json"

// NewTaskAnswer answers POST /task/task/: the task as stored, with the key
// the server gave it as its "id".
type NewTaskAnswer struct {
	Envelope
	Task json.RawMessage `json:"task"`
}

// TaskAnswer answers GET, HEAD and PUT of /task/task/<key>/: the task as
// stored, and (our keys beside it, which Kolejka's clients ignore) where
// it is and, from servers announcing ExtTaskDetail, its lifecycle: state,
// queue, type, node, hand-outs, times and verdict.
type TaskAnswer struct {
	// Assignee names the node running the task; absent while it waits and
	// once it is resolved.
	Assignee string `json:"assignee,omitempty"`
	// Assignments are the task's hand-outs, oldest first (ExtTaskDetail).
	Assignments []Attempt `json:"assignments"`
	// Attempts counts the hand-outs of the task to a node.
	Attempts int `json:"attempts"`
	// Node is the node of the last hand-out, kept once the task is done
	// or cancelled (ExtTaskDetail).
	Node string `json:"node,omitempty"`
	// Origin is what the task was rendered from (a task type, its
	// version and parameters), absent for a task posted as it is
	// (ExtTaskDetail).
	Origin json.RawMessage `json:"origin,omitempty"`
	// Queue is the task's queue (ExtTaskDetail).
	Queue string `json:"queue"`
	// Resolved says a result was accepted.
	Resolved bool `json:"resolved"`
	// ResultStatus is the verdict of its result, if it has one
	// (ExtTaskDetail; "status" is the answer's own).
	ResultStatus string `json:"result_status,omitempty"`
	// Run is the workflow run the task is a step of, Step the step
	// ("step[i]" for an instance of a step with items) (ExtWorkflows).
	Run string `json:"run,omitempty"`
	// State is queued, running, done or cancelled (ExtTaskDetail).
	State string `json:"state"`
	Step  string `json:"step,omitempty"`
	Envelope
	Task json.RawMessage `json:"task"`
	// TimeCreate, TimeStart (the last hand-out) and TimeFinish (result
	// or cancel) are Django-style times (ExtTaskDetail).
	TimeCreate string `json:"time_create"`
	TimeFinish string `json:"time_finish,omitempty"`
	TimeStart  string `json:"time_start,omitempty"`
	// Type is the task type it was rendered from (ExtTaskDetail).
	Type string `json:"type,omitempty"`
}

// ResultAnswer answers POST /task/result/ and GET, HEAD and PUT of
// /task/result/<key>/: the result as stored.
type ResultAnswer struct {
	Result json.RawMessage `json:"result"`
	Envelope
}
