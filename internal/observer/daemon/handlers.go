package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/observerwire"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// The commands, as Kolejka's clients send them: POST /<command> with a
// JSON object (an empty body is an empty object), answered 200 with
// {"status": "ok", ...}. GET / (and POST /) answers {"sessions": N,
// "status": "ok"}.
//
//	open                          → session_id, secret
//	attach                        → session_id, secret (a new session, caller in it)
//	attach  session_id, secret    (caller into that session)
//	detach  session_id, secret    (caller back to the session's parent)
//	limits  session_id, secret, limits
//	stats   session_id, secret    → the stats object (Kolejka's needs no secret)
//	freeze, thaw, kill  session_id, secret
//	close   session_id, secret    → the final stats object (Kolejka answers none)
//	adopt   pid, path, limits     → session_id, secret (ours, host root only)
//
// Errors answer {"status": "error", "error": KIND, "message": TEXT} with
// 400 (bad_request), 403 (forbidden), 404 (not_found: the session is
// closed, or an unknown command), 405, 411, 413, 415, 431, 500
// (unsupported: a limit this host cannot enforce; failure: anything else),
// 503 (busy, shutting down). Unknown keys in a request are ignored (Kolejka's
// runner sends the "status" of an earlier answer back); keys it knows must
// have the right type.

// parseParams reads a request body as leniently as Kolejka's server does,
// and as strictly as a typed client deserves: unknown keys and nulls are
// ignored, the keys it knows must have the right type, each error names
// its key.
func parseParams(body []byte) (*observer.Request, error) {
	p := &observer.Request{}
	if len(bytes.TrimSpace(body)) == 0 {
		return p, nil
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("the body is not a JSON object: %v: %w", err, observer.ErrBadRequest)
	}
	if raw == nil {
		return nil, fmt.Errorf("the body is null: want a JSON object: %w", observer.ErrBadRequest)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("the body holds more than one JSON value: %w", observer.ErrBadRequest)
	}
	present := func(key string) (json.RawMessage, bool) {
		v, ok := raw[key]
		return v, ok && string(bytes.TrimSpace(v)) != "null"
	}
	str := func(key string) (*string, error) {
		v, ok := present(key)
		if !ok {
			return nil, nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("%s must be a string, not %s: %w", key, observerwire.Clip(string(v)), observer.ErrBadRequest)
		}
		return &s, nil
	}
	var err error
	if p.SessionID, err = str("session_id"); err != nil {
		return nil, err
	}
	secret, err := str("secret")
	if err != nil {
		return nil, err
	}
	if secret != nil {
		p.Secret = *secret
	}
	if p.Path, err = str("path"); err != nil {
		return nil, err
	}
	if v, ok := present("limits"); ok {
		l, err := spec.ParseLimits(v, "limits")
		if err != nil {
			return nil, fmt.Errorf("%v: %w", err, observer.ErrBadRequest)
		}
		p.Limits = &l
	}
	if v, ok := present("pid"); ok {
		var pid int
		if err := json.Unmarshal(v, &pid); err != nil || pid <= 0 {
			return nil, fmt.Errorf("pid must be a positive integer, not %s: %w", observerwire.Clip(string(v)), observer.ErrBadRequest)
		}
		p.Pid = &pid
	}
	return p, nil
}

// handle answers one request of connection c.
func (s *Server) handle(c *conn, req *request) (int, []byte) {
	body, err := s.dispatch(c, req)
	if err != nil {
		status := statusOf(err)
		kind := kindOf(status)
		if errors.Is(err, observer.ErrUnsupported) {
			kind = observer.KindUnsupported
		}
		level := s.log.Debug
		if status >= 500 {
			level = s.log.Warn
		}
		level("command failed", "command", req.command, "pid", c.peer.Pid, "status", status, "error", err)
		return status, errorBody(kind, err.Error())
	}
	s.log.Debug("command", "command", req.command, "pid", c.peer.Pid)
	return http.StatusOK, body
}

