package api

// This file owns the messages of the task lifecycle (our extensions
// ExtTaskList, ExtTaskDetail, ExtCancel, ExtClone): a user's listing of
// tasks, a task's state and history beside it in TaskAnswer, cancelling
// and cloning.
//
// A cancelled task's result is answered, also to a client waiting for it
// (?wait=N), with a FAIL saying "Task KEY was cancelled" and "cancelled":
// true (Cancelled): Kolejka's clients see a FAIL, an error, and stop; ours
// tell it from other refusals by the key.

// A task's states as the lifecycle's messages name them.
const (
	StateQueued    = "queued"    // waiting for a node
	StateRunning   = "running"   // handed to a node
	StateDone      = "done"      // it has its result
	StateCancelled = "cancelled" // cancelled before it had one; it never will
)

// States are the task states, in lifecycle order.
var States = []string{StateQueued, StateRunning, StateDone, StateCancelled}

// Cancelled is the answer about the result of a cancelled task.
func Cancelled(key string) *Failure {
	f := Fail("Task " + key + " was cancelled")
	f.Cancelled = true
	return f
}

// Attempt is one hand-out of a task to a node.
type Attempt struct {
	Attempt    int    `json:"attempt"`
	Node       string `json:"node"`
	TimeAssign string `json:"time_assign"`
}

// TaskSummary is one task of GET /task/list/.
type TaskSummary struct {
	Attempts   int    `json:"attempts"`
	Key        string `json:"key"`
	Node       string `json:"node,omitempty"` // the node of the last hand-out
	Owner      string `json:"owner"`
	Queue      string `json:"queue"`
	Run        string `json:"run,omitempty"` // the workflow run it is a step of (ExtWorkflows)
	State      string `json:"state"`
	Step       string `json:"step,omitempty"` // with run: "step" or "step[i]" for an instance of a step with items
	TimeCreate string `json:"time_create"`
	TimeFinish string `json:"time_finish,omitempty"`
	Type       string `json:"type,omitempty"`
}

// TaskListAnswer answers GET /task/list/?state=&queue=&type=&all=1&before=&limit=:
// tasks newest first; Next, if not "", is the before= of the next page.
type TaskListAnswer struct {
	Next string `json:"next"`
	Envelope
	Tasks []TaskSummary `json:"tasks"`
}

// CancelAnswer answers POST /task/task/<key>/cancel/: the task is
// cancelled now; Was is the state it was in ("cancelled": it already
// was, nothing changed).
type CancelAnswer struct {
	State string `json:"state"`
	Envelope
	Was string `json:"was"`
}
