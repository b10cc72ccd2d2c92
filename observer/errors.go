package observer

import (
	"errors"

	"github.com/kolejka-go/kolejka/internal/cgroup"
)

// Sentinel errors. Every error of this package, and of the daemon, wraps
// at most one of them, in an "unable to X: ..." message that names the
// session or the limit, so callers test with errors.Is and show
// err.Error() to people. The daemon answers them with the HTTP status in
// brackets and the error kind of messages.go, which the client maps back.
var (
	// ErrForbidden [403]: no session with this id and secret (a wrong or
	// missing secret and an unknown id are not told apart, so an id cannot
	// be probed), a caller outside the session's subtree, /adopt from
	// anyone but host root, or a cgroup_depth/cgroup_descendants limit of
	// an enclosing session.
	ErrForbidden = errors.New("forbidden")
	// ErrBadRequest [400]: a malformed request: missing or mistyped
	// parameters, bad limits, a detach by a process that is not in the
	// session.
	ErrBadRequest = errors.New("bad request")
	// ErrNotFound [404]: the secret is right but the session cannot do
	// what was asked any more: it is closed (only stats and close still
	// answer), or its time limit has passed (no process may attach).
	ErrNotFound = errors.New("session closed")
	// ErrUnsupported [500]: this host cannot enforce a limit or do an
	// operation (a controller missing, swap not accounted, more cores
	// asked for than the session has). It is cgroup.ErrUnsupported itself,
	// so errors of the cgroup package match it too.
	ErrUnsupported = cgroup.ErrUnsupported
	// ErrClosed [503]: the daemon is shutting down (or, from the client,
	// has no room for another connection).
	ErrClosed = errors.New("observer registry is shut down")
)
