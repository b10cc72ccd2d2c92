// Package workflow owns workflows: kolejka_workflow.json, a graph of steps
// that are each an ordinary Kolejka task (a task folder, or an instance of
// a task type), and the state machine of a run of one, as Argo, DAGMan and
// Salt's orchestrations run theirs. It knows no HTTP, no store and no
// clock: a server parses, advances and persists runs through it.
//
// The lifecycle:
//
//  1. Parse reads kolejka_workflow.json strictly: every problem at once,
//     each a *spec.Error naming its field (`tasks["test"].after[0]`).
//     Names follow spec.CheckName; paths stay inside their folders; the
//     graph has no cycle (named as a → b → a), an input's or items_from's
//     step is an ancestor of the step that reads it, nothing runs after
//     the final step, and a run stays within MaxSteps and MaxInstances.
//  2. NewRun starts a run. Each step has instances: one, one per item of
//     "items", or, for "items_from", one per item of a list a source step
//     writes, known when NeedItems asks for it and the caller gives it to
//     Expand (a bad list fails the step, naming the item).
//  3. An instance is waiting until its step's condition is decided, then
//     ready, or skipped when it can never hold (and so, in turn, are the
//     steps that need it). Conditions: "after" needs each named step to
//     end with every instance OK; "after_any" needs each to have ended,
//     whatever happened; "after_failed" needs each to have ended and one
//     of them not OK (failed, skipped or cancelled). The steps an input or
//     the item list comes from must also have ended, and an items_from
//     source must have ended OK. The final step waits for every other step
//     to end and then runs whatever happened (its lists only order it).
//  4. The caller submits each instance Ready lists as a task (RenderTask or
//     Params substitute {item}; Inputs lists the result files to bind into
//     its folder) and reports the task's key with Submitted.
//  5. Ended applies a task's end. OK: the instance is ok. A failure: ready
//     again for a new task while the step's retry allows (attempts count
//     every try; "on" lists the statuses retried, all failures if empty),
//     else failed; with on_failure "abort" every instance that has not
//     ended is then cancelled, but the final step's, and Ended returns the
//     task keys to cancel.
//  6. A step whose result holds a kolejka_workflow.json extends the run:
//     Append, with Parse's rules over the whole run; a refusal changes
//     nothing. The caller appends together with that step's Ended.
//  7. The run ends when every instance has: State is ok, failed (something
//     failed or was aborted) or cancelled. Cancel cancels every instance
//     that has not ended, the final step's too, and returns the task keys
//     to cancel. Retry resumes an ended run: what failed, was cancelled or
//     skipped waits again; OK instances keep their results and task keys;
//     the final step runs again.
//
// A run is durable: MarshalJSON writes all of it and UnmarshalJSON reads a
// run that behaves identically, so a store persists it after every
// transition. Every transition is idempotent: a replayed Submitted,
// Ended or Expand (after a crash) changes nothing, the end of an earlier
// try or of a cancelled task is ignored, and no instance is submitted
// twice. Everything is listed in a fixed order: step names sorted, items
// in their order.
package workflow
