// Package sched decides which queued tasks one dequeue hands to a node. It
// is pure arithmetic over what the caller shows it, in queue order (oldest
// first); the store walks the queue and records the assignments.
//
// The rule (docs/kolejka-protocol.md §3, where we differ from Kolejka as
// the contract marks):
//
//   - a task's requires must all be among the node's tags;
//   - its limits must fit what the node has left (spec.Fit, with the
//     dequeue's limits as the free resources and the node's defaults for
//     limits a task omits); what it takes is consumed (spec.Consume) before
//     the next task is looked at;
//   - a default for a per-task maximum (time, image, …) above what the
//     node allows is lowered to it: the node's cap never grows, so a task
//     that omits the limit would otherwise never run there;
//   - the task goes out carrying every default it still lacks (limits the
//     node does not declare): the server's defaults always include cpus,
//     memory and time, so no node is handed a task without them;
//   - an exclusive task is handed out only as the sole task of a dequeue,
//     and only to a node that holds no assigned task (the server knows every
//     task it assigned and not yet got a result for); after it nothing more;
//   - a node that holds an exclusive task gets nothing;
//   - at most Concurency tasks (Kolejka hands out one more than asked).
package sched

import (
	"github.com/kolejka-go/kolejka/spec"
)

// Node is what one dequeue knows of the asking node.
type Node struct {
	Tags           []string
	Free           spec.Limits // what the node has free now (the request's limits)
	Defaults       spec.Limits // for limits a task omits (spec.Fit)
	Concurency     int         // most tasks to hand out; < 1 hands out none
	Busy           bool        // the node holds assigned, unresolved tasks
	HoldsExclusive bool        // one of them is exclusive
}

// Candidate is one queued task as the scheduler sees it.
type Candidate struct {
	Requires  []string
	Exclusive bool
	Limits    spec.Limits
	// Shape, if not empty, is the same for candidates with equal Requires,
	// Exclusive and Limits. Within one dequeue the node's free resources
	// only shrink and nothing else changes, so once a shape is refused
	// every later candidate of that shape is refused without a new
	// spec.Fit: a window full of tasks of a few kinds (a contest's
	// submissions) costs a few Fits, not a thousand.
	Shape string
	// LostBy is the node that last lost the task's lease (0: none), at
	// TimeLost (microseconds since the epoch).
	LostBy   int64
	TimeLost int64
}

// Picker takes tasks for one dequeue. Offer candidates in queue order
// until Done.
type Picker struct {
	node    Node
	free    spec.Limits
	tags    map[string]struct{}
	picked  int
	done    bool
	refused map[string]struct{} // shapes that did not fit
}

// NewPicker starts a dequeue for n.
func NewPicker(n Node) *Picker {
	p := &Picker{node: n, free: n.Free.Clone(), tags: make(map[string]struct{}, len(n.Tags)), refused: map[string]struct{}{}}
	p.node.Defaults = n.Defaults.CapMaxima(n.Free)
	for _, t := range n.Tags {
		p.tags[t] = struct{}{}
	}
	p.done = n.Concurency < 1 || n.HoldsExclusive
	return p
}

// Done reports whether nothing more can be taken.
func (p *Picker) Done() bool { return p.done }

// Picked is the number of tasks taken so far.
func (p *Picker) Picked() int { return p.picked }

// Free is what the node has left after the tasks taken so far.
func (p *Picker) Free() spec.Limits { return p.free.Clone() }

// Offer looks at one candidate; if it is taken, the limits it runs with
// are returned (its own, with omitted ones filled in by spec.Fit) and the
// node's free resources shrink accordingly.
func (p *Picker) Offer(c Candidate) (spec.Limits, bool) {
	if p.done {
		return spec.Limits{}, false
	}
	if c.Shape != "" {
		if _, no := p.refused[c.Shape]; no {
			return spec.Limits{}, false
		}
	}
	eff, ok := p.fit(c)
	if !ok {
		if c.Shape != "" {
			p.refused[c.Shape] = struct{}{}
		}
		return spec.Limits{}, false
	}
	p.free.Consume(eff)
	p.picked++
	// Taking a task changes nothing that made another shape fail, but a
	// shape that fitted may not fit again: only refusals are remembered.
	if c.Exclusive || p.picked >= p.node.Concurency {
		p.done = true
	}
	return eff, true
}

func (p *Picker) fit(c Candidate) (spec.Limits, bool) {
	for _, r := range c.Requires {
		if _, ok := p.tags[r]; !ok {
			return spec.Limits{}, false
		}
	}
	if c.Exclusive && (p.picked > 0 || p.node.Busy) {
		return spec.Limits{}, false
	}
	eff, ok := spec.Fit(c.Limits, p.free, p.node.Defaults)
	if !ok {
		return spec.Limits{}, false
	}
	return eff.Or(p.node.Defaults), true
}
