package workflow

// This file owns a run's state machine: the instances of its steps, what
// moves them (Submitted, Ended, Expand, Append, Cancel, Retry) and the
// JSON form a store keeps after every transition.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/kolejka-go/kolejka/spec"
)

// State is an instance's state.
type State string

// The states of an instance; the last four are ends.
const (
	Waiting   State = "waiting"   // its step's condition is not yet decided
	Ready     State = "ready"     // to be submitted as a task
	Submitted State = "submitted" // its task (TaskKey) is queued or running
	OK        State = "ok"        // its task ended with status OK
	Failed    State = "failed"    // its task ended otherwise, no retry left
	Skipped   State = "skipped"   // its step's condition can no longer hold
	Cancelled State = "cancelled" // the run was cancelled or aborted
)

// Ended reports whether s is an end.
func (s State) Ended() bool { return s == OK || s == Failed || s == Skipped || s == Cancelled }

// RunState is a run's overall state.
type RunState string

// A run is running until every instance of every step has ended; then it
// is cancelled (Cancel), failed (an instance failed, a list of items was
// refused, or an abort cancelled the rest) or ok.
const (
	Running     RunState = "running"
	RunOK       RunState = "ok"
	RunFailed   RunState = "failed"
	RunCanceled RunState = "cancelled"
)

// ID names an instance: its step and its place in the step's items (0 for
// a step that runs once).
type ID struct {
	Step  string
	Index int
}

// String is "step" or "step[index]".
func (id ID) String() string { return fmt.Sprintf("%s[%d]", id.Step, id.Index) }

// Instance is one run of a step: a copy, as Run's methods hand it out.
type Instance struct {
	Step    string      `json:"-"`
	Index   int         `json:"index"`
	Item    string      `json:"item,omitempty"` // "" for a step without items
	State   State       `json:"state"`
	Status  spec.Status `json:"status,omitempty"`   // of the last try that ended
	TaskKey string      `json:"task_key,omitempty"` // of the current try
	Attempt int         `json:"attempt,omitempty"`  // tries submitted since the last Retry of the run
	Earlier []string    `json:"earlier,omitempty"`  // task keys of earlier tries, oldest first
	Reason  string      `json:"reason,omitempty"`   // why skipped
}

// ID is the instance's ID.
func (in Instance) ID() ID { return ID{in.Step, in.Index} }

// NeedItems says that step's items are to be read from its source's result
// (the file Path of the task TaskKey) and given to Expand.
type NeedItems struct {
	Step    string
	From    Source
	TaskKey string
}

// Binding is one input of an instance: the file Path of the result of task
// TaskKey (instance From) goes to Dest in the instance's task folder.
type Binding struct {
	Dest    string
	From    ID
	TaskKey string
	Path    string
}

// Run is the state of one run of a workflow. It reads no clock and does no
// I/O: its caller submits, cancels, reads results and persists it (as
// JSON, after every transition). Its methods are not safe for concurrent
// use; a server holds one run's lock (or transaction) around each.
type Run struct {
	s    runJSON
	keys map[string]ID // every task key ever given, to its instance
}

type runJSON struct {
	OnFailure string              `json:"on_failure"`
	Final     string              `json:"final,omitempty"`
	Aborted   bool                `json:"aborted,omitempty"`
	Cancelled bool                `json:"cancelled,omitempty"`
	Steps     map[string]*stepRun `json:"steps"`
}

type stepRun struct {
	Step      *Step       `json:"step"`
	Expanded  bool        `json:"expanded"`          // its instances are known
	Outcome   State       `json:"outcome,omitempty"` // how an items_from step ended before its items came
	Reason    string      `json:"reason,omitempty"`
	Instances []*Instance `json:"instances,omitempty"`
}

