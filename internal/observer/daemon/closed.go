package daemon

import (
	"time"

	"github.com/kolejka-go/kolejka/spec"
)

// closedSession is what is kept of a session after its close: who may read
// its final stats, and the stats.
type closedSession struct {
	ident
	stats    spec.Stats
	closedAt time.Time
}
