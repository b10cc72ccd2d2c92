package server

// This file owns the firing of schedules and triggers (issue 18): what a
// firing starts, the loop that fires due schedules and dispatches the
// ends that fire result and run triggers, and the check that refuses a
// trigger that would start itself. The HTTP API is trigger_handlers.go,
// the rules (schedules, filters, loops) internal/trigger, the rows and
// the firing's transaction store/triggers.go.
//
// A firing's life: a tick comes due, a task or run of the owner ends (its
// event is in the store's outbox), or a webhook request arrives; the
// server renders the target as its owner would submit it (a task folder,
// a type with parameters, a workflow), binds what fired it (the result's
// files under trigger/, the key in KOLEJKA_TRIGGER_KEY and in a type's
// "trigger" parameter), and records the firing and the work in one store
// transaction (store.Fire). The firing's key (the tick, "result:"+key,
// "run:"+key, "request:"+id) is unique per trigger: the same tick, end or
// request never starts its target twice, and what the store accepted is
// fired after any crash (the tick's next_fire and the event stay until
// their firing commits).

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/auth"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/tasktype"
	"github.com/kolejka-go/kolejka/internal/trigger"
	"github.com/kolejka-go/kolejka/internal/workflow"
	"github.com/kolejka-go/kolejka/spec"
)

const (
	// maxTriggerDepth bounds a chain of firings, each started by the end
	// of what the one before started: the guard against a loop the put's
	// check could not see (a type changed since to another queue).
	maxTriggerDepth = 16
	// triggerDir is where a firing binds the triggering result's files.
	triggerDir = "trigger/"
	// triggerKeyEnv is the variable a fired task finds the triggering
	// task's or run's key in.
	triggerKeyEnv = "KOLEJKA_TRIGGER_KEY"
	// triggerParam is the type parameter a fired type's task gets the
	// triggering key in, when the type declares it.
	triggerParam = "trigger"
	// keepFires is how many firings of each trigger the store keeps.
	keepFires = 1000
	// eventBatch is how many events one dispatch pass reads.
	eventBatch = 100
)

// fireSource is what fires a trigger.
type fireSource struct {
	fire   string            // the firing's key: the tick, "result:"+key, "run:"+key, "request:"+id
	key    string            // the task or run whose end fired it ("" for ticks and requests)
	files  map[string]string // the triggering result's files: name → reference
	params map[string]string // a webhook's parameters
	depth  int               // the depth of the firing that started key (0: none)
	next   time.Time         // a schedule's next tick after this one
	// strict: a target that refuses the firing records nothing, and fire
	// returns the *refusal (a webhook's request is bad input, answered
	// as such); else the firing is recorded as refused, with why.
	strict bool
}

// readSpec reads a trigger's stored put (written by this server).
func readSpec(row store.TriggerRow) (api.TriggerPut, error) {
	var put api.TriggerPut
	if err := json.Unmarshal(row.Spec, &put); err != nil {
		return api.TriggerPut{}, fmt.Errorf("unable to read trigger %s of %s: %w", row.Name, row.OwnerName, err)
	}
	return put, nil
}

