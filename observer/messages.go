package observer

import "github.com/kolejka-go/kolejka/spec"

// The messages of the observer protocol (docs/kolejka-protocol.md §5), as
// the client sends them and the daemon reads and writes them. A command is
// POST /<command> with a Request; GET / asks how many sessions are open.
// A command answers 200 with an Answer whose Status is StatusOK (stats and
// close answer the stats object instead, with "status": "ok" added), or an
// error status with an Answer whose Status is StatusError, Error one of
// the kinds below and Message the text.

// Request is the JSON object of a command. Each command reads the fields
// it needs:
//
//	open, attach                 (none)  → SessionID, Secret
//	attach  SessionID, Secret            (the caller into that session)
//	detach, freeze, thaw, kill   SessionID, Secret
//	limits  SessionID, Secret, Limits
//	stats, close  SessionID, Secret      → the stats object
//	adopt   Pid, Path, Limits    (host root only) → SessionID, Secret
//
// Absent fields, and nulls, are nil (Secret ""); unknown keys are ignored.
type Request struct {
	SessionID *string      `json:"session_id,omitempty"`
	Secret    string       `json:"secret,omitempty"`
	Limits    *spec.Limits `json:"limits,omitempty"`
	Pid       *int         `json:"pid,omitempty"`
	Path      *string      `json:"path,omitempty"`
}

// Answer is the JSON object of every answer but the stats ones. Its fields
// are in the order of their names, so an answer's bytes are those of
// Kolejka's dictionaries dumped with sorted keys.
type Answer struct {
	Error     string `json:"error,omitempty"`   // the kind, when Status is StatusError
	Message   string `json:"message,omitempty"` // what went wrong, for people
	Secret    string `json:"secret,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	Sessions  *int   `json:"sessions,omitempty"` // GET /: how many sessions are open
	Status    string `json:"status"`
}

// An Answer's Status.
const (
	StatusOK    = "ok"
	StatusError = "error"
)

// The kinds of an error Answer, and the sentinel error each maps to.
const (
	KindBadRequest  = "bad_request" // ErrBadRequest
	KindForbidden   = "forbidden"   // ErrForbidden
	KindNotFound    = "not_found"   // ErrNotFound
	KindUnsupported = "unsupported" // ErrUnsupported
	KindBusy        = "busy"        // ErrClosed: the daemon is shutting down or full
	KindFailure     = "failure"     // anything else
)

// errorOfKind is the sentinel an error kind names (nil for KindFailure).
var errorOfKind = map[string]error{
	KindBadRequest:  ErrBadRequest,
	KindForbidden:   ErrForbidden,
	KindNotFound:    ErrNotFound,
	KindUnsupported: ErrUnsupported,
	KindBusy:        ErrClosed,
}