// NewRun starts a run of w (from Parse): steps that run after nothing are
// ready at once.
func NewRun(w *Workflow) *Run {
	r := &Run{s: runJSON{OnFailure: w.OnFailure, Final: w.Final, Steps: map[string]*stepRun{}}, keys: map[string]ID{}}
	if r.s.OnFailure == "" {
		r.s.OnFailure = Continue
	}
	r.add(w.Steps)
	r.advance()
	return r
}

func (r *Run) add(steps map[string]*Step) {
	for name, s := range steps {
		sr := &stepRun{Step: s}
		switch {
		case len(s.Items) > 0:
			sr.Expanded = true
			for i, it := range s.Items {
				sr.Instances = append(sr.Instances, &Instance{Index: i, Item: it, State: Waiting})
			}
		case s.ItemsFrom == nil:
			sr.Expanded = true
			sr.Instances = []*Instance{{State: Waiting}}
		}
		r.s.Steps[name] = sr
	}
}

// Steps lists the run's step names, sorted.
func (r *Run) Steps() []string { return slices.Sorted(maps.Keys(r.s.Steps)) }

// Step returns a copy of a step's definition.
func (r *Run) Step(name string) (*Step, bool) {
	sr, ok := r.s.Steps[name]
	if !ok {
		return nil, false
	}
	data, _ := json.Marshal(sr.Step)
	var s Step
	_ = json.Unmarshal(data, &s)
	return &s, true
}

// Instances returns copies of a step's instances in item order: none for
// an items_from step before Expand, or one that ended without them.
func (r *Run) Instances(step string) []Instance {
	sr, ok := r.s.Steps[step]
	if !ok {
		return nil
	}
	out := make([]Instance, 0, len(sr.Instances))
	for _, in := range sr.Instances {
		out = append(out, r.copyOf(step, in))
	}
	return out
}

// Instance returns a copy of one instance.
func (r *Run) Instance(id ID) (Instance, bool) {
	in := r.find(id)
	if in == nil {
		return Instance{}, false
	}
	return r.copyOf(id.Step, in), true
}

// StepState sums a step up: its outcome when it ended before its items
// came, waiting before they come, else the state of its instances when
// they agree and otherwise the first, in instance order, that is not ok.
func (r *Run) StepState(name string) (State, string) {
	sr, ok := r.s.Steps[name]
	switch {
	case !ok:
		return "", ""
	case sr.Outcome != "":
		return sr.Outcome, sr.Reason
	case !sr.Expanded:
		return Waiting, ""
	}
	for _, in := range sr.Instances {
		if in.State != OK {
			return in.State, in.Reason
		}
	}
	return OK, ""
}

func (r *Run) copyOf(step string, in *Instance) Instance {
	c := *in
	c.Step = step
	c.Earlier = slices.Clone(in.Earlier)
	return c
}

func (r *Run) find(id ID) *Instance {
	sr, ok := r.s.Steps[id.Step]
	if !ok || id.Index < 0 || id.Index >= len(sr.Instances) {
		return nil
	}
	return sr.Instances[id.Index]
}

// Ready lists the instances to submit now (ready, not yet submitted), by
// step name and item order. Each is submitted as one task and reported
// with Submitted.
func (r *Run) Ready() []ID {
	var out []ID
	for _, name := range r.Steps() {
		for _, in := range r.s.Steps[name].Instances {
			if in.State == Ready {
				out = append(out, ID{name, in.Index})
			}
		}
	}
	return out
}

// NeedItems lists the items_from steps whose condition holds and whose
// source ended OK: the caller reads each one's list and calls Expand.
func (r *Run) NeedItems() []NeedItems {
	var out []NeedItems
	for _, name := range r.Steps() {
		sr := r.s.Steps[name]
		if sr.Expanded || r.s.Cancelled || (r.s.Aborted && name != r.s.Final) {
			continue
		}
		if hold, _ := r.condition(name); hold {
			src := r.s.Steps[sr.Step.ItemsFrom.Step].Instances[0]
			out = append(out, NeedItems{Step: name, From: *sr.Step.ItemsFrom, TaskKey: src.TaskKey})
		}
	}
	return out
}