// fire records firing src of trigger row and starts its target, once:
// a firing already recorded is returned as it is (Replay). A target that
// no longer validates (its type removed, a reference deleted) is recorded
// as refused, with why. store.ErrTriggerGone if the trigger was removed
// or paused meanwhile.
func (s *Server) fire(ctx context.Context, row store.TriggerRow, src fireSource) (store.FireResult, error) {
	owner, err := s.db.UserByName(ctx, row.OwnerName)
	if err != nil {
		return store.FireResult{}, fmt.Errorf("unable to read the owner of trigger %s: %w", row.Name, err)
	}
	var replaceRun string
	res, err := s.db.Fire(ctx, row.ID, src.fire, true, s.now(), func(f *store.FireTx) (store.Fired, error) {
		replaceRun = ""
		d := store.Fired{Depth: src.depth + 1, Next: src.next}
		// The trigger as the transaction reads it: a put since row was
		// read fires its new version.
		put, err := readSpec(f.Trigger)
		if err != nil {
			return d, err
		}
		if src.depth >= maxTriggerDepth {
			d.State, d.Reason = store.FireRefused, fmt.Sprintf("%s was started by a chain of %d firings (at most %d): a loop of triggers?", src.key, src.depth, maxTriggerDepth)
			return d, nil
		}
		var last store.FireRow
		going := false
		if put.Kind == api.TriggerSchedule && put.Overlap != api.OverlapAllow {
			if last, going, _, err = f.LastStarted(); err != nil {
				return d, err
			}
			if going && put.Overlap == api.OverlapForbid {
				d.State, d.Reason = store.FireSkipped, fmt.Sprintf("the %s %s of the tick %s has not ended (overlap forbid)", last.Started, last.Key, last.Fire)
				return d, nil
			}
		}
		started, key, err := s.startWork(ctx, f, &owner, put, src)
		var re *refusal
		if errors.As(err, &re) && !src.strict {
			d.State, d.Reason = store.FireRefused, re.msg
			return d, nil
		}
		if err != nil {
			return d, err
		}
		if going { // overlap replace: the new work is in; the old goes
			if last.Started == "task" {
				if err := f.CancelTask(last.Key); err != nil {
					return d, err
				}
			} else {
				replaceRun = last.Key
			}
		}
		d.State, d.Started, d.Key = store.FireStarted, started, key
		s.hook("recorded")
		return d, nil
	})
	if err != nil {
		return store.FireResult{}, err
	}
	if res.Replay {
		return res, nil
	}
	s.hook("committed")
	s.metrics.firings.WithLabelValues(row.Kind, res.Fire.State).Inc()
	if res.Queued {
		s.signalQueue()
	}
	for _, k := range res.Runs {
		// Were this to fail (or the server to die), the startup's and
		// expiry passes' advances queue the run's first steps.
		if err := s.advanceRun(ctx, k, nil); err != nil {
			s.log.Error("unable to advance a fired workflow run", "run", k, "error", err)
			s.owed.add(k)
		}
	}
	if replaceRun != "" {
		err := s.advanceRun(ctx, replaceRun, func(run *workflow.Run) ([]string, error) {
			if run.State() != workflow.Running {
				return nil, nil
			}
			return run.Cancel(), nil
		})
		if err != nil {
			s.log.Error("unable to cancel the run a tick replaces", "run", replaceRun, "error", err)
		}
	}
	s.log.Info("trigger fired", "trigger", row.Name, "owner", row.OwnerName, "fire", src.fire, "state", res.Fire.State, "key", res.Fire.Key, "reason", res.Fire.Reason)
	return res, nil
}

// hook calls the test's firing hook, if any.
func (s *Server) hook(phase string) {
	if s.cfg.firing != nil {
		s.cfg.firing(phase)
	}
}

// startWork makes the target's work for src and records it in the
// firing's transaction: ("task"|"workflow", its key). Errors the user
// caused (a target that does not validate now) are *refusal.
func (s *Server) startWork(ctx context.Context, f *store.FireTx, u *store.User, put api.TriggerPut, src fireSource) (started, key string, err error) {
	readAll := overseer(u)
	if put.Target.Workflow != nil {
		nr, refs, err := s.targetRun(ctx, u, put, src)
		if err != nil {
			return "", "", err
		}
		if err := f.InsertRun(nr, refs, readAll); err != nil {
			return "", "", runRefusal(err)
		}
		return "workflow", nr.Key, nil
	}
	task, origin, err := s.targetTask(ctx, u, put.Target, put.Kind, src)
	if err != nil {
		return "", "", err
	}
	nt, err := s.prepare(ctx, u, task, origin)
	if err != nil {
		return "", "", err
	}
	if err := insertRefusal(f.InsertTask(nt)); err != nil {
		return "", "", err
	}
	return "task", nt.Key, nil
}

