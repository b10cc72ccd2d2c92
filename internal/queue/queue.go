// Package queue holds the rules of named queues, apart from HTTP and the
// store: who may submit to a queue, which queues a node may take from, and
// the plan of one dequeue (the groups of queues to scan, highest priority
// first).
//
// The model: every task is in one queue (spec.DefaultQueue unless it names
// another). A queue is public (anyone may submit, any node asking for it may
// take its tasks) or private (only its submitters may submit, only its nodes
// may take). A paused queue keeps its tasks and hands none out. A node asks
// for the queues it serves (Kolejka's foremen ask for none: the default
// queue); among them it takes from the highest priority first, and among
// queues of equal priority the oldest task first.
package queue

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kolejka-go/kolejka/spec"
)

// ErrDenied is a submission to a private queue by a user not among its
// submitters.
var ErrDenied = errors.New("may not submit to it")

// Queue is one named queue as the queues table holds it.
type Queue struct {
	Name string
	// Private: only Submitters may submit to it and only Nodes (processor
	// user names) take from it. A public queue has neither list.
	Private    bool
	Submitters []string
	Nodes      []string
	// Priority: a node serving several queues takes from the higher first.
	Priority int
	// Paused: the queue keeps its tasks and hands none out.
	Paused bool
}

// FieldError is a queue definition's problem with one of its fields:
// "name", "submitters", "nodes", "priority".
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// MaxUsers bounds a queue's submitters and nodes lists (they are read at
// every dequeue and submission).
const MaxUsers = 1000

// Check reports the first problem of a queue definition, as a
// *FieldError: a name that is not one (spec.CheckName), an empty or
// repeated user name, or lists on a public queue (they would look like a
// restriction and be none).
func (q Queue) Check() error {
	if err := spec.CheckName(q.Name); err != nil {
		return &FieldError{"name", err.Error()}
	}
	for _, l := range []struct {
		field string
		users []string
	}{{"submitters", q.Submitters}, {"nodes", q.Nodes}} {
		if len(l.users) > 0 && !q.Private {
			return &FieldError{l.field, "only a private queue has " + l.field + " (make it private)"}
		}
		if len(l.users) > MaxUsers {
			return &FieldError{l.field, fmt.Sprintf("%d users, more than %d", len(l.users), MaxUsers)}
		}
		seen := make(map[string]bool, len(l.users))
		for i, u := range l.users {
			switch {
			case strings.TrimSpace(u) == "":
				return &FieldError{l.field, fmt.Sprintf("user name %d is empty", i+1)}
			case seen[u]:
				return &FieldError{l.field, fmt.Sprintf("user %q is named twice", u)}
			}
			seen[u] = true
		}
	}
	return nil
}

// MaySubmit says whether user may submit tasks to q: nil, or an error
// naming the queue and the user (wrapping ErrDenied).
func (q Queue) MaySubmit(user string) error {
	if q.Private && !slices.Contains(q.Submitters, user) {
		return fmt.Errorf("queue %q is private: user %s %w", q.Name, user, ErrDenied)
	}
	return nil
}

// Serves says whether node (a processor's user name) may take tasks from
// q now: not while it is paused; from a private queue only its nodes.
func (q Queue) Serves(node string) bool {
	if q.Paused {
		return false
	}
	return !q.Private || slices.Contains(q.Nodes, node)
}

// Wanted is the queues a node asks for: the names it sent, in order,
// without repeats, or just the default queue when it sent none (Kolejka's
// foremen). Each name must be one (spec.CheckName); an error names the
// first that is not.
func Wanted(names []string) ([]string, error) {
	if len(names) == 0 {
		return []string{spec.DefaultQueue}, nil
	}
	out := make([]string, 0, len(names))
	for i, n := range names {
		if err := spec.CheckName(n); err != nil {
			return nil, fmt.Errorf("queues[%d]: %w", i, err)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// Plan is what one dequeue scans: groups of queue names, highest priority
// first; inside a group the queues share one priority and hand out their
// oldest task first, whichever queue it is in. Empty: nothing to hand out.
type Plan [][]string

// PlanFor is the plan of a dequeue by node, asking for the queues wanted
// (as Wanted makes them), given every queue: the wanted queues that exist
// and serve the node (see Serves), grouped by priority, highest first,
// each group's names sorted. A wanted queue that does not exist is left
// out: it may be added later, and a node waiting for it takes nothing
// meanwhile.
func PlanFor(wanted []string, queues []Queue, node string) Plan {
	byName := make(map[string]*Queue, len(queues))
	for i := range queues {
		byName[queues[i].Name] = &queues[i]
	}
	var serving []*Queue
	for _, n := range wanted {
		if q := byName[n]; q != nil && q.Serves(node) && !slices.Contains(serving, q) {
			serving = append(serving, q)
		}
	}
	slices.SortFunc(serving, func(a, b *Queue) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), strings.Compare(a.Name, b.Name))
	})
	var plan Plan
	for i, q := range serving {
		if i == 0 || q.Priority != serving[i-1].Priority {
			plan = append(plan, nil)
		}
		plan[len(plan)-1] = append(plan[len(plan)-1], q.Name)
	}
	return plan
}
