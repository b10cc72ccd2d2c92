package server

// This file owns the driver of workflow runs (issue 17): the server, not a
// client, advances a run as its tasks end. Each advance is one store
// transaction (store.AdvanceRun) that reads the run, applies the ends of
// its submitted tasks (a result's status; a task cancelled or deleted on
// its own ends as SE), gives items_from steps their lists, submits the
// instances that became ready (their tasks made and checked as every submission is:
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
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"sync"
	"time"

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
	Refused map[string]string                  `json:"refused,omitempty"` // refused key (or a task's) → why
	// Appended: a step a result's kolejka_workflow.json added → the key
	// of the task whose result holds its folder (its files are that
	// result's files FOLDER/…).
	Appended map[string]string `json:"appended,omitempty"`
	// StepTasks: an appended task step → its FOLDER/kolejka_task.json.
	StepTasks map[string]json.RawMessage `json:"step_tasks,omitempty"`
	// Trigger and TriggerKey: what fired the trigger that started the
	// run (triggers.go), bound into each step's task as a fired task's.
	Trigger    map[string]string `json:"trigger,omitempty"`
	TriggerKey string            `json:"trigger_key,omitempty"`
}

// appendDoc is what a result adds to its run: its kolejka_workflow.json
// and the kolejka_task.json of each task folder it names, by folder (nil:
// the result has none).
type appendDoc struct {
	workflow []byte
	tasks    map[string][]byte
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

// advanceRunOf advances the run task key is a step of, if any. A failed
// advance is logged and left to the next expiry pass (owed).
func (s *Server) advanceRunOf(ctx context.Context, taskKey string) {
	run, err := s.db.RunOfTask(ctx, taskKey)
	if err != nil {
		s.log.Error("unable to find the run of a task", "task", taskKey, "error", err)
		s.owed.add("") // which run is unknown: every running one
		return
	}
	s.wakeTriggers() // a result may fire a result trigger
	if run == "" {
		return
	}
	if err := s.advanceRun(ctx, run, nil); err != nil {
		s.log.Error("unable to advance a workflow run", "run", run, "task", taskKey, "error", err)
		s.owed.add(run)
	}
}

// advanceRunning advances every running run: at startup, where a crash may
// have come between a result and its run's advance.
func (s *Server) advanceRunning(ctx context.Context) {
	keys, err := s.db.RunningRuns(ctx)
	if err != nil {
		s.log.Error("unable to list running workflow runs", "error", err)
		s.owed.add("")
		return
	}
	for _, k := range keys {
		if err := s.advanceRun(ctx, k, nil); err != nil {
			s.log.Error("unable to advance a workflow run", "run", k, "error", err)
			s.owed.add(k)
		}
	}
}

// advanceOwed advances the runs whose advance failed since the last call
// (the expiry pass's safety net): a run that moves as its results arrive
// costs the pass nothing. It advances too the runs the store says are
// owed one for longer than dueAdvanceGrace: their step ended on a server
// that died before it advanced them (a killed replica).
func (s *Server) advanceOwed(ctx context.Context) {
	runs, all := s.owed.take()
	if all {
		s.advanceRunning(ctx)
		return
	}
	due, err := s.db.DueAdvances(ctx, s.now().Add(-dueAdvanceGrace))
	if err != nil {
		s.log.Error("unable to list the runs owed an advance", "error", err)
	}
	for _, k := range due {
		if !slices.Contains(runs, k) {
			s.log.Warn("advancing a workflow run its step's server left owed", "run", k)
			runs = append(runs, k)
		}
	}
	for _, k := range runs {
		if err := s.advanceRun(ctx, k, nil); err != nil {
			s.log.Error("unable to advance a workflow run", "run", k, "error", err)
			s.owed.add(k)
		}
	}
}

// dueAdvanceGrace is how long a run owed an advance is left to the server
// that stored its step's end (which advances it at once) before any
// server's expiry pass takes it.
const dueAdvanceGrace = 5 * time.Second

// owedRuns are the runs an advance failed on, to be advanced again; "" in
// add means a run that could not be named: every running run.
type owedRuns struct {
	mu   sync.Mutex
	runs map[string]bool
	all  bool
}

func (o *owedRuns) add(run string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if run == "" {
		o.all = true
		return
	}
	if o.runs == nil {
		o.runs = map[string]bool{}
	}
	o.runs[run] = true
}

// take empties the set and returns what it held, in order.
func (o *owedRuns) take() (runs []string, all bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	runs, all = slices.Sorted(maps.Keys(o.runs)), o.all
	o.runs, o.all = nil, false
	return runs, all
}

// advanceRun advances run key, doing op (if not nil) in the same
// transaction after the ends are applied. op's error is returned as it is
// (a refusal of a retry), with nothing changed.
func (s *Server) advanceRun(ctx context.Context, key string, op runOp) error {
	lists := map[string][]byte{} // task key + "\x00" + path → the file (nil: the result has none)
	appends := map[string]*appendDoc{}
	for range maxAdvancePasses {
		var missing []workflow.NeedItems
		var cancelled, wanted []string
		var keep cachedRun
		queued, err := s.db.AdvanceRun(ctx, key, s.now(), func(a *store.RunTx) error {
			var err error
			keep = cachedRun{}
			missing, wanted, cancelled, err = s.advanceTx(ctx, a, lists, appends, op, &keep)
			if len(missing)+len(wanted) > 0 {
				a.StillOwed()
			}
			return err
		})
		if err == nil && keep.run != nil {
			s.runs.put(key, keep) // committed: the next advance starts from it
		}
		if queued {
			s.signalQueue()
		}
		if err == nil && keep.run == nil {
			s.wakeTriggers() // the run may have ended: a run trigger may fire
		}
		for _, k := range cancelled {
			s.signalResult(k)
		}
		if err != nil || len(missing)+len(wanted) == 0 {
			return err
		}
		op = nil // done and committed
		for _, k := range wanted {
			doc, err := s.readAppend(ctx, k)
			if err != nil {
				return err
			}
			appends[k] = doc
		}
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
	f, err := s.blobs.Open(ctx, hash)
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

// readAppend reads the kolejka_workflow.json of task key's result and the
// kolejka_task.json of each task folder it names (a file that does not
// parse names none: Append refuses it, naming the problem). A folder
// that leaves the result's is never read: Append refuses it first, and
// the result's files are only names, not paths to open.
func (s *Server) readAppend(ctx context.Context, key string) (*appendDoc, error) {
	data, err := s.resultFile(ctx, key, workflow.FileName)
	if err != nil {
		return nil, err
	}
	doc := &appendDoc{workflow: data, tasks: map[string][]byte{}}
	// Read loosely: the steps name steps of the run, which Parse alone
	// does not know; Append reads the file strictly.
	var wf struct {
		Tasks map[string]struct {
			Task string `json:"task"`
		} `json:"tasks"`
	}
	_ = json.Unmarshal(data, &wf) // a file that does not parse names no folder: Append names the problem
	for _, st := range wf.Tasks {
		if st.Task == "" || doc.tasks[st.Task] != nil {
			continue
		}
		if doc.tasks[st.Task], err = s.resultFile(ctx, key, st.Task+"/"+spec.TaskFile); err != nil {
			return nil, err
		}
	}
	return doc, nil
}

// advanceTx is one pass, inside the store's transaction. It returns the
// lists it needs and has not got, the tasks whose appended steps it needs
// and has not got, and the tasks it cancelled.
func (s *Server) advanceTx(ctx context.Context, a *store.RunTx, lists map[string][]byte, appends map[string]*appendDoc, op runOp, keep *cachedRun) (missing []workflow.NeedItems, wanted, cancelled []string, err error) {
	run := s.runs.take(a.Row.Key, a.Row.Run)
	if run == nil {
		run = &workflow.Run{}
		if err := json.Unmarshal(a.Row.Run, run); err != nil {
			return nil, nil, nil, fmt.Errorf("unable to read run %s: %w", a.Row.Key, err)
		}
	}
	var src runSources
	if err := json.Unmarshal(a.Row.Steps, &src); err != nil {
		return nil, nil, nil, fmt.Errorf("unable to read the steps of run %s: %w", a.Row.Key, err)
	}
	if op == nil && a.Row.State != store.RunRunning {
		return nil, nil, nil, nil
	}
	var toCancel []string
	wanted, err = applyEnds(a, run, &src, appends, &toCancel)
	if err != nil {
		return nil, nil, nil, err
	}
	if op != nil {
		c, err := op(run)
		if err != nil {
			return nil, nil, nil, err
		}
		toCancel = append(toCancel, c...)
	}
	owner, err := s.db.UserByName(ctx, a.Row.OwnerName)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("unable to read the owner of run %s: %w", a.Row.Key, err)
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
				return nil, nil, nil, err
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
			return nil, nil, nil, err
		}
		cancelled = append(cancelled, k)
	}
	data, err := json.Marshal(run)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("unable to write run %s: %w", a.Row.Key, err)
	}
	steps, err := json.Marshal(&src)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("unable to write the steps of run %s: %w", a.Row.Key, err)
	}
	if run.State() == workflow.Running {
		*keep = cachedRun{data: data, run: run}
	}
	if bytes.Equal(data, a.Row.Run) && bytes.Equal(steps, a.Row.Steps) && string(run.State()) == a.Row.State {
		// Nothing moved (the expiry pass's safety net, mostly): no write.
		return missing, wanted, cancelled, nil
	}
	if err := a.Save(data, steps, string(run.State())); err != nil {
		return nil, nil, nil, err
	}
	return missing, wanted, cancelled, nil
}