// runRefusal turns the store's refusal of a run's references into a
// *refusal naming them; other errors pass as they are.
func runRefusal(err error) error {
	var fe store.FileErrors
	if !errors.As(err, &fe) {
		return err
	}
	msgs := make([]string, len(fe))
	for i, e := range fe {
		msgs[i] = fmt.Sprintf("%s: %s.reference: reference %q %s", workflow.FileName, e.File, e.Ref, e.Problem)
	}
	return &refusal{strings.Join(msgs, "\n")}
}

// targetTask renders a task or type target for src, as its owner would
// submit it, with what fired it bound: the result's files under trigger/,
// the key in KOLEJKA_TRIGGER_KEY (and in the type's "trigger"
// parameter, if it declares one), a webhook's parameters as the type's.
// Errors the user caused are *refusal naming the field.
func (s *Server) targetTask(ctx context.Context, u *store.User, t api.TriggerTarget, kind string, src fireSource) (*spec.Task, *tasktype.Origin, error) {
	var task *spec.Task
	var origin *tasktype.Origin
	if t.Type != "" {
		row, err := s.db.Type(ctx, t.Type, 0)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !mayUseType(u, row)) {
			return nil, nil, refuse("target.type: no task type %q", t.Type)
		}
		if err != nil {
			return nil, nil, err
		}
		_, typ, err := typeInfo(row)
		if err != nil {
			return nil, nil, err
		}
		params := maps.Clone(t.Params)
		if params == nil {
			params = map[string]string{}
		}
		maps.Copy(params, src.params)
		if _, declared := typ.Params()[triggerParam]; declared && src.key != "" {
			params[triggerParam] = src.key
		}
		if task, origin, err = typeTask(row, api.TypeTask{Files: t.Files, Limits: t.Limits, Params: params, Queue: t.Queue}); err != nil {
			var re *refusal
			if errors.As(err, &re) {
				return nil, nil, refuse("target.type %s: %s", t.Type, re.msg)
			}
			return nil, nil, err
		}
	} else {
		if len(src.params) > 0 {
			return nil, nil, refuse("params: the target of this %s trigger is a task folder, which takes no parameters (%s)", kind, strings.Join(slices.Sorted(maps.Keys(src.params)), ", "))
		}
		var err error
		if task, err = spec.ParseTask(t.Task, "target.task"); err != nil {
			return nil, nil, &refusal{err.Error()}
		}
	}
	if err := bindTrigger(task, src); err != nil {
		return nil, nil, err
	}
	return task, origin, nil
}

// bindTrigger binds what fired a trigger into task: the result's files
// under trigger/ (by reference) and the key in KOLEJKA_TRIGGER_KEY.
func bindTrigger(task *spec.Task, src fireSource) error {
	for _, name := range slices.Sorted(maps.Keys(src.files)) {
		dest := triggerDir + name
		if task.Files == nil {
			task.Files = map[string]spec.File{}
		}
		if _, dup := task.Files[dest]; dup {
			return refuse("target: files[%q]: the task has a file where the triggering result's goes", dest)
		}
		task.Files[dest] = spec.File{Reference: src.files[name]}
	}
	if src.key != "" {
		if task.Environment == nil {
			task.Environment = map[string]string{}
		}
		task.Environment[triggerKeyEnv] = src.key
	}
	return nil
}

