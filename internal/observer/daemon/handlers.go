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
//	stats   session_id, secret    → the stats object (FIX: Kolejka needs no secret)
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
			return nil, fmt.Errorf("%s must be a string, not %s: %w", key, clip(string(v)), observer.ErrBadRequest)
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
			return nil, fmt.Errorf("pid must be a positive integer, not %s: %w", clip(string(v)), observer.ErrBadRequest)
		}
		p.Pid = &pid
	}
	return p, nil
}

// handle answers one request of connection c.
func (s *Server) handle(c *conn, req *request) (int, []byte) {
	status, body, err := s.dispatch(c, req)
	if err != nil {
		status = statusOf(err)
		kind := kindOf(status)
		if errors.Is(err, observer.ErrUnsupported) {
			kind = observer.KindUnsupported
		}
		body = errorBody(kind, err.Error())
		level := s.log.Debug
		if status >= 500 {
			level = s.log.Warn
		}
		level("command failed", "command", req.command, "pid", c.peer.Pid, "status", status, "error", err)
		return status, body
	}
	s.log.Debug("command", "command", req.command, "pid", c.peer.Pid)
	return status, body
}

func (s *Server) dispatch(c *conn, req *request) (int, []byte, error) {
	switch req.method {
	case http.MethodGet, http.MethodHead:
		if req.command != "" {
			return 0, nil, fmt.Errorf("unknown path %q: %w", clip(req.target), errUnknown)
		}
		return ok(observer.Answer{Sessions: ptr(s.r.Count())})
	case http.MethodPost:
	default:
		return 0, nil, fmt.Errorf("method %s: want GET or POST: %w", clip(req.method), errMethod)
	}
	if ct := req.header.Get("Content-Type"); ct != "" {
		mt, ps, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return 0, nil, fmt.Errorf("Content-Type %q: want application/json: %w", clip(ct), errMediaType)
		}
		if cs, set := ps["charset"]; set && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
			return 0, nil, fmt.Errorf("charset %q: want utf-8: %w", clip(cs), errMediaType)
		}
	}
	// The connection may have passed to another process (a child that
	// inherited it) and its opener's pid to a newcomer: act only for the
	// process that connected.
	if !c.peer.alive() {
		return 0, nil, fmt.Errorf("process %d, which opened this connection, is gone: %w", c.peer.Pid, observer.ErrForbidden)
	}
	p, err := parseParams(req.body)
	if err != nil {
		return 0, nil, err
	}
	pid := c.peer.Pid
	id := func() (string, error) {
		if p.SessionID == nil {
			return "", fmt.Errorf("%s needs session_id: %w", req.command, observer.ErrBadRequest)
		}
		return *p.SessionID, nil
	}
	switch req.command {
	case "":
		return ok(observer.Answer{Sessions: ptr(s.r.Count())})
	case "open", "attach":
		if req.command == "attach" && p.SessionID != nil {
			if err := s.r.Attach(pid, *p.SessionID, p.Secret); err != nil {
				return 0, nil, err
			}
			return ok(observer.Answer{})
		}
		create := s.r.Open
		if req.command == "attach" {
			create = s.r.AttachNew
		}
		sess, err := create(pid)
		if err != nil {
			return 0, nil, err
		}
		return ok(observer.Answer{SessionID: sess.ID, Secret: sess.Secret})
	case "adopt":
		if !hostRoot(pid, c.peer.uid) {
			return 0, nil, fmt.Errorf("adopt is for host root only (process %d, uid %d): %w", pid, c.peer.uid, observer.ErrForbidden)
		}
		if p.Pid == nil || p.Path == nil {
			return 0, nil, fmt.Errorf("adopt needs pid and path: %w", observer.ErrBadRequest)
		}
		sess, err := s.r.Adopt(pid, *p.Pid, *p.Path, limitsOf(p))
		if err != nil {
			return 0, nil, err
		}
		return ok(observer.Answer{SessionID: sess.ID, Secret: sess.Secret})
	case "detach", "limits", "stats", "freeze", "thaw", "kill", "close":
	default:
		return 0, nil, fmt.Errorf("unknown command %q: %w", clip(req.command), errUnknown)
	}
	sid, err := id()
	if err != nil {
		return 0, nil, err
	}
	switch req.command {
	case "detach":
		err = s.r.Detach(pid, sid, p.Secret)
	case "limits":
		err = s.r.SetLimits(pid, sid, p.Secret, limitsOf(p))
	case "freeze":
		err = s.r.Freeze(pid, sid, p.Secret)
	case "thaw":
		err = s.r.Thaw(pid, sid, p.Secret)
	case "kill":
		err = s.r.Kill(pid, sid, p.Secret)
	case "stats", "close":
		var st spec.Stats
		if req.command == "stats" {
			st, err = s.r.Stats(pid, sid, p.Secret)
		} else {
			st, err = s.r.Close(pid, sid, p.Secret)
		}
		if err != nil {
			return 0, nil, err
		}
		body, err := statsBody(st)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, body, nil
	}
	if err != nil {
		return 0, nil, err
	}
	return ok(observer.Answer{})
}

// Errors that only the wire has.
var (
	errUnknown   = errors.New("not found")
	errMethod    = errors.New("method not allowed")
	errMediaType = errors.New("unsupported media type")
)

// ok answers 200 with a and "status": "ok".
func ok(a observer.Answer) (int, []byte, error) {
	a.Status = observer.StatusOK
	b, err := json.Marshal(a)
	return http.StatusOK, b, err
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
