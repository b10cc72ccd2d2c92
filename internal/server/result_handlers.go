package server

// This file owns /task/result/: posting a result (POST, the result JSON as
// body) and reading or deleting one. One result per task, ever: the rules
// are in package store (results.go). Answers follow Kolejka: a result for
// an unknown task or from a node that never held it is 403; a bad result,
// unknown reference or second different result is a FAIL; an identical
// replay is OK with the stored result.
//
// Reading waits for the result when asked (?wait=N seconds, at most
// MaxWait): the request returns as soon as the result is stored, or 404 as
// without waiting when the time is up or the server shuts down. A
// cancelled task's result is a FAIL saying so (api.Cancelled), at once,
// also to a request already waiting.
//
//	POST         processors
//	GET/HEAD/PUT the task's owner, inspectors, managers
//	DELETE       the task's owner, managers

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"net/http"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/spec"
)

func (s *Server) handleResultNew(w http.ResponseWriter, r *http.Request) {
	// A result lists every output file: it has its own, larger cap
	// (announced in /settings/ as max_result_body, so that a node can
	// check before uploading anything).
	u, body := s.postBody(w, r, store.RoleProcessor, "only processors post results", s.cfg.MaxResultBody)
	if u == nil {
		return
	}
	res, err := spec.ParseResult(body, spec.ResultFile)
	if err != nil {
		fail(w, "%v", err)
		return
	}
	if res.ID == "" {
		fail(w, "%s: id: missing (the key of the task this is the result of)", spec.ResultFile)
		return
	}
	if err := res.Validate(spec.Server); err != nil {
		fail(w, "%v", err)
		return
	}
	files := references(res.Files)
	desc, err := res.Encode()
	if err != nil {
		fail(w, "%v", err)
		return
	}
	posted, err := s.db.PostResult(r.Context(), store.NewResult{
		TaskKey:     res.ID,
		Poster:      u.ID,
		Description: desc,
		Files:       files,
		Fingerprint: func(blobOf map[string]string) (string, error) { return fingerprint(res, blobOf) },
		Now:         s.now(),
	})
	var fe store.FileErrors
	switch {
	case errors.Is(err, store.ErrNotFound):
		forbidden(w, "no such task")
		return
	case errors.Is(err, store.ErrNotAssigned):
		forbidden(w, "the task is not assigned to you")
		return
	case errors.As(err, &fe):
		fail(w, "%s: %v", spec.ResultFile, fe)
		return
	case errors.Is(err, store.ErrResolved):
		fail(w, "task %s already has a result", res.ID)
		return
	case errors.Is(err, store.ErrCancelled):
		// The FAIL a waiting client gets too: the node can tell it from
		// other refusals and drops the task instead of posting an SE.
		writeJSON(w, api.Cancelled(res.ID))
		return
	case err != nil:
		s.internal(w, r, err)
		return
	}
	if posted.Created {
		if posted.Late {
			s.log.Info("late result accepted from a node that had lost its lease", "task", res.ID, "node", u.Name)
		}
		s.signalResult(res.ID)
		s.signalRoom(u.ID)
		if posted.Callback {
			s.wakeCallbacks()
		}
		// A step of a workflow run: the run goes on now (its dependents
		// are queued before the node hears back).
		s.advanceRunOf(r.Context(), res.ID)
	}
	ok(w, &api.ResultAnswer{Result: posted.Description})
}

// fingerprint identifies a result's content: its canonical encoding with
// each file's reference replaced by the SHA-256 of its blob, so a node
// that re-uploads the same files (new references) posts the same result.
func fingerprint(res *spec.Result, blobOf map[string]string) (string, error) {
	c := *res
	c.Files = maps.Clone(res.Files)
	for name, f := range c.Files {
		c.Files[name] = spec.File{Reference: "sha256:" + blobOf[f.Reference]}
	}
	b, err := c.Encode()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// waitParam reads ?wait= (seconds, or a Kolejka time like "30s"), capped
// at MaxWait.
func (s *Server) waitParam(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, nil
	}
	d, err := spec.ParseTime(v)
	if err != nil {
		return 0, err
	}
	return min(max(d, 0), s.cfg.MaxWait), nil
}

func (s *Server) handleResult(w http.ResponseWriter, r *http.Request) {
	u := signedIn(w, r)
	if u == nil {
		return
	}
	key := r.PathValue("key")
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
	default:
		notAllowed(w, "GET", "HEAD", "PUT", "DELETE")
		return
	}
	wait, err := s.waitParam(r)
	if err != nil {
		fail(w, "wait: %v", err)
		return
	}
	if r.Method == http.MethodDelete {
		wait = 0
	}
	deadline := time.Now().Add(wait)
	for {
		// Subscribe before reading, so a result stored in between wakes us.
		woken, cancel := s.results.Subscribe(key)
		t, err := s.db.Task(r.Context(), key)
		if errors.Is(err, store.ErrNotFound) {
			cancel()
			fail(w, "Task %s is unknown", key)
			return
		}
		if err != nil {
			cancel()
			s.internal(w, r, err)
			return
		}
		if !ownerOrOverseer(u, t.Owner) {
			cancel()
			forbidden(w, "the task belongs to another user")
			return
		}
		res, err := s.db.Result(r.Context(), key)
		if err == nil {
			cancel()
			s.answerResult(w, r, u, t, res)
			return
		}
		if !errors.Is(err, store.ErrNotFound) {
			cancel()
			s.internal(w, r, err)
			return
		}
		if t.State == store.Cancelled {
			// Final: no result will come (api.Cancelled).
			cancel()
			writeJSON(w, api.Cancelled(key))
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			cancel()
			notFound(w)
			return
		}
		stop, live := s.pause(r, woken, s.recheck(deadline))
		cancel()
		if !live {
			return
		}
		if stop {
			deadline = time.Now()
		}
	}
}

func (s *Server) answerResult(w http.ResponseWriter, r *http.Request, u *store.User, t store.Task, res store.StoredResult) {
	if r.Method != http.MethodDelete {
		ok(w, &api.ResultAnswer{Result: res.Description})
		return
	}
	if !ownerOrManager(w, u, t.Owner, "result") {
		return
	}
	s.answerDeleted(w, r, s.db.DeleteResult(r.Context(), t.Key))
}
