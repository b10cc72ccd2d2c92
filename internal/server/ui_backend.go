package server

// This file is the web UI's backend (ui.Backend): what the UI's pages ask
// of the server, answered with the functions the API's handlers use for
// the same questions (canReadTask, mayCancelTask, mayCloneTask,
// ownerOrOverseer, overseer, mayRun, mayUseType, mayNameTriggerOwner,
// taskQuery, nodesFor, mayReadNodes, mayReadNode, mayDrainNodes) and the same actions
// (signIn, cancelTask, cloneTask, advanceRun with cancelRun or retryRun,
// SetQueuePaused, SetNodeDrained). A refusal is a
// *ui.Refused with the status code the API answers.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/server/ui"
)

type uiBackend struct{ s *Server }

var _ ui.Backend = uiBackend{}

func forbid(why string) error { return &ui.Refused{Code: http.StatusForbidden, Msg: why} }

func badInput(format string, args ...any) error {
	return &ui.Refused{Code: http.StatusBadRequest, Msg: refuse(format, args...).Error()}
}

// asRefused turns the API's refusal (a FAIL) into the UI's (400).
func asRefused(err error) error {
	var re *refusal
	if errors.As(err, &re) {
		return &ui.Refused{Code: http.StatusBadRequest, Msg: re.msg}
	}
	return err
}

func (b uiBackend) User(r *http.Request) *store.User { return callerOf(r).user }

func (b uiBackend) CSRFToken(w http.ResponseWriter, r *http.Request) string {
	return b.s.ensureCSRFCookie(w, r)
}

func (b uiBackend) SignIn(w http.ResponseWriter, r *http.Request, name, password string) (bool, error) {
	return b.s.signIn(w, r, name, password)
}

func (b uiBackend) SignOut(w http.ResponseWriter, r *http.Request) error { return b.s.signOut(w, r) }

func (b uiBackend) Stopped() <-chan struct{} { return b.s.stopped() }

func (b uiBackend) Now() time.Time { return b.s.now() }

// Tasks lists a page of tasks: an inspector's or manager's view is every
// user's (all=1), a client's its own, as /task/list/ decides.
func (b uiBackend) Tasks(ctx context.Context, u *store.User, f ui.TaskFilter) (ui.TaskPage, error) {
	v := url.Values{"state": {f.State}, "queue": {f.Queue}, "type": {f.Type}, "before": {f.Before}}
	if f.Limit != 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	all := overseer(u)
	if all {
		v.Set("all", "1")
	}
	q, problem, forbiddenAll := taskQuery(v, u)
	switch {
	case forbiddenAll:
		return ui.TaskPage{}, forbid("only inspectors and managers list every user's tasks")
	case problem != "":
		return ui.TaskPage{}, badInput("%s", problem)
	}
	if f.Owner != "" {
		if !all {
			return ui.TaskPage{}, forbid("only inspectors and managers list another user's tasks")
		}
		o, err := b.s.db.UserByName(ctx, f.Owner)
		if errors.Is(err, store.ErrNotFound) {
			return ui.TaskPage{}, badInput("owner: no user %q", f.Owner)
		}
		if err != nil {
			return ui.TaskPage{}, err
		}
		q.Owner = o.ID
	}
	q.Status = f.Status
	limit := q.Limit
	q.Limit++ // one more tells whether there is a next page
	list, err := b.s.db.ListTasksOf(ctx, q)
	if errors.Is(err, store.ErrNotFound) {
		return ui.TaskPage{}, badInput("before: no task %q", q.Before)
	}
	if err != nil {
		return ui.TaskPage{}, err
	}
	p := ui.TaskPage{Tasks: list, All: all}
	if len(list) > limit {
		p.Tasks, p.Next = list[:limit], list[limit-1].Key
	}
	return p, nil
}

// Task reads a task's page for u, who must be allowed to read the task as
// GET /task/task/<key>/ allows it; its result as GET /task/result/ does.
func (b uiBackend) Task(ctx context.Context, u *store.User, key string) (ui.TaskView, error) {
	d, err := b.s.db.TaskDetail(ctx, key)
	if err != nil {
		return ui.TaskView{}, err
	}
	if !canReadTask(u, d.Task) {
		return ui.TaskView{}, forbid("the task belongs to another user")
	}
	v := ui.TaskView{TaskDetail: d, StatusOfTask: d.ResultStatus,
		MayCancel: mayCancelTask(u, d.Owner) == "" && (d.State == store.Queued || d.State == store.Assigned),
		MayClone:  mayCloneTask(u, d.Owner) == ""}
	if d.HasResult && ownerOrOverseer(u, d.Owner) {
		res, err := b.s.db.Result(ctx, key)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return ui.TaskView{}, err
		}
		v.Result = res.Description
		files, err := b.s.db.ResultFiles(ctx, key)
		if err != nil {
			return ui.TaskView{}, err
		}
		for name := range files {
			v.ResultFiles = append(v.ResultFiles, name)
		}
		sort.Strings(v.ResultFiles)
	}
	return v, nil
}

