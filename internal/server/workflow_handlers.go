package server

// This file owns /workflow/ (extension "workflows"): putting a run of a
// workflow, listing runs, reading one, cancelling and retrying it. The
// engine is internal/workflow, the driver workflows.go, the storage the
// store's; these handlers only check and join them.
//
//	POST /workflow/               clients: a new run (api.WorkflowPut), answered with its key
//	GET  /workflow/               the caller's runs (inspectors and managers: all)
//	GET  /workflow/<key>/         its owner, inspectors, managers: every step and instance
//	POST /workflow/<key>/cancel/  its owner, managers: the run and its tasks cancelled
//	POST /workflow/<key>/retry/   its owner, managers: what failed, was cancelled or skipped runs again
//
// A put is checked whole before anything is stored: the workflow as Parse
// reads it, each task step's kolejka_task.json rendered for each of its
// items (a placeholder item for items_from) and checked as a submission
// is, each type step rendered from the type as POST /type/<name>/task/
// does, every file's reference the caller's to use. Every refusal names
// the step and the field.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/auth"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/tasktype"
	"github.com/kolejka-go/kolejka/internal/workflow"
	"github.com/kolejka-go/kolejka/spec"
)

// sampleItem stands for the items of an items_from step, unknown at a put,
// when its task is checked.
const sampleItem = "item"

func (s *Server) handleWorkflows(w http.ResponseWriter, r *http.Request) {
	u := listOrPost(w, r, s.handleWorkflowPut)
	if u == nil {
		return
	}
	rows, err := s.db.Runs(r.Context(), u.ID, overseer(u))
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := &api.WorkflowsAnswer{Workflows: make([]api.WorkflowInfo, 0, len(rows))}
	for _, row := range rows {
		out.Workflows = append(out.Workflows, runInfo(row))
	}
	ok(w, out)
}

func runInfo(row store.RunRow) api.WorkflowInfo {
	info := api.WorkflowInfo{Key: row.Key, Owner: row.OwnerName, State: row.State, TimeCreate: djangoTime(row.TimeCreate)}
	if !row.TimeFinish.IsZero() {
		info.TimeFinish = djangoTime(row.TimeFinish)
	}
	return info
}

