package server

// This file owns /task/task/: submitting a task (POST, the task JSON as
// body) and reading or deleting one.
//
// Submission (stricter than Kolejka's, as the contract marks): the task is
// parsed strictly
// (unknown keys, bad units, paths leaving the folder are a FAIL naming the
// field), gets a fresh id (32 hex) whatever it carried, loses its files'
// local paths, has the server's caps merged into its limits (field-wise
// minimum, gpus like any other), and every file's reference must exist and
// be the submitter's (inspectors and managers may use anyone's).
//
//	POST        clients
//	GET/HEAD/PUT its owner, the node it is (or was last) assigned to, inspectors, managers
//	DELETE      its owner, managers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/auth"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/tasktype"
	"github.com/kolejka-go/kolejka/spec"
)

func (s *Server) handleTaskNew(w http.ResponseWriter, r *http.Request) {
	u, body := s.postBody(w, r, store.RoleClient, "only clients submit tasks", s.cfg.MaxJSONBody)
	if u == nil {
		return
	}
	t, err := spec.ParseTask(body, spec.TaskFile)
	if err != nil {
		fail(w, "%v", err)
		return
	}
	desc, err := s.submit(r.Context(), u, t, nil)
	if s.answerSubmit(w, r, err) {
		ok(w, &api.NewTaskAnswer{Task: desc})
	}
}

// refusal is a submission the server refuses: its message is the FAIL's.
type refusal struct{ msg string }

func (e *refusal) Error() string { return e.msg }

func refuse(format string, args ...any) error { return &refusal{fmt.Sprintf(format, args...)} }

// submit checks and records task t for user u, as every way of submitting
// (a posted task, a rendered type, a clone) does; origin, if not nil, is
// what it was rendered from. It returns the stored description. Errors
// the user caused are *refusal.
func (s *Server) submit(ctx context.Context, u *store.User, t *spec.Task, origin *tasktype.Origin) ([]byte, error) {
	nt, err := s.prepare(ctx, u, t, origin)
	if err != nil {
		return nil, err
	}
	_, err = s.db.InsertTask(ctx, nt)
	if err := insertRefusal(err); err != nil {
		return nil, err
	}
	s.signalQueue()
	return nt.Description, nil
}

// insertRefusal turns the store's refusals of a task insert into
// *refusal; other errors pass as they are.
func insertRefusal(err error) error {
	var fe store.FileErrors
	if errors.As(err, &fe) {
		return refuse("%s: %v", spec.TaskFile, fe)
	}
	var qe *store.QueueError
	if errors.As(err, &qe) {
		return refuse("%s: queue: %v", spec.TaskFile, qe)
	}
	return err
}

// prepare makes the checks of submit, every one but the store's (the
// references, the queue's existence), and returns the task to record:
// submit inserts it alone, a workflow run's advance in its transaction.
func (s *Server) prepare(ctx context.Context, u *store.User, t *spec.Task, origin *tasktype.Origin) (store.NewTask, error) {
	// The server names the task; whatever id it carried is replaced, so a
	// client cannot pick (or collide with) another task's key.
	t.ID = auth.RandomKey(16)
	if err := t.Validate(spec.Server); err != nil {
		return store.NewTask{}, &refusal{err.Error()}
	}
	if err := unrunnableLimits(t.Limits, "limits"); err != nil {
		// Accepted, it would fail on its node (SE) after waiting its turn.
		return store.NewTask{}, refuse("%s: %v", spec.TaskFile, err)
	}
	files := references(t.Files)
	t.Limits = t.Limits.Merge(s.cfg.Limits)
	if t.CallbackURL != "" && !s.callbackAllowed(t.CallbackURL) {
		if len(s.cfg.CallbackHosts) == 0 {
			return store.NewTask{}, refuse("%s: callback_url: this server delivers no callbacks (no callback hosts are allowed)", spec.TaskFile)
		}
		return store.NewTask{}, refuse("%s: callback_url: the host of %q is not among the allowed callback hosts", spec.TaskFile, t.CallbackURL)
	}
	queue := t.Queue
	if queue == "" {
		queue = spec.DefaultQueue
	}
	desc, err := t.Encode()
	if err != nil {
		return store.NewTask{}, &refusal{err.Error()}
	}
	limits, err := t.Limits.MarshalJSON()
	if err != nil {
		return store.NewTask{}, &refusal{err.Error()}
	}
	nt := store.NewTask{
		Key:         t.ID,
		Owner:       u.ID,
		ReadAll:     overseer(u),
		Description: desc,
		Limits:      limits,
		Requires:    t.Requires,
		Exclusive:   t.Exclusive != nil && *t.Exclusive,
		CallbackURL: t.CallbackURL,
		Files:       files,
		Queue:       queue,
		Submitter:   u.Name,
		Now:         s.now(),
	}
	if origin != nil {
		nt.TypeName, nt.TypeVersion = origin.Type, origin.Version
		if nt.Origin, err = json.Marshal(origin); err != nil {
			return store.NewTask{}, fmt.Errorf("unable to encode the task's origin: %w", err)
		}
	}
	return nt, nil
}

// answerSubmit answers a failed submission (a FAIL for a refusal, 500
// otherwise) and reports whether err was nil.
func (s *Server) answerSubmit(w http.ResponseWriter, r *http.Request, err error) bool {
	var re *refusal
	switch {
	case err == nil:
		return true
	case errors.As(err, &re):
		fail(w, "%s", re.msg)
	default:
		s.internal(w, r, err)
	}
	return false
}

// references drops the local paths of a posted task's or result's files
// (the server keeps only references) and returns the references by name.
func references(files map[string]spec.File) map[string]string {
	refs := make(map[string]string, len(files))
	for name, f := range files {
		refs[name] = f.Reference
		files[name] = spec.File{Reference: f.Reference}
	}
	return refs
}

func canReadTask(u *store.User, t store.Task) bool {
	return t.Owner == u.ID || (t.Assignee != 0 && t.Assignee == u.ID) || overseer(u)
}

func (s *Server) handleTask(w http.ResponseWriter, r *http.Request) {
	u, key, t := lookup(s, w, r, "key", s.db.Task)
	if u == nil {
		return
	}
	if !canReadTask(u, t) {
		forbidden(w, "the task belongs to another user")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut:
		// Our extensions beside "task" (Kolejka's clients ignore them):
		// where the task is, so `kolejka-client execute` can say so, and
		// its lifecycle (lifecycle_handlers.go).
		answer, err := s.taskAnswer(r.Context(), key)
		if s.lookupFailed(w, r, err) {
			return
		}
		ok(w, answer)
	case http.MethodDelete:
		if !ownerOrManager(w, u, t.Owner, "task") {
			return
		}
		run, err := s.db.RunOfTask(r.Context(), key)
		if err == nil {
			err = s.db.DeleteTask(r.Context(), key)
		}
		if err == nil {
			s.signalResult(key) // a client waiting for its result learns it is gone
			if run != "" {
				// A step's task deleted: its instance ends (SE) and the run goes on.
				if err := s.advanceRun(r.Context(), run, nil); err != nil {
					s.log.Error("unable to advance a workflow run", "run", run, "task", key, "error", err)
				}
			}
		}
		s.answerDeleted(w, r, err)
	default:
		notAllowed(w, "GET", "HEAD", "PUT", "DELETE")
	}
}