// TaskStates reads the states of those of keys u may read.
func (b uiBackend) TaskStates(ctx context.Context, u *store.User, keys []string) ([]store.TaskState, error) {
	all, err := b.s.db.TaskStates(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, t := range all {
		if canReadTask(u, store.Task{Owner: t.Owner, Assignee: t.Assignee}) {
			out = append(out, t)
		}
	}
	return out, nil
}

func (b uiBackend) CancelTask(ctx context.Context, u *store.User, key string) error {
	t, err := b.s.db.Task(ctx, key)
	if err != nil {
		return err
	}
	if why := mayCancelTask(u, t.Owner); why != "" {
		return forbid(why)
	}
	_, err = b.s.cancelTask(ctx, u, key)
	return asRefused(err)
}

func (b uiBackend) CloneTask(ctx context.Context, u *store.User, key string) (string, error) {
	d, err := b.s.db.TaskDetail(ctx, key)
	if err != nil {
		return "", err
	}
	if why := mayCloneTask(u, d.Owner); why != "" {
		return "", forbid(why)
	}
	desc, err := b.s.cloneTask(ctx, u, d)
	if err != nil {
		return "", asRefused(err)
	}
	var t struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(desc, &t); err != nil {
		return "", err
	}
	return t.ID, nil
}

// ResultFile opens a file of a task's result for u, who must be allowed to
// read the result (GET /task/result/'s rule; the files are the owner's).
func (b uiBackend) ResultFile(ctx context.Context, u *store.User, key, name string) (io.ReadSeekCloser, time.Time, error) {
	t, err := b.s.db.Task(ctx, key)
	if err != nil {
		return nil, time.Time{}, err
	}
	if !ownerOrOverseer(u, t.Owner) {
		return nil, time.Time{}, forbid("the task belongs to another user")
	}
	hash, _, err := b.s.db.ResultFileBlob(ctx, key, name)
	if err != nil {
		return nil, time.Time{}, err
	}
	f, err := b.s.blobs.Open(ctx, hash)
	if err != nil {
		return nil, time.Time{}, err
	}
	return f, f.Info().ModTime, nil
}

// Overview reads the queues' figures (as /queue/stats/, for anyone signed
// in), the last day's ends by minute, and the nodes u reads (nodesFor;
// none shown to a client).
func (b uiBackend) Overview(ctx context.Context, u *store.User) (ui.Overview, error) {
	now := b.s.now()
	qs, err := b.s.db.Queues(ctx)
	if err != nil {
		return ui.Overview{}, err
	}
	fin, err := b.s.db.FinishedPerMinute(ctx, now.Add(-24*time.Hour))
	if err != nil {
		return ui.Overview{}, err
	}
	nodes, why, err := b.s.nodesFor(ctx, u)
	if err != nil {
		return ui.Overview{}, err
	}
	return ui.Overview{Queues: qs, Finished: fin, Now: now, Nodes: nodes, ShowNodes: why == ""}, nil
}

// PauseQueue pauses or resumes a queue: managers only, the web's
// counterpart of `kolejka-server queue pause` (which needs the server's
// machine).
func (b uiBackend) PauseQueue(ctx context.Context, u *store.User, name string, paused bool) error {
	if !u.Roles.Has(store.RoleManager) {
		return forbid("only managers pause and resume queues")
	}
	if err := b.s.SetQueuePaused(ctx, name, paused); err != nil {
		return err
	}
	b.s.log.Info("queue paused or resumed", "queue", name, "paused", paused, "by", u.Name)
	return nil
}

func (b uiBackend) Runs(ctx context.Context, u *store.User) ([]api.WorkflowInfo, error) {
	rows, err := b.s.db.Runs(ctx, u.ID, overseer(u))
	if err != nil {
		return nil, err
	}
	out := make([]api.WorkflowInfo, 0, len(rows))
	for _, row := range rows {
		out = append(out, runInfo(row))
	}
	return out, nil
}

func (b uiBackend) Run(ctx context.Context, u *store.User, key string) (api.WorkflowInfo, bool, error) {
	row, err := b.s.db.Run(ctx, key)
	if err != nil {
		return api.WorkflowInfo{}, false, err
	}
	if why := mayRun(u, row, false); why != "" {
		return api.WorkflowInfo{}, false, forbid(why)
	}
	info, err := b.s.runDetail(ctx, row)
	return info, mayRun(u, row, true) == "", err
}

func (b uiBackend) ChangeRun(ctx context.Context, u *store.User, key string, retry bool) error {
	row, err := b.s.db.Run(ctx, key)
	if err != nil {
		return err
	}
	if why := mayRun(u, row, true); why != "" {
		return forbid(why)
	}
	op, what := cancelRun, "cancelled"
	if retry {
		op, what = retryRun, "retried"
	}
	if err := b.s.advanceRun(ctx, key, op); err != nil {
		return asRefused(err)
	}
	b.s.log.Info("workflow run "+what, "run", key, "by", u.Name)
	return nil
}

func (b uiBackend) Types(ctx context.Context, u *store.User) ([]api.TypeInfo, error) {
	rows, err := b.s.db.Types(ctx, u.ID, overseer(u))
	if err != nil {
		return nil, err
	}
	out := make([]api.TypeInfo, 0, len(rows))
	for _, row := range rows {
		info, _, err := typeInfo(row)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Type reads a type's latest version; another user's private type is as
// if there were none (404), as GET /type/<name>/ answers.
func (b uiBackend) Type(ctx context.Context, u *store.User, name string) (api.TypeInfo, []byte, error) {
	row, err := b.s.db.Type(ctx, name, 0)
	if err != nil {
		return api.TypeInfo{}, nil, err
	}
	if !mayUseType(u, row) {
		return api.TypeInfo{}, nil, store.ErrNotFound
	}
	info, _, err := typeInfo(row)
	return info, row.Description, err
}

func (b uiBackend) Triggers(ctx context.Context, u *store.User) ([]api.TriggerInfo, error) {
	var out []api.TriggerInfo
	for _, schedules := range []bool{true, false} {
		rows, err := b.s.db.Triggers(ctx, u.ID, overseer(u), schedules)
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			info, err := triggerInfo(row)
			if err != nil {
				return nil, err
			}
			out = append(out, info)
		}
	}
	return out, nil
}

// Trigger reads a schedule or trigger with its latest firings; naming
// another user's is triggerFor's rule.
func (b uiBackend) Trigger(ctx context.Context, u *store.User, ref ui.TriggerRef) (api.TriggerInfo, error) {
	owner := u.ID
	if ref.Owner != u.Name {
		if why := mayNameTriggerOwner(u, false); why != "" {
			return api.TriggerInfo{}, forbid(why)
		}
		o, err := b.s.db.UserByName(ctx, ref.Owner)
		if err != nil {
			return api.TriggerInfo{}, err
		}
		owner = o.ID
	}
	row, err := b.s.db.Trigger(ctx, owner, ref.Name)
	if err != nil {
		return api.TriggerInfo{}, err
	}
	return b.s.triggerDetail(ctx, row, 20)
}

// ReadsNodes says whether u reads nodes (mayReadNodes), for the
// navigation's link.
func (b uiBackend) ReadsNodes(u *store.User) bool { return mayReadNodes(u) == "" }

// Nodes lists the nodes u reads as GET /node/ does (nodesFor: managers
// and inspectors all, a processor itself, clients none: 403).
func (b uiBackend) Nodes(ctx context.Context, u *store.User) (ui.NodeList, error) {
	nodes, why, err := b.s.nodesFor(ctx, u)
	if err != nil {
		return ui.NodeList{}, err
	}
	if why != "" {
		return ui.NodeList{}, forbid(why)
	}
	return ui.NodeList{Nodes: nodes, Lease: b.s.cfg.LeaseTime, MayDrain: mayDrainNodes(u) == ""}, nil
}

// Node reads a node as GET /node/<name>/ does: a name that is no node is
// 404, another's node 403 (mayReadNode).
func (b uiBackend) Node(ctx context.Context, u *store.User, name string) (api.Node, bool, error) {
	n, err := b.s.Node(ctx, name)
	if err != nil {
		return api.Node{}, false, err
	}
	if why := mayReadNode(u, name); why != "" {
		return api.Node{}, false, forbid(why)
	}
	return n, mayDrainNodes(u) == "", nil
}

// DrainNode drains or undrains a node: POST /node/<name>/drain/'s rule
// (mayDrainNodes) and action (SetNodeDrained).
func (b uiBackend) DrainNode(ctx context.Context, u *store.User, name string, drained bool) error {
	if why := mayDrainNodes(u); why != "" {
		return forbid(why)
	}
	n, err := b.s.SetNodeDrained(ctx, name, drained)
	if err != nil {
		return err
	}
	if drained {
		b.s.log.Info("node drained", "node", n.Name, "by", u.Name)
	} else {
		b.s.log.Info("node undrained", "node", n.Name, "by", u.Name)
	}
	return nil
}