// applyEnds applies the ends of the run's submitted tasks, adding the
// tasks an abort cancels to cancel. A task that ended OK with a
// kolejka_workflow.json in its result ends together with the steps it
// appends: without that file's bytes (appends) its end waits, and its key
// is returned for the caller to read them. An append refused ends the
// step with SE, the refusal kept as the task's reason.
func applyEnds(a *store.RunTx, run *workflow.Run, src *runSources, appends map[string]*appendDoc, cancel *[]string) (wanted []string, err error) {
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
		return nil, err
	}
	for _, k := range keys {
		end, ok := ends[k]
		if !ok {
			continue
		}
		status := spec.StatusSE // cancelled or deleted on its own: no result
		if end.State == store.Done {
			status = resultStatus(end.Result)
		}
		var doc *appendDoc
		if status == spec.StatusOK {
			_, err := a.ResultRef(k, workflow.FileName)
			switch {
			case err == nil:
				if doc = appends[k]; doc == nil {
					wanted = append(wanted, k)
					continue
				}
			case !errors.Is(err, store.ErrNotFound):
				return nil, err
			}
		}
		if doc != nil {
			// Append checks the new steps against the run as the end
			// leaves it: tried on a copy first, so that a refusal can end
			// the step otherwise.
			if aerr := tryAppend(run, k, status, doc); aerr != nil {
				status = spec.StatusSE
				if src.Refused == nil {
					src.Refused = map[string]string{}
				}
				src.Refused[k] = aerr.Error()
				doc = nil
			}
		}
		in, _ := instanceOf(run, k)
		c, err := run.Ended(k, status)
		if err != nil {
			return nil, fmt.Errorf("unable to apply the end of task %s: %w", k, err)
		}
		*cancel = append(*cancel, c...)
		if doc != nil {
			if err := appendSteps(run, src, k, in.Step, doc); err != nil {
				return nil, err
			}
		}
	}
	return wanted, nil
}