// targetRun makes a workflow target's run for src, checked as a put of
// POST /workflow/ is, with what fired it kept in the run's sources for
// its steps' tasks (instanceTask binds it into each).
func (s *Server) targetRun(ctx context.Context, u *store.User, put api.TriggerPut, src fireSource) (store.NewRun, map[string]string, error) {
	if len(src.params) > 0 {
		return store.NewRun{}, nil, refuse("params: the target of this %s trigger is a workflow, which takes no parameters (%s)", put.Kind, strings.Join(slices.Sorted(maps.Keys(src.params)), ", "))
	}
	wp := *put.Target.Workflow
	wf, refs, err := s.checkPut(ctx, u, wp)
	if err != nil {
		var re *refusal
		if errors.As(err, &re) {
			return store.NewRun{}, nil, refuse("target.workflow: %s", re.msg)
		}
		return store.NewRun{}, nil, err
	}
	runJSON, err := json.Marshal(workflow.NewRun(wf))
	if err != nil {
		return store.NewRun{}, nil, err
	}
	steps, err := json.Marshal(&runSources{Files: wp.Files, Tasks: wp.Tasks, Trigger: src.files, TriggerKey: src.key})
	if err != nil {
		return store.NewRun{}, nil, err
	}
	return store.NewRun{Key: auth.RandomKey(16), Owner: u.ID, State: store.RunRunning, Run: runJSON, Steps: steps, Now: s.now()}, refs, nil
}

// sampleFire stands for what fires a trigger of kind, for the checks of a
// put: a key, and a value for each required parameter of a request
// trigger's type (the requests give them).
func (s *Server) sampleFire(ctx context.Context, put api.TriggerPut) fireSource {
	src := fireSource{}
	if put.Kind == api.TriggerResult || put.Kind == api.TriggerRun {
		src.key = "sample"
	}
	if put.Kind == api.TriggerRequest && put.Target.Type != "" {
		if row, err := s.db.Type(ctx, put.Target.Type, 0); err == nil {
			if _, typ, err := typeInfo(row); err == nil {
				for name, p := range typ.Params() {
					if !p.File && p.Default == nil && put.Target.Params[name] == "" {
						if src.params == nil {
							src.params = map[string]string{}
						}
						src.params[name] = "sample"
					}
				}
			}
		}
	}
	return src
}

// checkTarget checks a put's target as a firing would make it, and
// returns what it starts (for the loop check) and the references it uses
// (kept alive while the trigger is), by a name for errors. Errors the
// user caused are *refusal.
func (s *Server) checkTarget(ctx context.Context, u *store.User, put api.TriggerPut) ([]trigger.Work, map[string]string, error) {
	t := put.Target
	n := 0
	for _, given := range []bool{len(t.Task) > 0, t.Type != "", t.Workflow != nil} {
		if given {
			n++
		}
	}
	if n != 1 {
		return nil, nil, refuse("target: give exactly one of task, type and workflow (this gives %d)", n)
	}
	if t.Type == "" && (len(t.Params) > 0 || len(t.Files) > 0 || t.Queue != "" || !t.Limits.IsZero()) {
		return nil, nil, refuse("target: params, files, queue and limits go with a type target only")
	}
	src := s.sampleFire(ctx, put)
	refs := map[string]string{}
	if t.Workflow != nil {
		src.params = nil
		nr, runRefs, err := s.targetRun(ctx, u, put, src)
		if err != nil {
			return nil, nil, err
		}
		for name, ref := range runRefs {
			refs["target.workflow."+name] = ref
		}
		works, err := s.runWork(ctx, u, nr)
		return works, refs, err
	}
	task, origin, err := s.targetTask(ctx, u, t, put.Kind, src)
	if err != nil {
		return nil, nil, err
	}
	// A firing binds the result's files under trigger/: a file of the
	// task's own there would collide with one at some firing.
	if put.Kind == api.TriggerResult {
		for _, name := range slices.Sorted(maps.Keys(task.Files)) {
			if strings.HasPrefix(name, triggerDir) {
				return nil, nil, refuse("target: files[%q]: a result trigger binds the triggering result's files under %s; the task may have none of its own there", name, triggerDir)
			}
		}
	}
	nt, err := s.prepare(ctx, u, task, origin)
	if err == nil {
		err = s.mayQueue(ctx, u, nt.Queue)
	}
	if err != nil {
		return nil, nil, err
	}
	for name, f := range task.Files {
		refs[fmt.Sprintf("target.files[%q]", name)] = f.Reference
	}
	return []trigger.Work{{Queue: nt.Queue, Type: nt.TypeName}}, refs, nil
}

