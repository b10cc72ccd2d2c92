package server

// This file owns the task lifecycle's routes (extensions task_list,
// task_detail, cancel, clone): a user's listing of tasks, a task's state
// and history in GET /task/task/<key>/, cancelling and cloning.
//
//	GET  /task/list/?state=&queue=&type=&all=1&before=&limit=
//	                                 signed in: own tasks; all=1 inspectors, managers
//	POST /task/task/<key>/cancel/    the task's owner, managers
//	POST /task/task/<key>/clone/     clients among its owner, inspectors, managers
//
// Cancelling wakes whoever waits for the task's result: the answer is
// api.Cancelled. A running task's node learns at its next heartbeat that
// it lost the task, and kills it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/tasktype"
	"github.com/kolejka-go/kolejka/spec"
)

// Bounds of a listing's page.
const (
	defaultListLimit = 50
	maxListLimit     = 1000
)

// stateOf reads a state's name (api.States).
func stateOf(name string) (store.State, bool) {
	for _, s := range []store.State{store.Queued, store.Assigned, store.Done, store.Cancelled} {
		if s.Lifecycle() == name {
			return s, true
		}
	}
	return 0, false
}

// djangoTimeOrEmpty is djangoTime, "" for the zero time (not yet).
func djangoTimeOrEmpty(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return djangoTime(t)
}

// listQuery reads GET /task/list/'s parameters for user u: a message
// naming the parameter when one is bad, and whether all=1 was asked by a
// user who may not (403).
func listQuery(r *http.Request, u *store.User) (q store.TaskQuery, problem string, forbiddenAll bool) {
	return taskQuery(r.URL.Query(), u)
}

