package server

// This file owns the shapes of answers, as Kolejka's Django views make
// them: JSON objects with "status": "OK" or "FAIL" (+ "message") and HTTP
// 200; 403 when not authorised (a short plain-text reason, which Kolejka's
// client ignores); 404 for unknown objects; 405 with Allow for wrong
// methods. Content-Type is exactly "application/json": Kolejka's client
// compares it literally before looking at "status".

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/blobs"
	"github.com/kolejka-go/kolejka/internal/server/store"
)

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal server error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body) // a client gone has no use for the error
}

// ok answers a with "status": "OK".
func ok(w http.ResponseWriter, a api.Answer) { writeJSON(w, api.OK(a)) }

// fail answers {"message": …, "status": "FAIL"}.
func fail(w http.ResponseWriter, format string, args ...any) {
	writeJSON(w, api.Fail(fmt.Sprintf(format, args...)))
}

func plain(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if msg != "" {
		_, _ = io.WriteString(w, msg+"\n") // as writeJSON's Write
	}
}

// forbidden is Kolejka's bare 403, with the reason as plain text.
func forbidden(w http.ResponseWriter, reason string) { plain(w, http.StatusForbidden, reason) }

func notFound(w http.ResponseWriter) { plain(w, http.StatusNotFound, "") }

func notAllowed(w http.ResponseWriter, allowed ...string) {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	plain(w, http.StatusMethodNotAllowed, "")
}

func tooLarge(w http.ResponseWriter, limit int64) {
	w.Header().Set("Connection", "close")
	plain(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", limit))
}

// internal answers 500 and logs err; a full disk is 507 and a blob store
// that failed 503 (outOfStorage, blobsUnavailable).
func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	if storageFull(err) {
		s.outOfStorage(w, r, err)
		return
	}
	if errors.Is(err, blobs.ErrBackend) {
		s.blobsUnavailable(w, r, err)
		return
	}
	s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	plain(w, http.StatusInternalServerError, "internal server error")
}

// outOfStorage answers 507: the request was fine, the server has no room
// to keep it, and nothing of it was kept. Clients can retry later.
func (s *Server) outOfStorage(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("out of storage, request refused", "method", r.Method, "path", r.URL.Path, "error", err)
	plain(w, http.StatusInsufficientStorage, "the server is out of disk space; nothing was stored, try again later")
}

// blobsRetryAfter is the Retry-After of a 503 for a blob store that failed,
// in seconds: long enough not to hammer a server that restarts, short
// enough that a grid waits little once it is back.
const blobsRetryAfter = 10

// blobsUnavailable answers 503 with Retry-After: the blob store (an S3
// bucket that is down, unreachable or failing) did not take or give the
// bytes. What failed changed nothing: an upload recorded no reference, a
// delete deleted nothing, a download sent no byte (one cut mid-stream is
// aborted instead, see serveBlob). Clients retry later; the next request
// tries the store again, so nothing needs a restart when it comes back.
func (s *Server) blobsUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("blob store unavailable, request refused", "method", r.Method, "path", r.URL.Path, "error", err)
	w.Header().Set("Retry-After", strconv.Itoa(blobsRetryAfter))
	msg := "the server's blob store is unavailable; try again later"
	switch r.Method {
	case http.MethodPost, http.MethodPut:
		msg = "the server's blob store is unavailable; nothing was stored, try again later"
	case http.MethodDelete:
		msg = "the server's blob store is unavailable; nothing was deleted, try again later"
	}
	plain(w, http.StatusServiceUnavailable, msg)
}

// storageFull reports whether err means the server's disk (or quota) is
// full: a file write's ENOSPC/EDQUOT, or SQLite's SQLITE_FULL.
func storageFull(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrFull
}

// readBody reads a JSON or form body of at most MaxJSONBody bytes. On
// failure it has answered (413 over the limit, 400 if the client went away
// mid-body) and returns false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	return s.readBodyUpTo(w, r, s.cfg.MaxJSONBody)
}

// readBodyUpTo is readBody with another cap (results: MaxResultBody).
func (s *Server) readBodyUpTo(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if r.ContentLength > limit {
		tooLarge(w, limit)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			tooLarge(w, limit)
		} else {
			plain(w, http.StatusBadRequest, "unable to read request body")
		}
		return nil, false
	}
	return body, true
}

// djangoTime writes a time as Django's JSON encoder: ISO 8601 in UTC with
// "Z", milliseconds when the time has a fractional second.
func djangoTime(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/1000 != 0 {
		return t.Format("2006-01-02T15:04:05.000Z")
	}
	return t.Format("2006-01-02T15:04:05Z")
}

// lookupFailed answers a failed lookup of the object a request names, 404
// when it does not exist and 500 otherwise, and reports whether it did.
func (s *Server) lookupFailed(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrNotFound):
		notFound(w)
	default:
		s.internal(w, r, err)
	}
	return true
}

// lookup finds the object a request names by its path value param, for a
// signed-in caller. On failure it has answered (403 not signed in, 404
// unknown, 500) and returns a nil user.
func lookup[T any](s *Server, w http.ResponseWriter, r *http.Request, param string, find func(context.Context, string) (T, error)) (u *store.User, key string, obj T) {
	if u = signedIn(w, r); u == nil {
		return nil, "", obj
	}
	key = r.PathValue(param)
	obj, err := find(r.Context(), key)
	if s.lookupFailed(w, r, err) {
		return nil, "", obj
	}
	return u, key, obj
}

// ownerOrManager admits u to delete what owner owns; otherwise it answers
// 403 saying who may delete what and returns false.
func ownerOrManager(w http.ResponseWriter, u *store.User, owner int64, what string) bool {
	if owner != u.ID && !u.Roles.Has(store.RoleManager) {
		forbidden(w, "only the owner or a manager deletes a "+what)
		return false
	}
	return true
}

// answerDeleted answers a DELETE whose deletion ended with err: deleted;
// 404 if the object went meanwhile; a FAIL naming the task or result that
// uses a reference or blob; 500 otherwise.
func (s *Server) answerDeleted(w http.ResponseWriter, r *http.Request, err error) {
	var inUse *store.InUseError
	switch {
	case err == nil:
		ok(w, &api.DeletedAnswer{Deleted: true})
	case errors.As(err, &inUse):
		fail(w, "%v", inUse)
	case errors.Is(err, store.ErrNotFound):
		notFound(w)
	default:
		s.internal(w, r, err)
	}
}