// Submitted records that instance id was submitted as task key. Repeating
// it with the same key changes nothing; an instance that is not ready, or
// a key given before, is refused: no instance is submitted twice.
func (r *Run) Submitted(id ID, key string) error {
	in := r.find(id)
	switch {
	case in == nil:
		return fmt.Errorf("unable to record a submission: no instance %s", id)
	case key == "":
		return fmt.Errorf("unable to record a submission of %s: an empty task key", id)
	case in.TaskKey == key || slices.Contains(in.Earlier, key):
		return nil // a replay
	case in.State != Ready:
		return fmt.Errorf("unable to record a submission of %s: it is %s, not ready", id, in.State)
	}
	if other, ok := r.keys[key]; ok {
		return fmt.Errorf("unable to record a submission of %s: task %s is %s's", id, key, other)
	}
	in.State, in.TaskKey, in.Status, in.Reason = Submitted, key, "", ""
	in.Attempt++
	r.keys[key] = id
	return nil
}

// Ended applies the end of task key with status: OK makes the instance ok
// and lets its dependents go on; a failure is tried again (the instance is
// ready again, for a new task) while the step's retry allows, else the
// instance has failed, and with on_failure "abort" every instance that has
// not ended is cancelled but the final step's: cancel lists the task keys
// the caller must cancel. The end of a task the run has already applied,
// or of an earlier try, or one that came after the instance was cancelled,
// changes nothing. An unknown key or an invalid status is an error.
func (r *Run) Ended(key string, status spec.Status) (cancel []string, err error) {
	id, ok := r.keys[key]
	if !ok {
		return nil, fmt.Errorf("unable to apply the end of task %s: not a task of this run", key)
	}
	if !status.Valid() {
		return nil, fmt.Errorf("unable to apply the end of task %s: %q is not a status", key, status)
	}
	in := r.find(id)
	if in.TaskKey != key || in.State != Submitted {
		return nil, nil // a replay, an earlier try, or too late
	}
	step := r.s.Steps[id.Step].Step
	switch {
	case status == spec.StatusOK:
		in.State, in.Status = OK, status
	case step.retries(status, in.Attempt):
		in.State, in.Status, in.TaskKey = Ready, status, ""
		in.Earlier = append(in.Earlier, key)
	default:
		in.State, in.Status = Failed, status
		cancel = r.failed()
	}
	r.advance()
	return cancel, nil
}

// failed applies on_failure after a final failure.
func (r *Run) failed() []string {
	if r.s.OnFailure != Abort || r.s.Aborted {
		return nil
	}
	r.s.Aborted = true
	return r.cancel(r.s.Final)
}

// cancel ends every instance that has not ended, but spare's, and returns
// the task keys of those that were submitted.
func (r *Run) cancel(spare string) []string {
	var keys []string
	for _, name := range r.Steps() {
		if name == spare {
			continue
		}
		sr := r.s.Steps[name]
		if !sr.Expanded {
			sr.Expanded, sr.Outcome, sr.Reason = true, Cancelled, ""
		}
		for _, in := range sr.Instances {
			if in.State.Ended() {
				continue
			}
			if in.State == Submitted {
				keys = append(keys, in.TaskKey)
			}
			in.State, in.Reason = Cancelled, ""
		}
	}
	return keys
}