// dispatch checks a request and runs its command (see commands); the body
// it returns is a 200 answer's.
func (s *Server) dispatch(c *conn, req *request) ([]byte, error) {
	switch req.method {
	case http.MethodGet, http.MethodHead:
		if req.command != "" {
			return nil, fmt.Errorf("unknown path %q: %w", observerwire.Clip(req.target), errUnknown)
		}
		return countSessions(&call{r: s.r})
	case http.MethodPost:
	default:
		return nil, fmt.Errorf("method %s: want GET or POST: %w", observerwire.Clip(req.method), errMethod)
	}
	if err := checkContentType(req.header.Get("Content-Type")); err != nil {
		return nil, err
	}
	// The connection may have passed to another process (a child that
	// inherited it) and its opener's pid to a newcomer: act only for the
	// process that connected.
	if !c.peer.alive() {
		return nil, fmt.Errorf("process %d, which opened this connection, is gone: %w", c.peer.Pid, observer.ErrForbidden)
	}
	p, err := parseParams(req.body)
	if err != nil {
		return nil, err
	}
	run, known := commands[req.command]
	if !known {
		return nil, fmt.Errorf("unknown command %q: %w", observerwire.Clip(req.command), errUnknown)
	}
	return run(&call{r: s.r, command: req.command, caller: c.peer, p: p})
}

// checkContentType accepts a JSON body in UTF-8, or one that says nothing.
func checkContentType(ct string) error {
	if ct == "" {
		return nil
	}
	mt, ps, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return fmt.Errorf("Content-Type %q: want application/json: %w", observerwire.Clip(ct), errMediaType)
	}
	if cs, set := ps["charset"]; set && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return fmt.Errorf("charset %q: want utf-8: %w", observerwire.Clip(cs), errMediaType)
	}
	return nil
}

// call is one command as its handler sees it.
type call struct {
	r       *Registry
	command string
	caller  peer
	p       *observer.Request
}

// sessionID is the session the command names.
func (c *call) sessionID() (string, error) {
	if c.p.SessionID == nil {
		return "", fmt.Errorf("%s needs session_id: %w", c.command, observer.ErrBadRequest)
	}
	return *c.p.SessionID, nil
}

// A handler runs one command and returns its answer's body.
type handler func(c *call) ([]byte, error)

// commands are the POST commands by name (see the table above); "" is
// POST /, which counts the sessions as GET / does.
var commands = map[string]handler{
	"":       countSessions,
	"open":   newSession((*Registry).Open),
	"attach": attach,
	"adopt":  adopt,
	"detach": onSession((*Registry).Detach),
	"limits": setLimits,
	"freeze": onSession((*Registry).Freeze),
	"thaw":   onSession((*Registry).Thaw),
	"kill":   onSession((*Registry).Kill),
	"stats":  sessionStats((*Registry).Stats),
	"close":  sessionStats((*Registry).Close),
}

func countSessions(c *call) ([]byte, error) {
	return okBody(observer.Answer{Sessions: ptr(c.r.Count())})
}

// newSession is a command that makes a session for the caller.
func newSession(create func(r *Registry, caller int) (*observer.Session, error)) handler {
	return func(c *call) ([]byte, error) {
		sess, err := create(c.r, c.caller.Pid)
		if err != nil {
			return nil, err
		}
		return okBody(observer.Answer{SessionID: sess.ID, Secret: sess.Secret})
	}
}

// attach without a session_id makes a session with the caller in it; with
// one it moves the caller into that session.
func attach(c *call) ([]byte, error) {
	if c.p.SessionID == nil {
		return newSession((*Registry).AttachNew)(c)
	}
	return onSession((*Registry).Attach)(c)
}

