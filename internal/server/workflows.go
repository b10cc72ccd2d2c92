package server

// This file owns the driver of workflow runs (issue 17): the server, not a
// client, advances a run as its tasks end. Each advance is one store
// transaction (store.AdvanceRun) that reads the run, applies the ends of
// its submitted tasks (a result's status; a task cancelled on its own ends
// as SE), gives items_from steps their lists, submits the instances that
// became ready (their tasks made and checked as every submission is:
// prepare, typeTask) and cancels what an abort cancels, then saves the
// run: a crash at any moment leaves the run as it was before or after the
// whole advance, so no step is lost and none submitted twice.
//
// When a run advances: after a result of one of its tasks is accepted,
// after one of its tasks is cancelled or given a server-made SE result,
// at startup for every running run (what a crash left undone), and at
// every expiry pass for every running run (a safety net).
//
// An items_from list is a result file: its bytes are read from the blob
// store before the transaction (at most workflow.MaxFileSize); a pass that
// finds a list it has not read commits what it could do, reads the list
// and advances again.
//
// An instance whose task cannot be made (a rendering refused, an input
// file the source's result lacks, a queue refusal) is recorded as
// submitted under a key of no task ("refused-…") that ends at once with
// SE; runSources.Refused keeps why, for `workflow show`.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/auth"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/tasktype"
	"github.com/kolejka-go/kolejka/internal/workflow"
	"github.com/kolejka-go/kolejka/spec"
)

// runSources is what runs.steps holds: what the run's steps are made of,
// as the put gave them, and why instances could not be made.
type runSources struct {
	Files   map[string]map[string]api.TypeFile `json:"files,omitempty"`
	Tasks   map[string]json.RawMessage         `json:"tasks,omitempty"`   // by task folder
	Refused map[string]string                  `json:"refused,omitempty"` // refused key → why
}

// refusedPrefix starts the keys of instances whose task could not be made.
const refusedPrefix = "refused-"

// maxAdvancePasses bounds the passes of one advance: each reads the lists
// the one before found missing (a list read lets a step expand, whose end
// may need another list only once its tasks ran, so few passes suffice).
const maxAdvancePasses = 8

// runOp is what an advance does besides applying ends and submitting:
// cancel or retry the run. nil: nothing.
type runOp func(r *workflow.Run) (cancel []string, err error)

// advanceRunOf advances the run task key is a step of, if any; errors are
// logged (the next pass of the expiry loop tries again).
func (s *Server) advanceRunOf(ctx context.Context, taskKey string) {
	run, err := s.db.RunOfTask(ctx, taskKey)
	if err != nil {
		s.log.Error("unable to find the run of a task", "task", taskKey, "error", err)
		return
	}
	if run == "" {
		return
	}
	if err := s.advanceRun(ctx, run, nil); err != nil {
		s.log.Error("unable to advance a workflow run", "run", run, "task", taskKey, "error", err)
	}
}

// advanceRunning advances every running run (startup, expiry passes).
func (s *Server) advanceRunning(ctx context.Context) {
	keys, err := s.db.RunningRuns(ctx)
	if err != nil {
		s.log.Error("unable to list running workflow runs", "error", err)
		return
	}
	for _, k := range keys {
		if err := s.advanceRun(ctx, k, nil); err != nil {
			s.log.Error("unable to advance a workflow run", "run", k, "error", err)
		}
	}
}

// advanceRun advances run key, doing op (if not nil) in the same
// transaction after the ends are applied. op's error is returned as it is
// (a refusal of a retry), with nothing changed.
func (s *Server) advanceRun(ctx context.Context, key string, op runOp) error {
	lists := map[string][]byte{} // task key + "\x00" + path → the file (nil: the result has none)
	for range maxAdvancePasses {
		var missing []workflow.NeedItems
		var cancelled []string
		queued, err := s.db.AdvanceRun(ctx, key, s.now(), func(a *store.RunTx) error {
			var err error
			missing, cancelled, err = s.advanceTx(ctx, a, lists, op)
			return err
		})
		if queued {
			s.queue.Signal()
		}
		for _, k := range cancelled {
			s.results.Signal(k)
		}
		if err != nil || len(missing) == 0 {
			return err
		}
		op = nil // done and committed
		for _, n := range missing {
			data, err := s.resultFile(ctx, n.TaskKey, n.From.Path)
			if err != nil {
				return err
			}
			lists[n.TaskKey+"\x00"+n.From.Path] = data
		}
	}
	return nil
}