// Expand gives an items_from step its items: data is the list file, a JSON
// list of strings, each a file name (no "/", not "." or ".."), no repeats,
// within MaxInstances for the whole run. A list refused makes the step
// fail with the refusal as its reason (and on_failure applies: cancel as
// for Ended); the error names the list's file and the item. Expanding a
// step again with the same list changes nothing.
func (r *Run) Expand(step string, data []byte) (cancel []string, err error) {
	sr, ok := r.s.Steps[step]
	if !ok || sr.Step.ItemsFrom == nil {
		return nil, fmt.Errorf("unable to expand %q: not a step with items_from", step)
	}
	file := sr.Step.ItemsFrom.String()
	items, perr := r.readItems(step, data, file)
	if sr.Expanded {
		if perr == nil && sr.Outcome == "" && slices.Equal(items, itemsOf(sr)) {
			return nil, nil // a replay
		}
		return nil, fmt.Errorf("unable to expand %q: its items were already given", step)
	}
	if !slices.ContainsFunc(r.NeedItems(), func(n NeedItems) bool { return n.Step == step }) {
		return nil, fmt.Errorf("unable to expand %q: it is not waiting for its items", step)
	}
	sr.Expanded = true
	if perr != nil {
		sr.Outcome, sr.Reason = Failed, perr.Error()
		cancel = r.failed()
		r.advance()
		return cancel, perr
	}
	for i, it := range items {
		sr.Instances = append(sr.Instances, &Instance{Index: i, Item: it, State: Waiting})
	}
	r.advance()
	return nil, nil
}

func (r *Run) readItems(step string, data []byte, file string) ([]string, error) {
	p := spec.NewProblems(file)
	field := spec.EntryPath("tasks", step) + ".items_from"
	var raw json.RawMessage
	switch {
	case len(data) > MaxFileSize:
		p.Add(field, "%d bytes: more than %d", len(data), MaxFileSize)
	case json.Unmarshal(data, &raw) != nil:
		p.Add(field, "not JSON: expected a list of strings")
	default:
		list, ok := strList(p, field, bytes.TrimSpace(raw))
		if !ok {
			break
		}
		if n := r.instances() - 1 + len(list); n > MaxInstances {
			p.Add(field, "%d items: the run would have %d instances, more than %d", len(list), n, MaxInstances)
			break
		}
		for i, it := range list {
			if problem := itemProblem(it, list[:i]); problem != "" {
				p.Add(fmt.Sprintf("%s[%d]", field, i), "%s", problem)
			}
		}
		if p.Err() == nil {
			return list, nil
		}
	}
	return nil, p.Err()
}

func itemsOf(sr *stepRun) []string {
	var out []string
	for _, in := range sr.Instances {
		out = append(out, in.Item)
	}
	return out
}

// instances counts the run's instances as the bound does: an items_from
// step not yet expanded counts one.
func (r *Run) instances() int {
	n := 0
	for _, sr := range r.s.Steps {
		if sr.Expanded {
			n += len(sr.Instances)
		} else {
			n++
		}
	}
	return n
}

// Append adds the steps of a kolejka_workflow.json a step's result holds
// (data; file names it in errors) to the run, with Parse's rules over the
// whole run: names new and unique, references to this document's steps or
// the run's, no cycle, inputs from ancestors, nothing after final, and
// MaxSteps and MaxInstances for the run as it would be. It may not set
// on_failure or final. A refusal changes nothing; so does appending to a
// cancelled run or once the final step has been submitted.
//
// A server applies it with the Ended of the step whose result holds the
// file, before submitting anything: the final step may have become ready.
func (r *Run) Append(data []byte, file string) error {
	switch {
	case r.s.Cancelled:
		return fmt.Errorf("unable to append %s: the run is cancelled", file)
	case r.s.Final != "" && r.finalStarted():
		return fmt.Errorf("unable to append %s: the final step %q has started", file, r.s.Final)
	}
	p := spec.NewProblems(file)
	w := read(p, data, false)
	if w == nil {
		return p.Err()
	}
	for _, name := range slices.Sorted(maps.Keys(w.Steps)) {
		if _, dup := r.s.Steps[name]; dup {
			p.Add(spec.EntryPath("tasks", name), "the run already has a step %q", name)
		}
	}
	if err := p.Err(); err != nil {
		return err
	}
	old := map[string]*Step{}
	for name, sr := range r.s.Steps {
		old[name] = sr.Step
	}
	checkGraph(p, w.Steps, old, r.s.Final, len(old)+len(w.Steps), r.instances()+count(w.Steps))
	if err := p.Err(); err != nil {
		return err
	}
	r.add(w.Steps)
	r.advance()
	return nil
}

