package queue_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/queue"
)

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		q     queue.Queue
		field string // "" = valid
		says  string
	}{
		{q: queue.Queue{Name: "gpu"}},
		{q: queue.Queue{Name: "judge.v2", Private: true, Submitters: []string{"alice"}, Nodes: []string{"a", "b"}, Priority: -3}},
		{q: queue.Queue{Name: "closed", Private: true}}, // private, nobody yet: valid, and closed to all
		{q: queue.Queue{Name: ""}, field: "name", says: "empty name"},
		{q: queue.Queue{Name: "../x"}, field: "name", says: "start with a letter or a digit"},
		{q: queue.Queue{Name: "a b"}, field: "name", says: "only letters"},
		{q: queue.Queue{Name: strings.Repeat("q", 100)}, field: "name", says: "longer than 64"},
		{q: queue.Queue{Name: "pub", Submitters: []string{"alice"}}, field: "submitters", says: "only a private queue"},
		{q: queue.Queue{Name: "pub", Nodes: []string{"a"}}, field: "nodes", says: "only a private queue"},
		{q: queue.Queue{Name: "p", Private: true, Submitters: []string{"alice", ""}}, field: "submitters", says: "user name 2 is empty"},
		{q: queue.Queue{Name: "p", Private: true, Nodes: []string{"a", "a"}}, field: "nodes", says: `"a" is named twice`},
		{q: queue.Queue{Name: "p", Private: true, Nodes: make([]string, queue.MaxUsers+1)}, field: "nodes", says: "more than 1000"},
	} {
		err := c.q.Check()
		if c.field == "" {
			if err != nil {
				t.Errorf("%+v: %v", c.q, err)
			}
			continue
		}
		var fe *queue.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%+v: %v; want a problem of %s saying %q", c.q, err, c.field, c.says)
		}
	}
}

func TestMaySubmit(t *testing.T) {
	pub := queue.Queue{Name: "pub"}
	priv := queue.Queue{Name: "judge", Private: true, Submitters: []string{"alice"}}
	if err := pub.MaySubmit("anyone"); err != nil {
		t.Errorf("public queue: %v", err)
	}
	if err := priv.MaySubmit("alice"); err != nil {
		t.Errorf("its submitter: %v", err)
	}
	err := priv.MaySubmit("bob")
	if !errors.Is(err, queue.ErrDenied) || err.Error() != `queue "judge" is private: user bob may not submit to it` {
		t.Errorf("an outsider: %v", err)
	}
	// A paused queue still takes tasks: it keeps them until resumed.
	if err := (queue.Queue{Name: "p", Paused: true}).MaySubmit("bob"); err != nil {
		t.Errorf("paused queue: %v", err)
	}
}

func TestServes(t *testing.T) {
	for _, c := range []struct {
		q    queue.Queue
		node string
		want bool
	}{
		{queue.Queue{Name: "pub"}, "a", true},
		{queue.Queue{Name: "pub", Paused: true}, "a", false},
		{queue.Queue{Name: "priv", Private: true, Nodes: []string{"a"}}, "a", true},
		{queue.Queue{Name: "priv", Private: true, Nodes: []string{"a"}}, "b", false},
		{queue.Queue{Name: "priv", Private: true}, "a", false},
		{queue.Queue{Name: "priv", Private: true, Nodes: []string{"a"}, Paused: true}, "a", false},
	} {
		if got := c.q.Serves(c.node); got != c.want {
			t.Errorf("%+v serves %s: %v, want %v", c.q, c.node, got, c.want)
		}
	}
}

func TestWanted(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want []string
		err  string
	}{
		{in: nil, want: []string{"default"}},
		{in: []string{}, want: []string{"default"}},
		{in: []string{"b", "a", "b"}, want: []string{"b", "a"}},
		{in: []string{"a", "../x"}, err: `queues[1]: "../x" is not a name`},
		{in: []string{""}, err: "queues[0]: empty name"},
	} {
		got, err := queue.Wanted(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v, %v; want an error saying %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestPlanFor(t *testing.T) {
	queues := []queue.Queue{
		{Name: "default"},
		{Name: "low", Priority: -1},
		{Name: "high", Priority: 5},
		{Name: "high2", Priority: 5},
		{Name: "mid", Priority: 1},
		{Name: "paused", Priority: 9, Paused: true},
		{Name: "mine", Private: true, Nodes: []string{"a"}, Priority: 1},
	}
	for _, c := range []struct {
		wanted []string
		node   string
		want   queue.Plan
	}{
		{[]string{"default"}, "a", queue.Plan{{"default"}}},
		// Highest first; equal priorities share a group, names sorted.
		{[]string{"low", "default", "high2", "mid", "high"}, "b", queue.Plan{{"high", "high2"}, {"mid"}, {"default"}, {"low"}}},
		// A paused queue is left out; a private one for its nodes only.
		{[]string{"paused", "mine", "mid"}, "a", queue.Plan{{"mid", "mine"}}},
		{[]string{"paused", "mine", "mid"}, "b", queue.Plan{{"mid"}}},
		// Unknown queues are left out; nothing left is an empty plan.
		{[]string{"nosuch", "paused"}, "a", nil},
		{[]string{"mine", "mine"}, "a", queue.Plan{{"mine"}}},
	} {
		if got := queue.PlanFor(c.wanted, queues, c.node); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q for %s: %q, want %q", c.wanted, c.node, got, c.want)
		}
	}
}