// resultFile reads file path of task key's result, nil if it has none; a
// file larger than workflow.MaxFileSize is read up to one byte past it
// (the engine refuses it, naming its size).
func (s *Server) resultFile(ctx context.Context, key, path string) ([]byte, error) {
	hash, _, err := s.db.ResultFileBlob(ctx, key, path)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	f, err := s.blobs.Open(hash)
	if err != nil {
		return nil, fmt.Errorf("unable to read a result file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, workflow.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("unable to read a result file: %w", err)
	}
	return data, nil
}

// advanceTx is one pass, inside the store's transaction. It returns the
// lists it needs and has not got, and the tasks it cancelled.
func (s *Server) advanceTx(ctx context.Context, a *store.RunTx, lists map[string][]byte, op runOp) (missing []workflow.NeedItems, cancelled []string, err error) {
	run := &workflow.Run{}
	if err := json.Unmarshal(a.Row.Run, run); err != nil {
		return nil, nil, fmt.Errorf("unable to read run %s: %w", a.Row.Key, err)
	}
	var src runSources
	if err := json.Unmarshal(a.Row.Steps, &src); err != nil {
		return nil, nil, fmt.Errorf("unable to read the steps of run %s: %w", a.Row.Key, err)
	}
	if op == nil && a.Row.State != store.RunRunning {
		return nil, nil, nil
	}
	var toCancel []string
	if err := applyEnds(a, run, &toCancel); err != nil {
		return nil, nil, err
	}
	if op != nil {
		c, err := op(run)
		if err != nil {
			return nil, nil, err
		}
		toCancel = append(toCancel, c...)
	}
	owner, err := s.db.UserByName(ctx, a.Row.OwnerName)
	if err != nil {
		return nil, nil, fmt.Errorf("unable to read the owner of run %s: %w", a.Row.Key, err)
	}
	for {
		progress := false
		for _, n := range run.NeedItems() {
			data, ok := lists[n.TaskKey+"\x00"+n.From.Path]
			if !ok {
				if !slices.ContainsFunc(missing, func(m workflow.NeedItems) bool { return m.Step == n.Step }) {
					missing = append(missing, n)
				}
				continue
			}
			// A refused list fails the step (the engine keeps why); it is
			// not the advance's error.
			c, _ := run.Expand(n.Step, data)
			toCancel = append(toCancel, c...)
			progress = true
		}
		for _, id := range run.Ready() {
			c, err := s.submitInstance(ctx, a, run, &src, owner, id)
			if err != nil {
				return nil, nil, err
			}
			toCancel = append(toCancel, c...)
			progress = true
		}
		if !progress {
			break
		}
	}
	for _, k := range toCancel {
		if len(k) > len(refusedPrefix) && k[:len(refusedPrefix)] == refusedPrefix {
			continue
		}
		if err := a.Cancel(k); err != nil {
			return nil, nil, err
		}
		cancelled = append(cancelled, k)
	}
	data, err := json.Marshal(run)
	if err != nil {
		return nil, nil, fmt.Errorf("unable to write run %s: %w", a.Row.Key, err)
	}
	steps, err := json.Marshal(&src)
	if err != nil {
		return nil, nil, fmt.Errorf("unable to write the steps of run %s: %w", a.Row.Key, err)
	}
	if err := a.Save(data, steps, string(run.State())); err != nil {
		return nil, nil, err
	}
	return missing, cancelled, nil
}

// applyEnds applies the ends of the run's submitted tasks, adding the
// tasks an abort cancels to cancel.
func applyEnds(a *store.RunTx, run *workflow.Run, cancel *[]string) error {
	var keys []string
	for _, name := range run.Steps() {
		for _, in := range run.Instances(name) {
			if in.State == workflow.Submitted {
				keys = append(keys, in.TaskKey)
			}
		}
	}
	ends, err := a.Ends(keys)
	if err != nil {
		return err
	}
	for _, k := range keys {
		end, ok := ends[k]
		if !ok {
			continue
		}
		status := spec.StatusSE // cancelled on its own: no result
		if end.State == store.Done {
			status = resultStatus(end.Result)
		}
		c, err := run.Ended(k, status)
		if err != nil {
			return fmt.Errorf("unable to apply the end of task %s: %w", k, err)
		}
		*cancel = append(*cancel, c...)
	}
	return nil
}

// submitInstance makes and records instance id's task, or records why it
// could not be made (the instance ends with SE at once). It returns what
// an abort cancels.
func (s *Server) submitInstance(ctx context.Context, a *store.RunTx, run *workflow.Run, src *runSources, owner store.User, id workflow.ID) ([]string, error) {
	nt, inputs, err := s.instanceTask(ctx, a, run, src, &owner, id)
	var re *refusal
	if err == nil {
		item := -1 // a step that runs once
		if step, _ := run.Step(id.Step); step.Fanned() {
			item = id.Index
		}
		err = insertRefusal(a.Insert(nt, id.Step, item, inputs), nt.Queue)
	}
	switch {
	case err == nil:
		if err := run.Submitted(id, nt.Key); err != nil {
			return nil, err
		}
		return nil, nil
	case errors.As(err, &re):
		key := refusedPrefix + auth.RandomKey(8)
		if src.Refused == nil {
			src.Refused = map[string]string{}
		}
		src.Refused[key] = re.msg
		if err := run.Submitted(id, key); err != nil {
			return nil, err
		}
		return run.Ended(key, spec.StatusSE)
	default:
		return nil, err
	}
}

// instanceTask makes instance id's task, as its owner would submit it:
// the step's task or type rendered for its item, its inputs bound as the
// references of the source results' files. Errors the user caused are
// *refusal, naming the step.
func (s *Server) instanceTask(ctx context.Context, a *store.RunTx, run *workflow.Run, src *runSources, owner *store.User, id workflow.ID) (store.NewTask, map[string]bool, error) {
	step, _ := run.Step(id.Step)
	in, _ := run.Instance(id)
	field := fmt.Sprintf("tasks[%q]", id.Step)
	var task *spec.Task
	var origin *tasktype.Origin
	if step.Type == "" {
		var err error
		task, err = workflow.RenderTask(src.Tasks[step.Task], step.Task+"/"+spec.TaskFile, in.Item)
		if err != nil {
			return store.NewTask{}, nil, refuse("%s: %v", field, err)
		}
	} else {
		t, o, err := s.stepType(ctx, run, src, owner, id)
		if err != nil {
			return store.NewTask{}, nil, err
		}
		task, origin = t, o
	}
	bindings, err := run.Inputs(id)
	if err != nil {
		return store.NewTask{}, nil, err
	}
	inputs := map[string]bool{}
	for _, b := range bindings {
		ref, err := a.ResultRef(b.TaskKey, b.Path)
		if errors.Is(err, store.ErrNotFound) {
			return store.NewTask{}, nil, refuse("%s.inputs: %q: the result of %s (task %s) has no file %q", field, b.Dest, b.From, b.TaskKey, b.Path)
		}
		if err != nil {
			return store.NewTask{}, nil, err
		}
		if task.Files == nil {
			task.Files = map[string]spec.File{}
		}
		if _, dup := task.Files[b.Dest]; dup {
			return store.NewTask{}, nil, refuse("%s.inputs: %q: the task has a file of that name already", field, b.Dest)
		}
		task.Files[b.Dest] = spec.File{Reference: ref}
		inputs[ref] = true
	}
	nt, err := s.prepare(ctx, owner, task, origin)
	if err != nil {
		var re *refusal
		if errors.As(err, &re) {
			return store.NewTask{}, nil, refuse("%s: %s", field, re.msg)
		}
		return store.NewTask{}, nil, err
	}
	return nt, inputs, nil
}

// stepType renders a type step's instance: its params with {item}, its
// file parameters, through the rendering POST /type/<name>/task/ does.
func (s *Server) stepType(ctx context.Context, run *workflow.Run, src *runSources, owner *store.User, id workflow.ID) (*spec.Task, *tasktype.Origin, error) {
	step, _ := run.Step(id.Step)
	field := fmt.Sprintf("tasks[%q]", id.Step)
	row, err := s.db.Type(ctx, step.Type, 0)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !mayUseType(owner, row)) {
		return nil, nil, refuse("%s.type: no task type named %q", field, step.Type)
	}
	if err != nil {
		return nil, nil, err
	}
	params, err := run.Params(id)
	if err != nil {
		return nil, nil, &refusal{err.Error()}
	}
	task, origin, err := typeTask(row, api.TypeTask{Params: params, Files: src.Files[id.Step]})
	var re *refusal
	if errors.As(err, &re) {
		return nil, nil, refuse("%s: %s", field, re.msg)
	}
	return task, origin, err
}

// resultStatus is the status of a stored result: its "status", or, from a
// node that sends none (Kolejka's), OK for exit code 0 and RE otherwise;
// SE for a result that cannot be read.
func resultStatus(desc []byte) spec.Status {
	var res struct {
		Status spec.Status `json:"status"`
		Result *int        `json:"result"`
	}
	switch {
	case json.Unmarshal(desc, &res) != nil:
		return spec.StatusSE
	case res.Status.Valid():
		return res.Status
	case res.Result != nil && *res.Result == 0:
		return spec.StatusOK
	case res.Result != nil:
		return spec.StatusRE
	}
	return spec.StatusSE
}