// tryAppend applies task key's end and its appended steps to a copy of
// run: the refusal of the append, if any.
func tryAppend(run *workflow.Run, key string, status spec.Status, doc *appendDoc) error {
	data, err := json.Marshal(run)
	if err != nil {
		return fmt.Errorf("unable to copy a run: %w", err)
	}
	probe := &workflow.Run{}
	if err := json.Unmarshal(data, probe); err != nil {
		return fmt.Errorf("unable to copy a run: %w", err)
	}
	in, _ := instanceOf(run, key)
	if _, err := probe.Ended(key, status); err != nil {
		return err
	}
	return probe.Append(doc.workflow, in.Step+":"+workflow.FileName)
}

// appendSteps appends the steps of doc, from the result of task key (of
// step), to run (tryAppend accepted them just before) and records where
// their files are.
func appendSteps(run *workflow.Run, src *runSources, key, step string, doc *appendDoc) error {
	before := map[string]bool{}
	for _, name := range run.Steps() {
		before[name] = true
	}
	if err := run.Append(doc.workflow, step+":"+workflow.FileName); err != nil {
		return fmt.Errorf("unable to append the steps of task %s: %w", key, err)
	}
	for _, name := range run.Steps() {
		if before[name] {
			continue
		}
		if src.Appended == nil {
			src.Appended, src.StepTasks = map[string]string{}, map[string]json.RawMessage{}
		}
		src.Appended[name] = key
		if st, _ := run.Step(name); st.Task != "" && doc.tasks[st.Task] != nil {
			src.StepTasks[name] = doc.tasks[st.Task]
		}
	}
	return nil
}

