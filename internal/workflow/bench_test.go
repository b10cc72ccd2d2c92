package workflow

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/spec"
)

// BenchmarkFanOut1000 drives a 1 000-item fan-out (submit every item, end
// every item, then the report) and persists the run as JSON after each
// end, as the store is to: the engine's share of a fan-out's overhead.
func BenchmarkFanOut1000(b *testing.B) {
	b.Run("persisted", func(b *testing.B) { fanOut(b, true) })
	b.Run("in memory", func(b *testing.B) { fanOut(b, false) })
}

func fanOut(b *testing.B, persist bool) {
	items := make([]string, 1000)
	for i := range items {
		items[i] = fmt.Sprintf(`"%d"`, i)
	}
	w, err := Parse([]byte(`{"tasks": {"each": {"task": "t", "items": [`+strings.Join(items, ",")+`]},
		"report": {"task": "r", "after_any": ["each"], "inputs": {"parts": "each:out"}}}}`), FileName)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		r := NewRun(w)
		for _, id := range r.Ready() {
			if err := r.Submitted(id, fmt.Sprint("k", id.Index)); err != nil {
				b.Fatal(err)
			}
		}
		for i := range 1000 {
			if _, err := r.Ended(fmt.Sprint("k", i), spec.StatusOK); err != nil {
				b.Fatal(err)
			}
			if !persist {
				continue
			}
			if _, err := json.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
		if len(r.Ready()) != 1 {
			b.Fatal("report not ready")
		}
	}
}
