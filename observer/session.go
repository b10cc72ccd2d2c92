package observer

// DefaultSocket is where Kolejka's clients look for the observer (it is
// bind-mounted into task containers).
const DefaultSocket = "/var/run/kolejka/observer/socket"

// Session is what opening, attaching to a new or adopting a session hands
// out: the session's id, the secret every later command on it needs, and
// its cgroup path (known only in-process; the wire protocol does not tell
// it).
type Session struct {
	ID     string // 32 hex digits
	Secret string // 64 hex digits; the daemon keeps only its SHA-256
	Path   string // e.g. /kolejka/abc/task/kolejka_observer_<ID>
}