func (s *Server) handleWorkflowPut(w http.ResponseWriter, r *http.Request) {
	u, body := s.postBody(w, r, store.RoleClient, "only clients put workflows", s.cfg.MaxJSONBody)
	if u == nil {
		return
	}
	put, err := api.ParseWorkflowPut(body)
	if err != nil {
		fail(w, "%v", err)
		return
	}
	wf, refs, err := s.checkPut(r.Context(), u, put)
	if err != nil {
		s.answerSubmit(w, r, err)
		return
	}
	run := workflow.NewRun(wf)
	runJSON, err := json.Marshal(run)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	steps, err := json.Marshal(&runSources{Files: put.Files, Tasks: put.Tasks})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	key := auth.RandomKey(16)
	_, err = s.db.InsertRun(r.Context(), store.NewRun{Key: key, Owner: u.ID, State: store.RunRunning, Run: runJSON, Steps: steps, Now: s.now()},
		refs, overseer(u))
	var fe store.FileErrors
	if errors.As(err, &fe) {
		msgs := make([]string, len(fe))
		for i, e := range fe {
			msgs[i] = fmt.Sprintf("%s: %s.reference: reference %q %s", workflow.FileName, e.File, e.Ref, e.Problem)
		}
		fail(w, "%s", strings.Join(msgs, "\n"))
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.log.Info("workflow run put", "run", key, "user", u.Name, "steps", len(wf.Steps))
	// The first steps are queued now; were this to fail (or the server to
	// die), the startup's and expiry passes' advances queue them.
	if err := s.advanceRun(r.Context(), key, nil); err != nil {
		s.log.Error("unable to advance a new workflow run", "run", key, "error", err)
	}
	ok(w, &api.WorkflowPutAnswer{Key: key})
}

// checkPut checks a put whole (see the file's comment) and returns the
// workflow and the references its steps use, by a name for errors. Errors
// the user caused are *refusal.
func (s *Server) checkPut(ctx context.Context, u *store.User, put api.WorkflowPut) (*workflow.Workflow, map[string]string, error) {
	wf, err := workflow.Parse(put.Workflow, workflow.FileName)
	if err != nil {
		return nil, nil, &refusal{err.Error()}
	}
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, workflow.FileName+": "+fmt.Sprintf(format, args...))
	}
	refs := map[string]string{}
	folders := map[string]bool{}
	for _, st := range wf.Steps {
		folders[st.Task] = true
	}
	for _, folder := range slices.Sorted(maps.Keys(put.Tasks)) {
		if !folders[folder] || folder == "" {
			problems = append(problems, fmt.Sprintf("workflow put: tasks[%q]: no step's task is this folder", folder))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(put.Files)) {
		if st, ok := wf.Steps[name]; !ok || st.Type == "" {
			add("tasks[%q].files: the put gives file parameters for a step that is not a type step", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(wf.Steps)) {
		st := wf.Steps[name]
		field := fmt.Sprintf("tasks[%q]", name)
		items := st.Items
		if st.ItemsFrom != nil {
			items = []string{sampleItem}
		}
		if len(items) == 0 {
			items = []string{""}
		}
		for _, item := range items {
			task, origin, problem := s.putTask(ctx, u, put, name, st, item)
			if problem != "" {
				add("%s%s", field, problem)
				break
			}
			for dest := range st.Inputs {
				for f := range task.Files {
					if f == dest || strings.HasPrefix(f, dest+"/") || strings.HasPrefix(dest, f+"/") {
						add("%s.inputs[%q]: the task has a file %q there already", field, dest, f)
					}
				}
			}
			for f, file := range task.Files {
				refs[fmt.Sprintf("%s.files[%q]", field, f)] = file.Reference
			}
			nt, err := s.prepare(ctx, u, task, origin)
			if err == nil {
				// The queue's rules, which a submission applies as it
				// inserts: the run's tasks are inserted only later.
				err = s.mayQueue(ctx, u, nt.Queue)
			}
			if err != nil {
				var re *refusal
				if !errors.As(err, &re) {
					return nil, nil, err
				}
				add("%s: %s", field, re.msg)
				break
			}
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		problems = slices.Compact(problems)
		return nil, nil, &refusal{strings.Join(problems, "\n")}
	}
	return wf, refs, nil
}

// putTask renders step name's task for item as the driver will, for the
// checks of a put: a problem, naming the field (".task: …", ": …", to
// follow the step's), if it cannot be made.
func (s *Server) putTask(ctx context.Context, u *store.User, put api.WorkflowPut, name string, st *workflow.Step, item string) (*spec.Task, *tasktype.Origin, string) {
	if st.Task != "" {
		data, ok := put.Tasks[st.Task]
		if !ok {
			return nil, nil, fmt.Sprintf(".task: %q: the put gives no kolejka_task.json for this folder", st.Task)
		}
		task, err := workflow.RenderTask(data, st.Task+"/"+spec.TaskFile, item)
		if err != nil {
			return nil, nil, ": " + err.Error()
		}
		for f, file := range task.Files {
			if strings.TrimSpace(file.Reference) == "" {
				return nil, nil, fmt.Sprintf(": %s/%s: files[%q].reference: missing (upload the file and give its reference)", st.Task, spec.TaskFile, f)
			}
		}
		return task, nil, ""
	}
	files := put.Files[name]
	for _, param := range slices.Sorted(maps.Keys(st.Files)) {
		if _, ok := files[param]; !ok {
			return nil, nil, fmt.Sprintf(".files[%q]: the put gives no reference for this file parameter", param)
		}
	}
	for _, param := range slices.Sorted(maps.Keys(files)) {
		if _, ok := st.Files[param]; !ok {
			return nil, nil, fmt.Sprintf(".files[%q]: the step names no such file parameter", param)
		}
	}
	row, err := s.db.Type(ctx, st.Type, 0)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !mayUseType(u, row)) {
		return nil, nil, fmt.Sprintf(".type: no task type named %q", st.Type)
	}
	if err != nil {
		return nil, nil, ": " + err.Error()
	}
	params := maps.Clone(st.Params)
	if item != "" {
		// As Run.Params substitutes, through a run of this one step.
		one := workflow.NewRun(&workflow.Workflow{Steps: map[string]*workflow.Step{name: {Type: st.Type, Params: st.Params, Items: []string{item}}}})
		p, err := one.Params(workflow.ID{Step: name})
		if err != nil {
			return nil, nil, ": " + err.Error()
		}
		params = p
	}
	task, origin, err := typeTask(row, api.TypeTask{Params: params, Files: files})
	if err != nil {
		return nil, nil, ": " + err.Error()
	}
	return task, origin, ""
}

// runFor reads run key for u: 404 if there is none, 403 for a user who
// may not read it; manage asks for the right to change it (owner,
// managers).
func (s *Server) runFor(w http.ResponseWriter, r *http.Request, manage bool) (*store.User, store.RunRow, bool) {
	u, _, row := lookup(s, w, r, "key", s.db.Run)
	if u == nil {
		return nil, row, false
	}
	if why := mayRun(u, row, manage); why != "" {
		forbidden(w, why)
		return nil, row, false
	}
	return u, row, true
}

// mayRun: a run is read by its owner, inspectors and managers, and
// changed (manage) by its owner and managers; otherwise the refusal.
func mayRun(u *store.User, row store.RunRow, manage bool) string {
	switch {
	case manage && row.Owner != u.ID && !u.Roles.Has(store.RoleManager):
		return "the workflow run belongs to another user (only its owner or a manager changes it)"
	case !ownerOrOverseer(u, row.Owner):
		return "the workflow run belongs to another user"
	}
	return ""
}

func (s *Server) handleWorkflow(w http.ResponseWriter, r *http.Request) {
	_, row, found := s.runFor(w, r, false)
	if !found {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		notAllowed(w, "GET", "HEAD")
		return
	}
	s.answerRun(w, r, row.Key)
}

// answerRun answers with run key as it is now, every step and instance.
func (s *Server) answerRun(w http.ResponseWriter, r *http.Request, key string) {
	row, err := s.db.Run(r.Context(), key)
	if s.lookupFailed(w, r, err) {
		return
	}
	info, err := s.runDetail(r.Context(), row)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	ok(w, &api.WorkflowAnswer{Workflow: info})
}

// runDetail describes a run with its steps, instances and their tasks.
func (s *Server) runDetail(ctx context.Context, row store.RunRow) (api.WorkflowInfo, error) {
	info := runInfo(row)
	run := &workflow.Run{}
	if err := json.Unmarshal(row.Run, run); err != nil {
		return info, fmt.Errorf("unable to read run %s: %w", row.Key, err)
	}
	var src runSources
	if err := json.Unmarshal(row.Steps, &src); err != nil {
		return info, fmt.Errorf("unable to read the steps of run %s: %w", row.Key, err)
	}
	tasks, err := s.db.RunTasks(ctx, row.ID)
	if err != nil {
		return info, err
	}
	byKey := make(map[string]store.RunTask, len(tasks))
	for _, t := range tasks {
		byKey[t.Key] = t
	}
	info.Steps = []api.WorkflowStep{}
	for _, name := range run.Steps() {
		st, _ := run.Step(name)
		state, reason := run.StepState(name)
		ws := api.WorkflowStep{Name: name, State: string(state), Reason: reason, Task: st.Task, Type: st.Type,
			After: st.After, AfterAny: st.AfterAny, AfterFailed: st.AfterFailed, Instances: []api.WorkflowInstance{}}
		for _, in := range run.Instances(name) {
			wi := api.WorkflowInstance{Index: in.Index, Item: in.Item, State: string(in.State), Status: string(in.Status),
				TaskKey: in.TaskKey, Attempt: in.Attempt, Earlier: in.Earlier, Reason: in.Reason}
			key := in.TaskKey
			if key == "" && len(in.Earlier) > 0 {
				key = in.Earlier[len(in.Earlier)-1]
			}
			if why, ok := src.Refused[key]; ok {
				wi.Reason = why
			}
			if t, ok := byKey[key]; ok {
				wi.TaskState, wi.Node = t.State.Lifecycle(), t.AssigneeName
				wi.TimeCreate = djangoTime(t.TimeCreate)
				wi.TimeAssign, wi.TimeFinish = djangoTimeOrEmpty(t.TimeAssign), djangoTimeOrEmpty(t.TimeFinish)
			}
			ws.Instances = append(ws.Instances, wi)
		}
		info.Steps = append(info.Steps, ws)
	}
	return info, nil
}

// cancelRun cancels a running run and its tasks.
func cancelRun(run *workflow.Run) ([]string, error) {
	if st := run.State(); st != workflow.Running {
		// Its state stays what it ended with.
		return nil, refuse("unable to cancel the run: it has ended (%s)", st)
	}
	return run.Cancel(), nil
}

// retryRun runs again what failed, was cancelled or skipped.
func retryRun(run *workflow.Run) ([]string, error) {
	if err := run.Retry(); err != nil {
		return nil, &refusal{err.Error()}
	}
	return nil, nil
}

func (s *Server) handleWorkflowCancel(w http.ResponseWriter, r *http.Request) {
	s.changeRun(w, r, "cancelled", cancelRun)
}

func (s *Server) handleWorkflowRetry(w http.ResponseWriter, r *http.Request) {
	s.changeRun(w, r, "retried", retryRun)
}

// changeRun cancels or retries a run (op, in the run's advance).
func (s *Server) changeRun(w http.ResponseWriter, r *http.Request, what string, op runOp) {
	u, row, found := s.runFor(w, r, true)
	if !found {
		return
	}
	if r.Method != http.MethodPost {
		notAllowed(w, "POST")
		return
	}
	if err := s.advanceRun(r.Context(), row.Key, op); err != nil {
		s.answerSubmit(w, r, err)
		return
	}
	s.log.Info("workflow run "+what, "run", row.Key, "by", u.Name)
	s.answerRun(w, r, row.Key)
}
