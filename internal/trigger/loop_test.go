package trigger

import (
	"reflect"
	"testing"

	"github.com/kolejka-go/kolejka/api"
)

func TestFindLoop(t *testing.T) {
	task := func(queue, typ string) Work { return Work{Queue: queue, Type: typ} }
	run := Work{Run: true}
	result := func(name string, on *api.TriggerOn, starts ...Work) Node {
		return Node{Name: name, Kind: api.TriggerResult, On: on, Starts: starts}
	}
	for _, tc := range []struct {
		name  string
		nodes []Node
		want  []string
	}{
		{"none", nil, nil},
		{"self loop", []Node{result("a", nil, task("", ""))}, []string{"a", "a"}},
		{"self loop through the default queue", []Node{result("a", &api.TriggerOn{Queue: "default"}, task("", ""))}, []string{"a", "a"}},
		{"self, other queue", []Node{result("a", &api.TriggerOn{Queue: "gpu"}, task("cpu", ""))}, nil},
		{"self, other type", []Node{result("a", &api.TriggerOn{Type: "compile"}, task("", "test"))}, nil},
		{"self, a task not from a type", []Node{result("a", &api.TriggerOn{Type: "compile"}, task("", ""))}, nil},
		{"two-trigger cycle", []Node{
			result("b", &api.TriggerOn{Queue: "q1"}, task("q2", "")),
			result("a", &api.TriggerOn{Queue: "q2"}, task("q1", "")),
		}, []string{"a", "b", "a"}},
		// a fires on failures and starts a task in q1; b fires on OK in q1 and
		// starts a task in q2: the statuses could both occur, so it loops.
		{"a status filter does not break it", []Node{
			result("a", &api.TriggerOn{Queue: "q2", Status: []string{"RE"}}, task("q1", "")),
			result("b", &api.TriggerOn{Queue: "q1", Status: []string{"OK"}}, task("q2", "")),
		}, []string{"a", "b", "a"}},
		{"disjoint queues break it", []Node{
			result("a", &api.TriggerOn{Queue: "q2"}, task("q1", "")),
			result("b", &api.TriggerOn{Queue: "q1"}, task("q3", "")),
		}, nil},
		{"a chain is no loop", []Node{
			{Name: "nightly", Kind: api.TriggerSchedule, Starts: []Work{task("build", "")}},
			result("test", &api.TriggerOn{Queue: "build"}, task("test", "")),
			result("report", &api.TriggerOn{Queue: "test"}, task("report", "")),
		}, nil},
		{"schedules and webhooks are fired by nothing", []Node{
			{Name: "s", Kind: api.TriggerSchedule, Starts: []Work{task("", ""), run}},
			{Name: "w", Kind: api.TriggerRequest, Starts: []Work{task("", ""), run}},
		}, nil},
		{"run trigger starting a run", []Node{
			{Name: "r", Kind: api.TriggerRun, On: &api.TriggerOn{Status: []string{"cancelled"}}, Starts: []Work{run, task("x", "")}},
		}, []string{"r", "r"}},
		{"run trigger starting a task", []Node{
			{Name: "r", Kind: api.TriggerRun, Starts: []Work{task("", "")}},
		}, nil},
		{"a run trigger's task fires a result trigger whose run fires it", []Node{
			{Name: "r", Kind: api.TriggerRun, Starts: []Work{task("steps", "")}},
			result("a", &api.TriggerOn{Queue: "steps"}, task("other", "")),
			result("b", &api.TriggerOn{Queue: "other"}, run),
		}, []string{"a", "b", "r", "a"}},
		{"a result trigger is not fired by a run", []Node{
			result("a", nil, run),
		}, nil},
		{"the cycle, not the path to it", []Node{
			{Name: "a", Kind: api.TriggerSchedule, Starts: []Work{task("q", "")}},
			result("b", &api.TriggerOn{Queue: "q"}, task("loop", "")),
			result("c", &api.TriggerOn{Queue: "loop"}, task("loop", "")),
		}, []string{"c", "c"}},
	} {
		if got := FindLoop(tc.nodes); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: FindLoop = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestFindLoopDeterministic: the order the nodes come in does not change the
// cycle named.
func TestFindLoopDeterministic(t *testing.T) {
	nodes := []Node{
		{Name: "d", Kind: api.TriggerResult, On: &api.TriggerOn{Queue: "x"}, Starts: []Work{{Queue: "y"}}},
		{Name: "c", Kind: api.TriggerResult, On: &api.TriggerOn{Queue: "y"}, Starts: []Work{{Queue: "x"}}},
		{Name: "b", Kind: api.TriggerResult, On: &api.TriggerOn{Queue: "z"}, Starts: []Work{{Queue: "w"}}},
		{Name: "a", Kind: api.TriggerResult, On: &api.TriggerOn{Queue: "w"}, Starts: []Work{{Queue: "z"}}},
	}
	want := []string{"a", "b", "a"}
	for i := range nodes {
		rotated := append(append([]Node{}, nodes[i:]...), nodes[:i]...)
		if got := FindLoop(rotated); !reflect.DeepEqual(got, want) {
			t.Errorf("rotation %d: %q, want %q", i, got, want)
		}
	}
}