func (r *Run) finalStarted() bool {
	for _, in := range r.s.Steps[r.s.Final].Instances {
		if in.Attempt > 0 || (in.State != Waiting && in.State != Ready) {
			return true
		}
	}
	return false
}

// Cancel cancels the run: every instance that has not ended is cancelled,
// the final step's too (an explicit cancel stops everything), and the
// task keys of those submitted are returned for the caller to cancel.
func (r *Run) Cancel() []string {
	r.s.Cancelled = true
	return r.cancel("")
}

// Retry resumes an ended run: every instance that failed, was cancelled
// or skipped, and every items_from step that ended without items, waits
// again (tries counted afresh); OK instances keep their results and task
// keys. The final step runs again when anything else does. Retrying a run
// still running, or one with nothing to retry, is refused.
func (r *Run) Retry() error {
	if r.State() == Running {
		return errors.New("unable to retry the run: it is still running")
	}
	again := false
	for _, name := range r.Steps() {
		if name == r.s.Final {
			continue
		}
		again = r.reset(r.s.Steps[name], false) || again
	}
	if r.s.Final != "" {
		// The final step runs last whatever happened: again after anything
		// else runs again, else only if it did not end OK itself.
		again = r.reset(r.s.Steps[r.s.Final], again) || again
	}
	if !again {
		return errors.New("unable to retry the run: nothing failed, was cancelled or skipped")
	}
	r.s.Aborted, r.s.Cancelled = false, false
	r.advance()
	return nil
}

// reset puts a step's instances that did not end OK (all of them with
// all) back to waiting.
func (r *Run) reset(sr *stepRun, all bool) bool {
	changed := false
	if sr.Outcome != "" {
		sr.Expanded, sr.Outcome, sr.Reason = false, "", ""
		changed = true
	}
	for _, in := range sr.Instances {
		if !in.State.Ended() || (in.State == OK && !all) {
			continue
		}
		if in.TaskKey != "" {
			in.Earlier = append(in.Earlier, in.TaskKey)
		}
		in.State, in.Status, in.TaskKey, in.Reason, in.Attempt = Waiting, "", "", "", 0
		changed = true
	}
	return changed
}

// State is the run's overall state.
func (r *Run) State() RunState {
	failed := false
	for _, sr := range r.s.Steps {
		if !sr.Expanded {
			return Running
		}
		failed = failed || sr.Outcome == Failed || sr.Outcome == Cancelled
		for _, in := range sr.Instances {
			if !in.State.Ended() {
				return Running
			}
			failed = failed || in.State == Failed || in.State == Cancelled
		}
	}
	switch {
	case r.s.Cancelled:
		return RunCanceled
	case failed:
		return RunFailed
	}
	return RunOK
}

// Aborted reports whether on_failure "abort" has cancelled the run's rest.
func (r *Run) Aborted() bool { return r.s.Aborted }

// stepEnded reports whether every instance of a step has ended, and
// whether all of them ended OK.
func (r *Run) stepEnded(name string) (ended, ok bool) {
	sr := r.s.Steps[name]
	if !sr.Expanded {
		return false, false
	}
	if sr.Outcome != "" {
		return true, false
	}
	ok = true
	for _, in := range sr.Instances {
		if !in.State.Ended() {
			return false, false
		}
		ok = ok && in.State == OK
	}
	return true, ok
}