// runWork is what a run starts, for the loop check: the run, and a task
// for each of its steps (in its step's queue, of its type).
func (s *Server) runWork(ctx context.Context, u *store.User, nr store.NewRun) ([]trigger.Work, error) {
	out := []trigger.Work{{Run: true}}
	var run workflow.Run
	if err := json.Unmarshal(nr.Run, &run); err != nil {
		return nil, err
	}
	var src runSources
	if err := json.Unmarshal(nr.Steps, &src); err != nil {
		return nil, err
	}
	for _, name := range run.Steps() {
		st, _ := run.Step(name)
		if st.Type != "" {
			w := trigger.Work{Type: st.Type}
			if row, err := s.db.Type(ctx, st.Type, 0); err == nil {
				if _, typ, err := typeInfo(row); err == nil {
					w.Queue = typeQueue(typ)
				}
			}
			out = append(out, w)
			continue
		}
		task, err := workflow.RenderTask(src.Tasks[st.Task], st.Task+"/"+spec.TaskFile, sampleItem)
		if err != nil {
			continue // checkPut refused it already, or will at the run's advance
		}
		out = append(out, trigger.Work{Queue: cmp.Or(task.Queue, spec.DefaultQueue)})
	}
	return out, nil
}

// typeQueue is the queue a type's tasks go to when the request names
// none: its template's, rendered with stand-in values.
func typeQueue(typ *tasktype.Type) string {
	values, files := map[string]string{}, map[string]string{}
	for name, p := range typ.Params() {
		if p.File {
			files[name] = name
		} else if p.Default == nil {
			values[name] = "sample"
		}
	}
	task, _, err := typ.Render(values, files)
	if err != nil {
		return ""
	}
	return cmp.Or(task.Queue, spec.DefaultQueue)
}

// checkLoop refuses a result or run trigger that, with the owner's other
// triggers, would start itself: its work (starts) ends, fires a trigger,
// whose work ends … and fires it again.
func (s *Server) checkLoop(ctx context.Context, u *store.User, put api.TriggerPut, starts []trigger.Work) error {
	if put.Kind != api.TriggerResult && put.Kind != api.TriggerRun {
		return nil
	}
	rows, err := s.db.TriggersOf(ctx, u.ID, "")
	if err != nil {
		return err
	}
	nodes := []trigger.Node{{Name: put.Name, Kind: put.Kind, On: put.On, Starts: starts}}
	for _, row := range rows {
		if row.Name == put.Name || row.Paused || (row.Kind != api.TriggerResult && row.Kind != api.TriggerRun) {
			continue
		}
		other, err := readSpec(row)
		if err != nil {
			return err
		}
		works, _, err := s.checkTarget(ctx, u, other)
		if err != nil {
			continue // a target that does not validate now starts nothing
		}
		nodes = append(nodes, trigger.Node{Name: row.Name, Kind: row.Kind, On: other.On, Starts: works})
	}
	if loop := trigger.FindLoop(nodes); loop != nil {
		return refuse("on: trigger %s would start itself in a loop: %s (each ends and fires the next)", put.Name, strings.Join(loop, " → "))
	}
	return nil
}

// triggerLoop fires due schedules and dispatches pending ends, then
// sleeps until the next tick, a wake-up (a put, a resume, an end) or a
// minute (the safety net: an event a failed pass left).
func (s *Server) triggerLoop() {
	ctx, cancel := s.stopContext()
	defer cancel()
	for {
		failed := s.fireDue(ctx) != nil
		failed = s.dispatchEvents(ctx) != nil || failed
		if ctx.Err() != nil {
			return
		}
		wait := time.Minute
		if next, ok, err := s.db.NextTick(ctx); err == nil && ok {
			wait = min(wait, next.Sub(s.now()))
		}
		if failed {
			wait = max(wait, time.Second) // a store that refuses: not a busy loop
		}
		t := time.NewTimer(max(wait, time.Millisecond))
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-s.triggerWake:
		case <-t.C:
		}
		t.Stop()
	}
}

