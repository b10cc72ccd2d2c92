package cgroup

import "errors"

// Sentinel errors. Every error this package returns wraps at most one of
// them, with a message naming the group path or the limit concerned, so
// callers test with errors.Is and show err.Error() to people.
var (
	// ErrUnsupported means this host cannot enforce a requested limit or
	// perform an operation: a controller is not mounted or not enabled,
	// swap is not accounted, a CPU is outside the root cpuset, etc. A limit
	// is never silently ignored: Check, Create and Update refuse it.
	ErrUnsupported = errors.New("not supported on this host")
	// ErrNotExist means the group does not exist (any more).
	ErrNotExist = errors.New("cgroup does not exist")
	// ErrInvalid means an argument is malformed: a relative or unclean
	// path, a negative limit, a CPU list that does not parse.
	ErrInvalid = errors.New("invalid argument")
)