// condition decides a step: hold means it may run now, never that it
// cannot run any more (why says why).
func (r *Run) condition(name string) (hold bool, never string) {
	s := r.s.Steps[name].Step
	if name == r.s.Final {
		// Final runs once every other step has ended, whatever their
		// statuses: its lists only order it.
		for other := range r.s.Steps {
			if ended, _ := r.stepEnded(other); other != name && !ended {
				return false, ""
			}
		}
		return r.sourcesReady(s)
	}
	pending := false
	for _, d := range s.After {
		ended, ok := r.stepEnded(d)
		switch {
		case !ended:
			pending = true
		case !ok:
			return false, fmt.Sprintf("after: %q did not end ok", d)
		}
	}
	for _, d := range s.AfterAny {
		if ended, _ := r.stepEnded(d); !ended {
			pending = true
		}
	}
	if len(s.AfterFailed) > 0 {
		allEnded, anyNotOK := true, false
		for _, d := range s.AfterFailed {
			ended, ok := r.stepEnded(d)
			allEnded = allEnded && ended
			anyNotOK = anyNotOK || (ended && !ok)
		}
		switch {
		case !allEnded:
			pending = true
		case !anyNotOK:
			return false, "after_failed: every step named ended ok"
		}
	}
	if pending {
		return false, ""
	}
	return r.sourcesReady(s)
}

// sourcesReady: the steps a step takes inputs or items from have ended
// (a step reached through after_any may end before its own ancestors),
// and an items_from source ended OK.
func (r *Run) sourcesReady(s *Step) (bool, string) {
	for _, src := range s.Inputs {
		if ended, _ := r.stepEnded(src.Step); !ended {
			return false, ""
		}
	}
	if s.ItemsFrom != nil {
		ended, ok := r.stepEnded(s.ItemsFrom.Step)
		switch {
		case !ended:
			return false, ""
		case !ok:
			return false, fmt.Sprintf("items_from: %q did not end ok", s.ItemsFrom.Step)
		}
	}
	return true, ""
}

// advance moves waiting instances on until nothing changes: ready when
// their step's condition holds, skipped when it never can; after an abort
// all but the final step's are cancelled. The final step goes back to
// waiting if Append gave it more to wait for.
func (r *Run) advance() {
	for changed := true; changed; {
		changed = false
		for _, name := range r.Steps() {
			sr := r.s.Steps[name]
			if r.s.Cancelled || (r.s.Aborted && name != r.s.Final) {
				if !sr.Expanded {
					sr.Expanded, sr.Outcome = true, Cancelled
					changed = true
				}
				for _, in := range sr.Instances {
					if in.State == Waiting || in.State == Ready {
						in.State = Cancelled
						changed = true
					}
				}
				continue
			}
			hold, never := r.condition(name)
			if !sr.Expanded {
				if never != "" {
					sr.Expanded, sr.Outcome, sr.Reason = true, Skipped, never
					changed = true
				}
				continue
			}
			for _, in := range sr.Instances {
				switch {
				case in.State == Waiting && hold:
					in.State = Ready
					changed = true
				case in.State == Waiting && never != "":
					in.State, in.Reason = Skipped, never
					changed = true
				case in.State == Ready && !hold && in.Attempt == 0:
					in.State = Waiting
					changed = true
				}
			}
		}
	}
}

// MarshalJSON writes the run's whole state; UnmarshalJSON reads it back
// into a run that behaves identically.
func (r *Run) MarshalJSON() ([]byte, error) { return json.Marshal(r.s) }

// UnmarshalJSON reads a run MarshalJSON wrote, strictly.
func (r *Run) UnmarshalJSON(data []byte) error {
	var s runJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return fmt.Errorf("unable to read a run: %w", err)
	}
	keys := map[string]ID{}
	for name, sr := range s.Steps {
		if sr == nil || sr.Step == nil {
			return fmt.Errorf("unable to read a run: step %q has no definition", name)
		}
		for i, in := range sr.Instances {
			if in == nil || in.Index != i {
				return fmt.Errorf("unable to read a run: step %q: instance %d out of place", name, i)
			}
			for _, k := range append(slices.Clone(in.Earlier), in.TaskKey) {
				if k != "" {
					keys[k] = ID{name, i}
				}
			}
		}
	}
	if s.Steps == nil {
		s.Steps = map[string]*stepRun{}
	}
	r.s, r.keys = s, keys
	return nil
}