// adopt is for host root only: the worker making a task's cgroup a session.
func adopt(c *call) ([]byte, error) {
	if !hostRoot(c.caller.Pid, c.caller.uid) {
		return nil, fmt.Errorf("adopt is for host root only (process %d, uid %d): %w", c.caller.Pid, c.caller.uid, observer.ErrForbidden)
	}
	if c.p.Pid == nil || c.p.Path == nil {
		return nil, fmt.Errorf("adopt needs pid and path: %w", observer.ErrBadRequest)
	}
	sess, err := c.r.Adopt(c.caller.Pid, *c.p.Pid, *c.p.Path, limitsOf(c.p))
	if err != nil {
		return nil, err
	}
	return okBody(observer.Answer{SessionID: sess.ID, Secret: sess.Secret})
}

// onSession is a command on a session that answers nothing but "ok".
func onSession(op func(r *Registry, caller int, id, secret string) error) handler {
	return func(c *call) ([]byte, error) {
		id, err := c.sessionID()
		if err != nil {
			return nil, err
		}
		if err := op(c.r, c.caller.Pid, id, c.p.Secret); err != nil {
			return nil, err
		}
		return okBody(observer.Answer{})
	}
}

func setLimits(c *call) ([]byte, error) {
	id, err := c.sessionID()
	if err != nil {
		return nil, err
	}
	if err := c.r.SetLimits(c.caller.Pid, id, c.p.Secret, limitsOf(c.p)); err != nil {
		return nil, err
	}
	return okBody(observer.Answer{})
}

// sessionStats is a command that answers a session's stats.
func sessionStats(read func(r *Registry, caller int, id, secret string) (spec.Stats, error)) handler {
	return func(c *call) ([]byte, error) {
		id, err := c.sessionID()
		if err != nil {
			return nil, err
		}
		st, err := read(c.r, c.caller.Pid, id, c.p.Secret)
		if err != nil {
			return nil, err
		}
		return statsBody(st)
	}
}

// Errors that only the wire has.
var (
	errUnknown   = errors.New("not found")
	errMethod    = errors.New("method not allowed")
	errMediaType = errors.New("unsupported media type")
)

// okBody is a 200 answer's body: a with "status": "ok".
func okBody(a observer.Answer) ([]byte, error) {
	a.Status = observer.StatusOK
	return json.Marshal(a)
}

// limitsOf is the limits a request sets (none if it names none).
func limitsOf(p *observer.Request) spec.Limits {
	if p.Limits == nil {
		return spec.Limits{}
	}
	return *p.Limits
}

func ptr[T any](v T) *T { return &v }

// statsBody is the stats object in Kolejka's encoding with "status": "ok"
// added as its last key.
func statsBody(st spec.Stats) ([]byte, error) {
	b, err := st.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, err
	}
	body := bytes.TrimSuffix(out.Bytes(), []byte("}"))
	if len(body) > 1 {
		body = append(body, ',')
	}
	return append(body, `"status":"`+observer.StatusOK+`"}`...), nil
}

// statusOf maps an error to its HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, observer.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, observer.ErrBadRequest), errors.Is(err, cgroup.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, observer.ErrNotFound), errors.Is(err, errUnknown):
		return http.StatusNotFound
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, errMediaType):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, observer.ErrClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, observer.ErrUnsupported):
		return http.StatusInternalServerError
	}
	return http.StatusInternalServerError
}

// kindOf names an error status for the "error" field, which the Go client
// maps back to the sentinel errors.
func kindOf(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusLengthRequired, http.StatusRequestEntityTooLarge,
		http.StatusRequestHeaderFieldsTooLarge, http.StatusUnsupportedMediaType, http.StatusMethodNotAllowed,
		http.StatusExpectationFailed, http.StatusHTTPVersionNotSupported:
		return observer.KindBadRequest
	case http.StatusForbidden:
		return observer.KindForbidden
	case http.StatusNotFound:
		return observer.KindNotFound
	case http.StatusServiceUnavailable:
		return observer.KindBusy
	}
	return observer.KindFailure
}

// errorBody is an error answer.
func errorBody(kind, msg string) []byte {
	b, _ := json.Marshal(observer.Answer{Status: observer.StatusError, Error: kind, Message: msg})
	return b
}