// instanceOf finds the instance whose current task is key.
func instanceOf(run *workflow.Run, key string) (workflow.Instance, bool) {
	for _, name := range run.Steps() {
		for _, in := range run.Instances(name) {
			if in.TaskKey == key {
				return in, true
			}
		}
	}
	return workflow.Instance{}, false
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
		err = insertRefusal(a.Insert(nt, id.Step, item, inputs))
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
	inputs := map[string]bool{}
	appKey, appended := src.Appended[id.Step]
	if step.Type == "" {
		data := src.Tasks[step.Task]
		if appended {
			if data = src.StepTasks[id.Step]; data == nil {
				return store.NewTask{}, nil, refuse("%s.task: the result of task %s has no %s/%s", field, appKey, step.Task, spec.TaskFile)
			}
		}
		var err error
		task, err = workflow.RenderTask(data, step.Task+"/"+spec.TaskFile, in.Item)
		if err != nil {
			return store.NewTask{}, nil, refuse("%s: %v", field, err)
		}
		if appended {
			// An appended folder's files are the appending result's.
			for name, f := range task.Files {
				if f.Reference != "" {
					continue
				}
				p := path.Join(step.Task, cmp.Or(f.Path, name))
				ref, err := a.ResultRef(appKey, p)
				if errors.Is(err, store.ErrNotFound) {
					return store.NewTask{}, nil, refuse("%s: files[%q]: the result of task %s has no file %q", field, name, appKey, p)
				}
				if err != nil {
					return store.NewTask{}, nil, err
				}
				task.Files[name] = spec.File{Reference: ref}
				inputs[ref] = true
			}
		}
	} else {
		t, o, err := s.stepType(ctx, a, run, src, owner, id, inputs)
		if err != nil {
			return store.NewTask{}, nil, err
		}
		task, origin = t, o
	}
	bindings, err := run.Inputs(id)
	if err != nil {
		return store.NewTask{}, nil, err
	}
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
	if err := bindTrigger(task, fireSource{key: src.TriggerKey, files: src.Trigger}); err != nil {
		return store.NewTask{}, nil, refuse("%s: %v", field, err)
	}
	for _, ref := range src.Trigger {
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
func (s *Server) stepType(ctx context.Context, a *store.RunTx, run *workflow.Run, src *runSources, owner *store.User, id workflow.ID, inputs map[string]bool) (*spec.Task, *tasktype.Origin, error) {
	step, _ := run.Step(id.Step)
	field := fmt.Sprintf("tasks[%q]", id.Step)
	files := src.Files[id.Step]
	if appKey, ok := src.Appended[id.Step]; ok {
		// An appended step's file parameters are the appending result's.
		files = map[string]api.TypeFile{}
		for param, p := range step.Files {
			ref, err := a.ResultRef(appKey, p)
			if errors.Is(err, store.ErrNotFound) {
				return nil, nil, refuse("%s.files[%q]: the result of task %s has no file %q", field, param, appKey, p)
			}
			if err != nil {
				return nil, nil, err
			}
			files[param] = api.TypeFile{Name: path.Base(p), Reference: ref}
			inputs[ref] = true
		}
	}
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
	task, origin, err := typeTask(row, api.TypeTask{Params: params, Files: files})
	var re *refusal
	if errors.As(err, &re) {
		return nil, nil, refuse("%s: %s", field, re.msg)
	}
	return task, origin, err
}

// resultStatus is the status of a stored result: its "status", or, from a
// node that sends none (Kolejka's), OK for exit code 0 and RE otherwise;
// SE for a result that cannot be read.
func resultStatus(desc []byte) spec.Status { return store.ResultStatus(desc) }

// cachedRun is a running run as the last advance committed it: its JSON
// and the engine's state it decodes to.
type cachedRun struct {
	data []byte
	run  *workflow.Run
}

// runCache keeps each running run's engine state between advances, so
// that an advance decodes the run's JSON (most of its cost in a large
// fan-out) only when another process or a failed advance changed it. An
// entry is taken out while an advance uses it and put back only once that
// advance committed; the stored JSON is always the truth (an entry whose
// bytes differ from it is not used).
type runCache struct {
	mu sync.Mutex
	m  map[string]cachedRun
}

// take removes run key's entry and returns its state if it is the state
// data holds, nil otherwise.
func (c *runCache) take(key string, data []byte) *workflow.Run {
	c.mu.Lock()
	e, ok := c.m[key]
	delete(c.m, key)
	c.mu.Unlock()
	if !ok || !bytes.Equal(e.data, data) {
		return nil
	}
	return e.run
}

func (c *runCache) put(key string, e cachedRun) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedRun{}
	}
	c.m[key] = e
}
