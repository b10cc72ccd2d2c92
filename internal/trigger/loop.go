package trigger

// This file owns loop detection: a set of one owner's triggers in which the
// work a firing starts fires a trigger again, and so on forever.

import (
	"slices"
	"strings"

	"github.com/kolejka-go/kolejka/api"
)

// Work is what a target starts, for loop detection: a task (Run false) with
// its queue and type ("" for a task not made from a type), or a workflow
// run (Run true). A run also starts tasks, which the caller lists as Works
// of their own.
type Work struct {
	Run         bool
	Queue, Type string
}

// Node is one trigger of an owner for loop detection: its name, kind, what
// it fires on, and the work its target starts.
type Node struct {
	Name, Kind string
	On         *api.TriggerOn
	Starts     []Work
}

// FindLoop returns a cycle of trigger names in firing order, the first
// repeated at the end (["a", "b", "a"]), or nil if there is none.
//
// a fires b (an edge a → b) when some Work of a would fire b: b is a result
// trigger and the Work a task in b's queue and of b's type, or b is a run
// trigger and the Work a run. b's statuses are not looked at: any status
// can occur, so a status filter does not break a loop. Schedules and
// request triggers are fired by no work. A trigger whose own work fires it
// is the cycle ["a", "a"]. The search visits names in sorted order, so the
// same set gives the same cycle.
func FindLoop(nodes []Node) []string {
	sorted := slices.Clone(nodes)
	slices.SortStableFunc(sorted, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	fires := func(w Work, b Node) bool {
		var on *api.TriggerOn
		if b.On != nil {
			on = &api.TriggerOn{Queue: b.On.Queue, Type: b.On.Type}
		}
		switch b.Kind {
		case api.TriggerResult:
			return !w.Run && Matches(on, w.Queue, w.Type, "")
		case api.TriggerRun:
			return w.Run && Matches(on, "", "", "")
		}
		return false
	}
	edges := make([][]int, len(sorted))
	for i, a := range sorted {
		for j, b := range sorted {
			if slices.ContainsFunc(a.Starts, func(w Work) bool { return fires(w, b) }) {
				edges[i] = append(edges[i], j)
			}
		}
	}
	const (
		unseen = iota
		onPath
		done
	)
	state := make([]int, len(sorted))
	var path []int
	var visit func(i int) []string
	visit = func(i int) []string {
		state[i] = onPath
		path = append(path, i)
		for _, j := range edges[i] {
			switch state[j] {
			case onPath:
				start := slices.Index(path, j)
				var cycle []string
				for _, k := range path[start:] {
					cycle = append(cycle, sorted[k].Name)
				}
				return append(cycle, sorted[j].Name)
			case unseen:
				if cycle := visit(j); cycle != nil {
					return cycle
				}
			}
		}
		path = path[:len(path)-1]
		state[i] = done
		return nil
	}
	for i := range sorted {
		if state[i] == unseen {
			if cycle := visit(i); cycle != nil {
				return cycle
			}
		}
	}
	return nil
}
