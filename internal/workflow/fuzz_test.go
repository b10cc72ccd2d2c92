package workflow

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/kolejka-go/kolejka/spec"
)

// FuzzParse feeds Parse anything. It may refuse, but never panic; a
// workflow it accepts starts a run that can be driven to its end (every
// task ending OK) within its bounds, and that survives a JSON round trip.
func FuzzParse(f *testing.F) {
	f.Add(`{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after": ["a"], "items": ["1", "2"], "inputs": {"x": "a:o"}}}, "final": "b"}`)
	f.Add(`{"tasks": {"a": {"task": "a", "after": ["b"]}, "b": {"type": "t", "after_any": ["a"]}}}`)
	f.Add(`{"tasks": {"l": {"task": "l"}, "e": {"task": "e", "after_failed": ["l"], "items_from": "l:x.json", "retry": {"attempts": 2, "on": ["RE"]}}}, "on_failure": "abort"}`)
	f.Add(`{"tasks": {"a": {"task": "../a", "inputs": {"/x": "a:../y"}}}}`)
	f.Fuzz(func(t *testing.T, doc string) {
		w, err := Parse([]byte(doc), FileName)
		if err != nil {
			if w != nil {
				t.Fatal("refused but returned a workflow")
			}
			return
		}
		r := NewRun(w)
		n := 0
		for rounds := 0; r.State() == Running; rounds++ {
			if rounds > 2*MaxSteps {
				t.Fatalf("no end: %v", r.Ready())
			}
			for _, need := range r.NeedItems() {
				if _, err := r.Expand(need.Step, []byte(`["i"]`)); err != nil {
					t.Fatal(err)
				}
			}
			ready := r.Ready()
			for _, id := range ready {
				n++
				key := fmt.Sprint("k", n)
				if err := r.Submitted(id, key); err != nil {
					t.Fatal(err)
				}
				if _, err := r.Ended(key, spec.StatusOK); err != nil {
					t.Fatal(err)
				}
			}
			data, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			back := &Run{}
			if err := json.Unmarshal(data, back); err != nil {
				t.Fatalf("%v\n%s", err, data)
			}
			r = back
			if len(ready) == 0 && len(r.NeedItems()) == 0 && r.State() == Running {
				t.Fatalf("stuck: %s", data)
			}
		}
		if r.State() != RunOK {
			t.Errorf("every task ended OK, yet the run is %s", r.State())
		}
	})
}
