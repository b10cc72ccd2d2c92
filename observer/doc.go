// Package observer is the Go client of kolejka-observer, the node's root
// daemon that gives processes, containerised ones included, cgroup
// "sessions" to run under limits and be measured in, over Kolejka's
// observer protocol on a unix socket (docs/kolejka-protocol.md §5;
// docs/observer.md).
//
// A judge, or the worker, dials the daemon's socket (DefaultSocket inside
// a task container) and works a session through its life:
//
//	c, err := observer.Dial("")          // DefaultSocket
//	s, err := c.Open()                   // a session in the caller's cgroup
//	err = c.SetLimits(s.ID, s.Secret, spec.Limits{Memory: &mem})
//	// a child process calls AttachTo(s.ID, s.Secret) before its exec ...
//	st, err := c.Close(s.ID, s.Secret)   // what was left is killed; the final stats
//
// The daemon knows a caller only as the process that opened the
// connection (SO_PEERCRED), so a Client acts for the process that dialled.
// Errors wrap one of the package's sentinels (ErrForbidden, ErrBadRequest,
// ErrNotFound, ErrUnsupported, ErrClosed), which the wire's error kinds map
// back to. The daemon itself lives in internal/observer/daemon and its
// command in cmd/kolejka-observer.
package observer