// taskQuery reads a task listing's parameters (state, queue, type, limit,
// all, before) for user u, as listQuery says.
func taskQuery(v url.Values, u *store.User) (q store.TaskQuery, problem string, forbiddenAll bool) {
	q = store.TaskQuery{Owner: u.ID, Limit: defaultListLimit, Queue: v.Get("queue"), Type: v.Get("type"), Before: v.Get("before")}
	if s := v.Get("state"); s != "" {
		st, ok := stateOf(s)
		if !ok {
			return q, `state: "` + s + `" is not one of queued, running, done, cancelled`, false
		}
		q.State = &st
	}
	if q.Queue != "" {
		if err := spec.CheckName(q.Queue); err != nil {
			return q, "queue: " + err.Error(), false
		}
	}
	if q.Type != "" {
		if err := spec.CheckName(q.Type); err != nil {
			return q, "type: " + err.Error(), false
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxListLimit {
			return q, `limit: "` + s + `" is not a whole number from 1 to ` + strconv.Itoa(maxListLimit), false
		}
		q.Limit = n
	}
	switch v.Get("all") {
	case "", "0", "false":
	case "1", "true":
		if !overseer(u) {
			return q, "", true
		}
		q.Owner = 0
	default:
		return q, `all: "` + v.Get("all") + `" is not 1 or 0`, false
	}
	return q, "", false
}

func (s *Server) handleTaskList(w http.ResponseWriter, r *http.Request) {
	u := getBy(w, r)
	if u == nil {
		return
	}
	q, problem, forbiddenAll := listQuery(r, u)
	switch {
	case forbiddenAll:
		forbidden(w, "only inspectors and managers list every user's tasks")
		return
	case problem != "":
		fail(w, "task list: %s", problem)
		return
	}
	limit := q.Limit
	q.Limit++ // one more tells whether there is a next page
	list, err := s.db.ListTasksOf(r.Context(), q)
	if errors.Is(err, store.ErrNotFound) {
		fail(w, "task list: before: no task %q", q.Before)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := &api.TaskListAnswer{Tasks: make([]api.TaskSummary, 0, min(len(list), limit))}
	for i, t := range list {
		if i == limit {
			out.Next = list[i-1].Key
			break
		}
		out.Tasks = append(out.Tasks, api.TaskSummary{
			Attempts: t.Attempts, Key: t.Key, Node: t.Node, Owner: t.OwnerName, Queue: t.Queue, State: t.State.Lifecycle(),
			TimeCreate: djangoTime(t.TimeCreate), TimeFinish: djangoTimeOrEmpty(t.TimeFinish), Type: t.TypeName,
			Run: t.Run, Step: stepName(t.Run, t.Step, t.Item),
		})
	}
	ok(w, out)
}

// taskAnswer is GET /task/task/<key>/'s answer: Kolejka's "task", our
// "assignee", "attempts" and "resolved", and the lifecycle's keys.
func (s *Server) taskAnswer(ctx context.Context, key string) (*api.TaskAnswer, error) {
	d, err := s.db.TaskDetail(ctx, key)
	if err != nil {
		return nil, err
	}
	a := &api.TaskAnswer{
		Assignments: make([]api.Attempt, 0, len(d.History)),
		Attempts:    d.Attempts, Node: d.Node, Origin: d.Origin, Queue: d.Queue, Resolved: d.HasResult, ResultStatus: d.ResultStatus,
		State: d.State.Lifecycle(), Task: d.Description, Type: d.TypeName,
		TimeCreate: djangoTime(d.TimeCreate), TimeStart: djangoTimeOrEmpty(d.TimeStart), TimeFinish: djangoTimeOrEmpty(d.TimeFinish),
		Run: d.Run, Step: stepName(d.Run, d.Step, d.Item),
	}
	if !d.HasResult {
		a.Assignee = d.AssigneeName
	}
	for _, h := range d.History {
		a.Assignments = append(a.Assignments, api.Attempt{Attempt: h.Attempt, Node: h.Node, TimeAssign: djangoTime(h.TimeAssign)})
	}
	return a, nil
}

// mayCancelTask: a task's owner and managers cancel it; otherwise the
// refusal.
func mayCancelTask(u *store.User, owner int64) string {
	if owner != u.ID && !u.Roles.Has(store.RoleManager) {
		return "only the owner or a manager cancels a task"
	}
	return ""
}

// overseer: inspectors and managers read every user's tasks, runs, types,
// schedules and triggers (and list them all).
func overseer(u *store.User) bool {
	return u.Roles.Any(store.RoleInspector | store.RoleManager)
}

// ownerOrOverseer: what owner owns is read by its owner, inspectors and
// managers (a task's result, a task to clone).
func ownerOrOverseer(u *store.User, owner int64) bool {
	return owner == u.ID || overseer(u)
}

// mayCloneTask: clients among a task's owner, inspectors and managers
// submit it again; otherwise the refusal.
func mayCloneTask(u *store.User, owner int64) string {
	if !ownerOrOverseer(u, owner) {
		return "the task belongs to another user"
	}
	if !u.Roles.Has(store.RoleClient) {
		return "only clients submit tasks"
	}
	return ""
}

// errFinishedTask is a cancel of a task that has its result, as the API
// words it.
func errFinishedTask(key string) error {
	return refuse("task %s is finished (it has its result); a finished task cannot be cancelled", key)
}

// cancelTask cancels task key for u (allowed by mayCancelTask) and wakes
// whoever the cancel concerns. A finished task is a refusal.
func (s *Server) cancelTask(ctx context.Context, u *store.User, key string) (store.CancelResult, error) {
	res, err := s.db.Cancel(ctx, key, s.now())
	if errors.Is(err, store.ErrFinished) {
		return res, errFinishedTask(key)
	}
	if err != nil {
		return res, err
	}
	if res.Was != store.Cancelled {
		s.log.Info("task cancelled", "task", key, "by", u.Name, "was", res.Was.Lifecycle())
		s.signalResult(key) // a client waiting for its result stops now
		if res.Was == store.Assigned {
			s.signalQueue() // its node holds one task less: a waiting dequeue may take more
		}
		s.advanceRunOf(ctx, key) // a step's task cancelled on its own ends it (SE)
	}
	return res, nil
}

func (s *Server) handleTaskCancel(w http.ResponseWriter, r *http.Request) {
	u, key, t := lookup(s, w, r, "key", s.db.Task)
	if u == nil {
		return
	}
	if why := mayCancelTask(u, t.Owner); why != "" {
		forbidden(w, why)
		return
	}
	if r.Method != http.MethodPost {
		notAllowed(w, "POST")
		return
	}
	res, err := s.cancelTask(r.Context(), u, key)
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		fail(w, "%s", ref.msg)
		return
	case s.lookupFailed(w, r, err):
		return
	}
	ok(w, &api.CancelAnswer{State: api.StateCancelled, Was: res.Was.Lifecycle()})
}

// cloneTask submits task d again as u's (allowed by mayCloneTask); it
// returns the new task's description, or the submission's refusal.
func (s *Server) cloneTask(ctx context.Context, u *store.User, d store.TaskDetail) ([]byte, error) {
	t, err := spec.ParseTask(d.Description, "task "+d.Key)
	if err != nil {
		return nil, err
	}
	var origin *tasktype.Origin
	if len(d.Origin) > 0 {
		origin = new(tasktype.Origin)
		if err := json.Unmarshal(d.Origin, origin); err != nil {
			return nil, fmt.Errorf("unable to read the origin of task %s: %w", d.Key, err)
		}
	}
	return s.submit(ctx, u, t, origin)
}

func (s *Server) handleTaskClone(w http.ResponseWriter, r *http.Request) {
	u, _, d := lookup(s, w, r, "key", s.db.TaskDetail)
	if u == nil {
		return
	}
	// Reading first (403 for another's task), then the method, then the role.
	if !ownerOrOverseer(u, d.Owner) {
		forbidden(w, "the task belongs to another user")
		return
	}
	if r.Method != http.MethodPost {
		notAllowed(w, "POST")
		return
	}
	if why := mayCloneTask(u, d.Owner); why != "" {
		forbidden(w, why)
		return
	}
	desc, err := s.cloneTask(r.Context(), u, d)
	if s.answerSubmit(w, r, err) {
		ok(w, &api.NewTaskAnswer{Task: desc})
	}
}

// stepName names a task's step in its run: "step", or "step[i]" for an
// instance of a step with items (item -1: a step that runs once).
func stepName(run, step string, item int) string {
	if run == "" || item < 0 {
		return step
	}
	return step + "[" + strconv.Itoa(item) + "]"
}
