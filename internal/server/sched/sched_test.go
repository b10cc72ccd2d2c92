package sched

import (
	"testing"

	"github.com/kolejka-go/kolejka/spec"
)

func limits(kv ...string) spec.Limits {
	var l spec.Limits
	for i := 0; i < len(kv); i += 2 {
		if err := spec.ParseLimit(&l, kv[i], kv[i+1]); err != nil {
			panic(err)
		}
	}
	return l
}

// offer runs candidates through one picker and returns the indexes taken.
func offer(n Node, cands ...Candidate) []int {
	p := NewPicker(n)
	var taken []int
	for i, c := range cands {
		if p.Done() {
			break
		}
		if _, ok := p.Offer(c); ok {
			taken = append(taken, i)
		}
	}
	return taken
}

func eq(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPicker(t *testing.T) {
	plain := Candidate{}
	excl := Candidate{Exclusive: true}
	cpu := func(n string) Candidate { return Candidate{Limits: limits("cpus", n)} }
	for _, c := range []struct {
		name  string
		node  Node
		cands []Candidate
		want  []int
	}{
		{"concurency caps", Node{Concurency: 2}, []Candidate{plain, plain, plain}, []int{0, 1}},
		{"zero concurency", Node{Concurency: 0}, []Candidate{plain}, nil},
		{"requires ⊆ tags", Node{Concurency: 5, Tags: []string{"a"}},
			[]Candidate{{Requires: []string{"a", "b"}}, {Requires: []string{"a"}}, {}}, []int{1, 2}},
		{"exclusive only alone", Node{Concurency: 5}, []Candidate{plain, excl, plain}, []int{0, 2}},
		{"exclusive first ends the dequeue", Node{Concurency: 5}, []Candidate{excl, plain}, []int{0}},
		{"exclusive not to a busy node", Node{Concurency: 5, Busy: true}, []Candidate{excl, plain}, []int{1}},
		{"nothing for a node holding an exclusive task", Node{Concurency: 5, Busy: true, HoldsExclusive: true}, []Candidate{plain}, nil},
		{"consume", Node{Concurency: 5, Free: limits("cpus", "4")}, []Candidate{cpu("3"), cpu("2"), cpu("1")}, []int{0, 2}},
		{"omitted takes all free without defaults", Node{Concurency: 5, Free: limits("cpus", "4")}, []Candidate{plain, cpu("1")}, []int{0}},
		{"omitted takes the default", Node{Concurency: 5, Free: limits("cpus", "4"), Defaults: limits("cpus", "1")}, []Candidate{plain, plain, cpu("2"), plain}, []int{0, 1, 2}},
		{"gpus: none asked, none held", Node{Concurency: 5, Free: limits("gpus", "1")}, []Candidate{plain, {Limits: limits("gpus", "1")}, {Limits: limits("gpus", "1")}}, []int{0, 1}},
		{"network", Node{Concurency: 5, Free: limits("network", "false")}, []Candidate{{Limits: limits("network", "true")}, plain}, []int{1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := offer(c.node, c.cands...); !eq(got, c.want) {
				t.Errorf("took %v, want %v", got, c.want)
			}
		})
	}
}

func TestPickerLimitsHandedOut(t *testing.T) {
	p := NewPicker(Node{Concurency: 3, Free: limits("memory", "4G", "time", "10s"), Defaults: limits("memory", "1G")})
	eff, ok := p.Offer(Candidate{})
	if !ok || *eff.Memory != 1<<30 || eff.Time == nil {
		t.Fatalf("eff %v %v", eff, ok)
	}
	if free := p.Free(); *free.Memory != 3<<30 {
		t.Errorf("free after one task: %v", free)
	}
}

// A refused shape is refused again without a new Fit, and that is exact:
// free resources only shrink within a dequeue.
func TestPickerShapes(t *testing.T) {
	big := Candidate{Limits: limits("memory", "3G"), Shape: "3G"}
	small := Candidate{Limits: limits("memory", "1G"), Shape: "1G"}
	p := NewPicker(Node{Concurency: 10, Free: limits("memory", "4G")})
	var took []string
	for _, c := range []Candidate{big, big, small, big, small, small} {
		if _, ok := p.Offer(c); ok {
			took = append(took, c.Shape)
		}
	}
	// 3G fits once (1G left), the second 3G is refused and remembered,
	// one 1G fits, then nothing.
	if got := len(took); got != 2 || took[0] != "3G" || took[1] != "1G" {
		t.Errorf("took %v", took)
	}
	if _, refused := p.refused["3G"]; !refused {
		t.Error("refusal of 3G not remembered")
	}
}