// wakeTriggers makes the trigger loop look now.
func (s *Server) wakeTriggers() {
	select {
	case s.triggerWake <- struct{}{}:
	default:
	}
}

// fireDue fires every schedule whose tick has come: once for all the
// ticks it missed (an outage, a slow pass), at the latest of them.
func (s *Server) fireDue(ctx context.Context) error {
	now := s.now()
	rows, err := s.db.DueSchedules(ctx, now)
	if err != nil {
		s.log.Error("unable to list due schedules", "error", err)
		return err
	}
	var errs []error
	for _, row := range rows {
		put, err := readSpec(row)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sch, err := trigger.ParseSchedule(put.Cron, put.TZ, put.Every)
		if err != nil {
			errs = append(errs, fmt.Errorf("schedule %s of %s: %w", row.Name, row.OwnerName, err))
			continue
		}
		tick, following, due := sch.Due(row.NextFire, now)
		if !due {
			continue
		}
		res, err := s.fire(ctx, row, fireSource{fire: tick.UTC().Format(time.RFC3339Nano), next: following})
		switch {
		case errors.Is(err, store.ErrTriggerGone):
		case err != nil:
			errs = append(errs, fmt.Errorf("schedule %s of %s: %w", row.Name, row.OwnerName, err))
		case res.Replay:
			// Fired before (by a pass whose next tick did not move):
			// move it now.
			if err := s.db.SetNextTick(ctx, row.ID, following); err != nil {
				errs = append(errs, err)
			}
		}
	}
	err = errors.Join(errs...)
	if err != nil {
		s.log.Error("unable to fire schedules", "error", err)
	}
	return err
}

// dispatchEvents fires the result and run triggers each pending end
// matches, then drops the end. A pass that fails leaves the end (and the
// rest) to the next: the firings done are not repeated (each is unique).
func (s *Server) dispatchEvents(ctx context.Context) error {
	for {
		events, err := s.db.Events(ctx, eventBatch)
		if err != nil {
			s.log.Error("unable to read trigger events", "error", err)
			return err
		}
		for _, e := range events {
			if err := s.dispatch(ctx, e); err != nil {
				s.log.Error("unable to fire the triggers of an end", "key", e.Key, "error", err)
				return err
			}
			if err := s.db.DeleteEvent(ctx, e.ID); err != nil {
				s.log.Error("unable to remove a trigger event", "key", e.Key, "error", err)
				return err
			}
		}
		if len(events) < eventBatch {
			return nil
		}
	}
}

// dispatch fires the owner's triggers that end e matches.
func (s *Server) dispatch(ctx context.Context, e store.Event) error {
	rows, err := s.db.TriggersOf(ctx, e.Owner, e.Kind)
	if err != nil {
		return err
	}
	var src *fireSource
	for _, row := range rows {
		if row.Paused {
			continue
		}
		put, err := readSpec(row)
		if err != nil {
			return err
		}
		if !trigger.Matches(put.On, e.Queue, e.Type, e.Status) {
			continue
		}
		if src == nil {
			src = &fireSource{fire: e.Kind + ":" + e.Key, key: e.Key}
			if src.depth, err = s.db.DepthOf(ctx, e.Key); err != nil {
				return err
			}
			if e.Kind == store.KindResult {
				if src.files, err = s.db.ResultFiles(ctx, e.Key); err != nil {
					return err
				}
			}
		}
		if _, err := s.fire(ctx, row, *src); err != nil && !errors.Is(err, store.ErrTriggerGone) {
			return err
		}
	}
	return nil
}
