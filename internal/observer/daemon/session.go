package daemon

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/spec"
)

// groupPrefix names every session's cgroup (but adopted ones, which live
// where the worker says): "kolejka_observer_" and the id.
const groupPrefix = "kolejka_observer_"

// ident is what identifies a session and decides who may act on it; it
// outlives the session's close.
type ident struct {
	id   string
	hash [sha256.Size]byte // of the secret
	path string            // the session's cgroup
	// scope is the cgroup the session was made in (the caller's, at open):
	// callers whose cgroup lies in it may act on the session.
	scope   string
	adopted bool // made by /adopt: only host root may act on it
	creator proc
}

// session is one open session. Every field below op is guarded by
// Registry.mu; group never changes.
type session struct {
	ident
	group *cgroup.Group

	// op serialises the commands that change the session (limits, attach,
	// detach, freeze, thaw, kill, close), so that they apply in order.
	op sync.Mutex

	limits   spec.Limits
	cores    []int     // pinned cores; nil: the parent's
	created  time.Time // when it was made
	started  time.Time // when its first process entered it; zero until then
	limitsAt time.Time // when a limits call last set its time limit
	deadline time.Time // when its time limit passes; zero: none armed
	expired  bool      // the time limit passed and killed it
	closing  bool      // Close or the reaper is ending it
	timer    *time.Timer
}

// newID returns a fresh session id: 128 random bits in hex, the shape of
// Kolejka's uuid4().hex.
func newID() string { return randomHex(16) }

// newSecret returns a fresh secret: 256 random bits in hex.
func newSecret() string { return randomHex(32) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux (getrandom)
	return hex.EncodeToString(b)
}

// hashSecret is what is stored of a secret, in memory and on disk: a
// 256-bit random secret cannot be recovered from its SHA-256, and a stolen
// state file opens no session.
func hashSecret(secret string) [sha256.Size]byte { return sha256.Sum256([]byte(secret)) }

// matches compares a secret with the stored hash in constant time.
func (id *ident) matches(secret string) bool {
	h := hashSecret(secret)
	return subtle.ConstantTimeCompare(h[:], id.hash[:]) == 1
}

// isSessionName reports whether a cgroup folder name is a session's:
// groupPrefix and 32 lower-case hex digits.
func isSessionName(name string) bool {
	id, ok := strings.CutPrefix(name, groupPrefix)
	return ok && isSessionID(id)
}

// sortByDepth orders sessions outermost first.
func sortByDepth(ss []*session) {
	sort.Slice(ss, func(i, j int) bool { return len(ss[i].path) < len(ss[j].path) })
}

// within reports whether cgroup path p is base or lies below it.
func within(p, base string) bool {
	return base == "/" || p == base || strings.HasPrefix(p, base+"/")
}
