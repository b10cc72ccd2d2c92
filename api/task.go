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
// it is.
type TaskAnswer struct {
	// Assignee names the node running the task; absent while it waits and
	// once it is resolved.
	Assignee string `json:"assignee,omitempty"`
	// Attempts counts the hand-outs of the task to a node.
	Attempts int `json:"attempts"`
	// Resolved says a result was accepted.
	Resolved bool `json:"resolved"`
	Envelope
	Task json.RawMessage `json:"task"`
}

// ResultAnswer answers POST /task/result/ and GET, HEAD and PUT of
// /task/result/<key>/: the result as stored.
type ResultAnswer struct {
	Result json.RawMessage `json:"result"`
	Envelope
}
