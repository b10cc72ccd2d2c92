package workflow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/spec"
)

// driver plays a server: it submits what is ready, applies ends, and
// persists the run after every transition, carrying on with the copy read
// back, so every scenario also shows that a round trip changes nothing.
type driver struct {
	t    *testing.T
	r    *Run
	next int
}

func start(t *testing.T, doc string) *driver {
	t.Helper()
	w, err := Parse([]byte(doc), FileName)
	if err != nil {
		t.Fatal(err)
	}
	d := &driver{t: t, r: NewRun(w)}
	d.persist()
	return d
}

func (d *driver) persist() {
	d.t.Helper()
	a, err := json.Marshal(d.r)
	if err != nil {
		d.t.Fatal(err)
	}
	back := &Run{}
	if err := json.Unmarshal(a, back); err != nil {
		d.t.Fatalf("%v\n%s", err, a)
	}
	b, _ := json.Marshal(back)
	if !bytes.Equal(a, b) {
		d.t.Fatalf("the round trip changed the run:\n%s\n%s", a, b)
	}
	d.r = back
}

// submit submits every ready instance with a fresh key.
func (d *driver) submit() []ID {
	d.t.Helper()
	ready := d.r.Ready()
	for _, id := range ready {
		d.next++
		if err := d.r.Submitted(id, fmt.Sprintf("k%d", d.next)); err != nil {
			d.t.Fatal(err)
		}
		d.persist()
	}
	return ready
}

func (d *driver) key(id ID) string {
	d.t.Helper()
	in, ok := d.r.Instance(id)
	if !ok || in.TaskKey == "" {
		d.t.Fatalf("%s has no task: %+v", id, in)
	}
	return in.TaskKey
}

func (d *driver) end(step string, index int, status spec.Status) []string {
	d.t.Helper()
	cancel, err := d.r.Ended(d.key(ID{step, index}), status)
	if err != nil {
		d.t.Fatal(err)
	}
	d.persist()
	return cancel
}

// states writes the run's states compactly: "a=ok b[0]=ready c=-skipped".
// A step's own outcome (items_from before its items) is marked "-".
func (d *driver) states() string {
	var out []string
	for _, name := range d.r.Steps() {
		s, _ := d.r.Step(name)
		ins := d.r.Instances(name)
		if st, _ := d.r.StepState(name); len(ins) == 0 {
			out = append(out, name+"=-"+string(st))
			continue
		}
		for _, in := range ins {
			if s.Fanned() {
				out = append(out, fmt.Sprintf("%s[%d]=%s", name, in.Index, in.State))
			} else {
				out = append(out, name+"="+string(in.State))
			}
		}
	}
	return strings.Join(out, " ")
}

func (d *driver) want(states string, run RunState) {
	d.t.Helper()
	if got := d.states(); got != states {
		d.t.Errorf("states\n got %s\nwant %s", got, states)
	}
	if got := d.r.State(); got != run {
		d.t.Errorf("run %s, want %s", got, run)
	}
}

func ids(list []ID) string {
	var out []string
	for _, id := range list {
		out = append(out, id.String())
	}
	return strings.Join(out, " ")
}

func TestDiamondWithInputs(t *testing.T) {
	d := start(t, `{"tasks": {
		"a": {"task": "a"},
		"b": {"task": "b", "after": ["a"], "inputs": {"in": "a:out"}},
		"c": {"task": "c", "after": ["a"], "inputs": {"in": "a:out"}},
		"d": {"task": "d", "after": ["b", "c"], "inputs": {"x/b": "b:r.txt", "x/c": "c:r.txt", "orig": "a:out"}}}}`)
	d.want("a=ready b=waiting c=waiting d=waiting", Running)
	if got := ids(d.submit()); got != "a[0]" {
		t.Fatalf("submitted %s", got)
	}
	d.end("a", 0, spec.StatusOK)
	d.want("a=ok b=ready c=ready d=waiting", Running)
	if got := ids(d.submit()); got != "b[0] c[0]" {
		t.Fatalf("submitted %s", got)
	}
	d.end("c", 0, spec.StatusOK)
	d.want("a=ok b=submitted c=ok d=waiting", Running)
	d.end("b", 0, spec.StatusOK)
	d.want("a=ok b=ok c=ok d=ready", Running)
	in, err := d.r.Inputs(ID{"d", 0})
	if err != nil {
		t.Fatal(err)
	}
	want := []Binding{
		{Dest: "orig", From: ID{"a", 0}, TaskKey: d.key(ID{"a", 0}), Path: "out"},
		{Dest: "x/b", From: ID{"b", 0}, TaskKey: d.key(ID{"b", 0}), Path: "r.txt"},
		{Dest: "x/c", From: ID{"c", 0}, TaskKey: d.key(ID{"c", 0}), Path: "r.txt"},
	}
	if !slices.Equal(in, want) {
		t.Errorf("inputs\n got %+v\nwant %+v", in, want)
	}
	d.submit()
	d.end("d", 0, spec.StatusOK)
	d.want("a=ok b=ok c=ok d=ok", RunOK)
}

func TestConditions(t *testing.T) {
	d := start(t, `{"tasks": {
		"a": {"task": "a"}, "g": {"task": "g"},
		"after":   {"task": "x", "after": ["a"]},
		"chain":   {"task": "x", "after": ["after"]},
		"any":     {"task": "x", "after_any": ["a", "g"]},
		"failed":  {"task": "x", "after_failed": ["a", "g"]},
		"notfail": {"task": "x", "after_failed": ["g"]},
		"both":    {"task": "x", "after": ["g"], "after_failed": ["a"]},
		"onskip":  {"task": "x", "after_failed": ["chain"]}}}`)
	d.submit()
	d.end("g", 0, spec.StatusOK)
	// notfail can never hold once g ended OK; the rest still wait for a.
	d.want("a=submitted after=waiting any=waiting both=waiting chain=waiting failed=waiting g=ok notfail=skipped onskip=waiting", Running)
	if in, _ := d.r.Instance(ID{"notfail", 0}); !strings.Contains(in.Reason, `after_failed`) {
		t.Errorf("reason %q", in.Reason)
	}
	d.end("a", 0, spec.StatusRE)
	// after and chain are skipped (transitively); after_failed of a skipped
	// step holds: it did not end OK.
	d.want("a=failed after=skipped any=ready both=ready chain=skipped failed=ready g=ok notfail=skipped onskip=ready", Running)
	if in, _ := d.r.Instance(ID{"chain", 0}); in.Reason != `after: "after" did not end ok` {
		t.Errorf("reason %q", in.Reason)
	}
	d.submit()
	for _, s := range []string{"any", "both", "failed", "onskip"} {
		d.end(s, 0, spec.StatusOK)
	}
	d.want("a=failed after=skipped any=ok both=ok chain=skipped failed=ok g=ok notfail=skipped onskip=ok", RunFailed)
}

func TestFanOut100(t *testing.T) {
	items := make([]string, 100)
	for i := range items {
		items[i] = fmt.Sprintf("t%03d", i)
	}
	list, _ := json.Marshal(items)
	d := start(t, `{"tasks": {
		"compile": {"task": "c"},
		"test":    {"task": "t", "after": ["compile"], "items": `+string(list)+`, "inputs": {"prog": "compile:a.out"}},
		"report":  {"task": "r", "after_any": ["test"], "inputs": {"results": "test:out.txt"}}}}`)
	d.submit()
	d.end("compile", 0, spec.StatusOK)
	ready := d.submit()
	if len(ready) != 100 || ready[0] != (ID{"test", 0}) || ready[99] != (ID{"test", 99}) {
		t.Fatalf("submitted %d: %v…", len(ready), ready[:3])
	}
	for i := range 100 {
		if b, _ := d.r.Inputs(ID{"test", i}); len(b) != 1 || b[0].Dest != "prog" {
			t.Fatalf("test[%d] inputs %+v", i, b)
		}
		status := spec.StatusOK
		if i%10 == 3 {
			status = spec.StatusRE
		}
		d.end("test", i, status)
		if in, _ := d.r.Instance(ID{"report", 0}); (in.State == Ready) != (i == 99) {
			t.Fatalf("after %d ends report is %s", i+1, in.State)
		}
	}
	b, err := d.r.Inputs(ID{"report", 0})
	if err != nil || len(b) != 100 {
		t.Fatalf("%d bindings, %v", len(b), err)
	}
	for i, x := range b {
		if x.Dest != "results/"+items[i] || x.From != (ID{"test", i}) || x.Path != "out.txt" || x.TaskKey == "" {
			t.Fatalf("binding %d: %+v", i, x)
		}
	}
	d.submit()
	d.end("report", 0, spec.StatusOK)
	if d.r.State() != RunFailed {
		t.Errorf("run %s with 10 failed items", d.r.State())
	}
}

func TestItemsFrom(t *testing.T) {
	const doc = `{"tasks": {
		"list": {"task": "l"},
		"each": {"task": "e", "after": ["list"], "items_from": "list:items.json", "inputs": {"l": "list:items.json"}},
		"sum":  {"task": "s", "after": ["each"], "inputs": {"parts": "each:part"}}}}`
	t.Run("good", func(t *testing.T) {
		d := start(t, doc)
		d.want("each=-waiting list=ready sum=waiting", Running)
		if n := d.r.NeedItems(); len(n) != 0 {
			t.Fatalf("asked for items early: %+v", n)
		}
		d.submit()
		d.end("list", 0, spec.StatusOK)
		need := d.r.NeedItems()
		if len(need) != 1 || need[0] != (NeedItems{Step: "each", From: Source{"list", "items.json"}, TaskKey: d.key(ID{"list", 0})}) {
			t.Fatalf("need %+v", need)
		}
		if _, err := d.r.Expand("each", []byte(`["x", "y"]`)); err != nil {
			t.Fatal(err)
		}
		d.persist()
		d.want("each[0]=ready each[1]=ready list=ok sum=waiting", Running)
		if _, err := d.r.Expand("each", []byte(`["x", "y"]`)); err != nil {
			t.Errorf("a replayed Expand: %v", err)
		}
		if _, err := d.r.Expand("each", []byte(`["z"]`)); err == nil {
			t.Error("expanded twice with another list")
		}
		d.submit()
		d.end("each", 0, spec.StatusOK)
		d.end("each", 1, spec.StatusOK)
		b, _ := d.r.Inputs(ID{"sum", 0})
		if len(b) != 2 || b[0].Dest != "parts/x" || b[1].Dest != "parts/y" {
			t.Errorf("bindings %+v", b)
		}
	})
	t.Run("empty list", func(t *testing.T) {
		d := start(t, doc)
		d.submit()
		d.end("list", 0, spec.StatusOK)
		if _, err := d.r.Expand("each", []byte(`[]`)); err != nil {
			t.Fatal(err)
		}
		d.want("each=-ok list=ok sum=ready", Running)
	})
	t.Run("source failed", func(t *testing.T) {
		d := start(t, strings.Replace(doc, `"after": ["list"]`, `"after_any": ["list"]`, 1))
		d.submit()
		d.end("list", 0, spec.StatusRE)
		d.want("each=-skipped list=failed sum=skipped", RunFailed)
		if _, err := d.r.Expand("each", []byte(`["x"]`)); err == nil {
			t.Error("expanded a skipped step")
		}
	})
	for _, tc := range []struct{ name, list, want string }{
		{"not JSON", `["x"`, `list:items.json: tasks["each"].items_from: not JSON`},
		{"not a list", `{"x": 1}`, `tasks["each"].items_from: expected a list of strings, got an object`},
		{"a number", `["x", 2]`, `tasks["each"].items_from[1]: expected a string, got the number 2`},
		{"escaping item", `["x", "../y"]`, `tasks["each"].items_from[1]: item "../y" would leave its folder`},
		{"repeated item", `["x", "x"]`, `tasks["each"].items_from[1]: item "x" is listed more than once`},
		{"past the bound", `[` + strings.Repeat(`"x",`, MaxInstances) + `"x"]`, `the run would have 10003 instances, more than 10000`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := start(t, doc)
			d.submit()
			d.end("list", 0, spec.StatusOK)
			_, err := d.r.Expand("each", []byte(tc.list))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			d.persist()
			d.want("each=-failed list=ok sum=skipped", RunFailed)
			if st, reason := d.r.StepState("each"); st != Failed || !strings.Contains(reason, tc.want) {
				t.Errorf("each: %s %q", st, reason)
			}
		})
	}
}

func TestAppend(t *testing.T) {
	const doc = `{"tasks": {"gen": {"task": "g"}, "done": {"task": "d", "after_any": ["gen"]}}, "final": "done"}`
	run := func(t *testing.T) *driver {
		d := start(t, doc)
		d.submit()
		d.end("gen", 0, spec.StatusOK)
		d.want("done=ready gen=ok", Running) // until the server appends
		return d
	}
	t.Run("good", func(t *testing.T) {
		d := run(t)
		if err := d.r.Append([]byte(`{"tasks": {"more": {"task": "m", "after": ["gen"], "inputs": {"x": "gen:o"}}, "most": {"task": "m", "after": ["more"], "items": ["1", "2"]}}}`), "gen:"+FileName); err != nil {
			t.Fatal(err)
		}
		d.persist()
		d.want("done=waiting gen=ok more=ready most[0]=waiting most[1]=waiting", Running)
		d.submit()
		d.end("more", 0, spec.StatusOK)
		d.submit()
		d.end("most", 0, spec.StatusOK)
		d.end("most", 1, spec.StatusOK)
		d.want("done=ready gen=ok more=ok most[0]=ok most[1]=ok", Running)
		d.submit()
		if err := d.r.Append([]byte(`{"tasks": {"late": {"task": "l"}}}`), "x"); err == nil || !strings.Contains(err.Error(), "has started") {
			t.Errorf("appended after final started: %v", err)
		}
	})
	many := func(n int) string {
		var parts []string
		for i := range n {
			parts = append(parts, fmt.Sprintf(`"n%d": {"task": "t"}`, i))
		}
		return `{"tasks": {` + strings.Join(parts, ",") + `}}`
	}
	for _, tc := range []struct{ name, doc, want string }{
		{"a cycle", `{"tasks": {"x": {"task": "x", "after": ["y", "gen"]}, "y": {"task": "y", "after": ["x"]}}}`, `tasks["x"]: a cycle: x → y → x`},
		{"a name taken", `{"tasks": {"gen": {"task": "g"}}}`, `tasks["gen"]: the run already has a step "gen"`},
		{"an unknown step", `{"tasks": {"x": {"task": "x", "after": ["nope"]}}}`, `tasks["x"].after[0]: "nope" names no step`},
		{"after final", `{"tasks": {"x": {"task": "x", "after": ["done"]}}}`, `tasks["x"].after[0]: "done" is the final step`},
		{"not an ancestor", `{"tasks": {"x": {"task": "x", "inputs": {"i": "gen:o"}}}}`, `tasks["x"].inputs["i"]: step "gen" is not among`},
		{"sets final", `{"tasks": {"x": {"task": "x"}}, "final": "x"}`, `final: only the run's own workflow sets it`},
		{"past the steps bound", many(MaxSteps - 1), `the run would have 1001 steps`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := run(t)
			before, _ := json.Marshal(d.r)
			err := d.r.Append([]byte(tc.doc), "gen:"+FileName)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "gen:"+FileName+": ") {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			after, _ := json.Marshal(d.r)
			if !bytes.Equal(before, after) {
				t.Error("a refused Append changed the run")
			}
		})
	}
}

// A run that appends to itself again and again stops at the bound, and
// the refused document changes nothing.
func TestAppendBound(t *testing.T) {
	d := start(t, `{"tasks": {"s0": {"task": "t"}}}`)
	var list []string
	for i := range 999 {
		list = append(list, fmt.Sprintf(`"%d"`, i))
	}
	var err error
	var before []byte
	n := 0
	for n = 1; n < 100; n++ {
		// Only the chain runs: the fanned steps stay ready, they count.
		prev := ID{fmt.Sprintf("s%d", n-1), 0}
		if err := d.r.Submitted(prev, prev.Step); err != nil {
			t.Fatal(err)
		}
		if _, err := d.r.Ended(prev.Step, spec.StatusOK); err != nil {
			t.Fatal(err)
		}
		doc := fmt.Sprintf(`{"tasks": {"s%d": {"task": "t", "after": ["s%d"]}, "f%d": {"task": "t", "items": [%s]}}}`, n, n-1, n, strings.Join(list, ","))
		before, _ = json.Marshal(d.r)
		if err = d.r.Append([]byte(doc), FileName); err != nil {
			break
		}
	}
	// s0 and 9 × (1 + 999) fit in 10 000; the tenth does not.
	if n != 10 || err == nil || !strings.Contains(err.Error(), "the run would have 10001 instances") {
		t.Errorf("stopped at append %d: %v", n, err)
	}
	if after, _ := json.Marshal(d.r); !bytes.Equal(before, after) {
		t.Error("the refused Append changed the run")
	}
	d.persist()
	if got := len(d.r.Ready()); got != 9*999 {
		t.Errorf("%d ready", got)
	}
}

func TestRetries(t *testing.T) {
	const doc = `{"tasks": {"a": {"task": "a", "retry": {"attempts": 3, "on": ["RE", "SE"]}}, "b": {"task": "b", "after": ["a"]}}}`
	t.Run("on a listed status", func(t *testing.T) {
		d := start(t, doc)
		d.submit()
		first := d.key(ID{"a", 0})
		d.end("a", 0, spec.StatusRE)
		d.want("a=ready b=waiting", Running)
		d.submit()
		d.end("a", 0, spec.StatusSE)
		d.submit()
		d.end("a", 0, spec.StatusOK)
		d.want("a=ok b=ready", Running)
		in, _ := d.r.Instance(ID{"a", 0})
		if in.Attempt != 3 || len(in.Earlier) != 2 || in.Earlier[0] != first {
			t.Errorf("%+v", in)
		}
		// The end of an earlier try, replayed, changes nothing.
		before, _ := json.Marshal(d.r)
		if cancel, err := d.r.Ended(first, spec.StatusOK); err != nil || cancel != nil {
			t.Fatal(cancel, err)
		}
		if after, _ := json.Marshal(d.r); !bytes.Equal(before, after) {
			t.Error("an earlier try's end changed the run")
		}
	})
	t.Run("not on others", func(t *testing.T) {
		d := start(t, doc)
		d.submit()
		d.end("a", 0, spec.StatusTLE)
		d.want("a=failed b=skipped", RunFailed)
	})
	t.Run("attempts exhausted", func(t *testing.T) {
		d := start(t, doc)
		for range 3 {
			if got := ids(d.submit()); got != "a[0]" {
				t.Fatalf("submitted %q", got)
			}
			d.end("a", 0, spec.StatusRE)
		}
		d.want("a=failed b=skipped", RunFailed)
		if in, _ := d.r.Instance(ID{"a", 0}); in.Status != spec.StatusRE || in.Attempt != 3 {
			t.Errorf("%+v", in)
		}
	})
	t.Run("every failure without on", func(t *testing.T) {
		d := start(t, `{"tasks": {"a": {"task": "a", "retry": {"attempts": 2}}}}`)
		d.submit()
		d.end("a", 0, spec.StatusMLE)
		d.want("a=ready", Running)
	})
}

func TestAbortWithFinal(t *testing.T) {
	d := start(t, `{"tasks": {
		"a": {"task": "a"}, "b": {"task": "b"}, "c": {"task": "c", "after": ["a"]},
		"l": {"task": "l"}, "e": {"task": "e", "after": ["l"], "items_from": "l:x"},
		"f": {"task": "f", "after_any": ["c"], "inputs": {"log": "b:log"}}},
		"on_failure": "abort", "final": "f"}`)
	d.submit()
	d.want("a=submitted b=submitted c=waiting e=-waiting f=waiting l=submitted", Running)
	cancel := d.end("a", 0, spec.StatusRE)
	if want := []string{d.key(ID{"b", 0}), d.key(ID{"l", 0})}; !slices.Equal(cancel, want) {
		t.Errorf("cancel %v, want %v", cancel, want)
	}
	d.want("a=failed b=cancelled c=cancelled e=-cancelled f=ready l=cancelled", Running)
	if !d.r.Aborted() {
		t.Error("not aborted")
	}
	// A cancelled task's late result changes nothing.
	if c, err := d.r.Ended(d.key(ID{"b", 0}), spec.StatusOK); err != nil || c != nil {
		t.Error(c, err)
	}
	if b, _ := d.r.Inputs(ID{"f", 0}); len(b) != 0 {
		t.Errorf("bound a cancelled step's result: %+v", b)
	}
	d.submit()
	d.end("f", 0, spec.StatusOK)
	d.want("a=failed b=cancelled c=cancelled e=-cancelled f=ok l=cancelled", RunFailed)
}

func TestCancel(t *testing.T) {
	d := start(t, `{"tasks": {"a": {"task": "a"}, "b": {"task": "b"}, "c": {"task": "c", "after": ["a"]}, "f": {"task": "f"}}, "final": "f"}`)
	d.submit()
	d.end("b", 0, spec.StatusOK)
	a := d.key(ID{"a", 0})
	if cancel := d.r.Cancel(); !slices.Equal(cancel, []string{a}) {
		t.Errorf("cancel %v", cancel)
	}
	d.persist()
	d.want("a=cancelled b=ok c=cancelled f=cancelled", RunCanceled)
	if c, err := d.r.Ended(a, spec.StatusOK); err != nil || c != nil {
		t.Error(c, err)
	}
	d.want("a=cancelled b=ok c=cancelled f=cancelled", RunCanceled)
	if err := d.r.Submitted(ID{"c", 0}, "late"); err == nil {
		t.Error("submitted a cancelled instance")
	}
	if err := d.r.Append([]byte(`{"tasks": {"z": {"task": "z"}}}`), "x"); err == nil {
		t.Error("appended to a cancelled run")
	}
}

func TestRetryRun(t *testing.T) {
	d := start(t, `{"tasks": {
		"a": {"task": "a"}, "b": {"task": "b", "after": ["a"], "items": ["1", "2", "3"]},
		"c": {"task": "c", "after": ["b"]}, "f": {"task": "f", "after_any": ["c"]}}, "final": "f"}`)
	if err := d.r.Retry(); err == nil {
		t.Error("retried a running run")
	}
	d.submit()
	d.end("a", 0, spec.StatusOK)
	d.submit()
	d.end("b", 0, spec.StatusOK)
	d.end("b", 1, spec.StatusRE)
	d.end("b", 2, spec.StatusOK)
	d.submit()
	d.end("f", 0, spec.StatusOK)
	d.want("a=ok b[0]=ok b[1]=failed b[2]=ok c=skipped f=ok", RunFailed)
	keep := map[ID]string{{"a", 0}: d.key(ID{"a", 0}), {"b", 0}: d.key(ID{"b", 0}), {"b", 2}: d.key(ID{"b", 2})}
	oldB1, oldF := d.key(ID{"b", 1}), d.key(ID{"f", 0})
	if err := d.r.Retry(); err != nil {
		t.Fatal(err)
	}
	d.persist()
	d.want("a=ok b[0]=ok b[1]=ready b[2]=ok c=waiting f=waiting", Running)
	for id, k := range keep {
		if d.key(id) != k {
			t.Errorf("%s lost its task %s", id, k)
		}
	}
	// The failed try's result, replayed now, changes nothing.
	if c, err := d.r.Ended(oldB1, spec.StatusOK); err != nil || c != nil {
		t.Error(c, err)
	}
	d.want("a=ok b[0]=ok b[1]=ready b[2]=ok c=waiting f=waiting", Running)
	d.submit()
	d.end("b", 1, spec.StatusOK)
	d.submit()
	d.end("c", 0, spec.StatusOK)
	d.submit()
	if d.key(ID{"f", 0}) == oldF {
		t.Error("final kept its old task")
	}
	d.end("f", 0, spec.StatusOK)
	d.want("a=ok b[0]=ok b[1]=ok b[2]=ok c=ok f=ok", RunOK)
	if err := d.r.Retry(); err == nil {
		t.Error("retried a run with nothing to retry")
	}
}

// A replayed Submitted or Ended changes nothing and submits nothing again.
func TestIdempotent(t *testing.T) {
	d := start(t, `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after": ["a"]}}}`)
	d.submit()
	k := d.key(ID{"a", 0})
	snapshot := func() []byte { b, _ := json.Marshal(d.r); return b }
	before := snapshot()
	if err := d.r.Submitted(ID{"a", 0}, k); err != nil {
		t.Fatal(err)
	}
	if err := d.r.Submitted(ID{"a", 0}, "other"); err == nil {
		t.Error("an instance submitted twice")
	}
	if !bytes.Equal(before, snapshot()) {
		t.Error("a replayed Submitted changed the run")
	}
	d.end("a", 0, spec.StatusOK)
	d.submit()
	if err := d.r.Submitted(ID{"a", 0}, "k-new"); err == nil {
		t.Error("an ended instance submitted again")
	}
	if err := d.r.Submitted(ID{"b", 0}, k); err == nil {
		t.Error("no refusal of a key of another instance")
	}
	after := snapshot()
	for range 3 {
		if c, err := d.r.Ended(k, spec.StatusOK); err != nil || c != nil {
			t.Fatal(c, err)
		}
		if c, err := d.r.Ended(k, spec.StatusRE); err != nil || c != nil {
			t.Fatal(c, err)
		}
	}
	if !bytes.Equal(after, snapshot()) || len(d.r.Ready()) != 0 {
		t.Error("a replayed Ended changed the run")
	}
	if _, err := d.r.Ended("nope", spec.StatusOK); err == nil {
		t.Error("accepted an unknown key")
	}
	if _, err := d.r.Ended(d.key(ID{"b", 0}), "WA"); err == nil {
		t.Error("accepted status WA")
	}
}

// A long scenario driven at random, twice from the same seed: once on a
// run that lives in memory, once on one persisted and read back after
// every transition (with replays thrown in). Both must agree throughout,
// and no instance may ever be submitted twice for one try.
func TestRoundTripEveryTransition(t *testing.T) {
	const doc = `{"tasks": {
		"gen":  {"task": "g", "retry": {"attempts": 2, "on": ["SE"]}},
		"list": {"task": "l", "after": ["gen"]},
		"fan":  {"task": "f", "after": ["list"], "items_from": "list:items.json", "inputs": {"g": "gen:o"}, "retry": {"attempts": 3}},
		"fix":  {"task": "x", "after_failed": ["fan"]},
		"rep":  {"task": "r", "after_any": ["fan", "fix"], "inputs": {"parts": "fan:o"}},
		"side": {"task": "s", "items": ["a", "b", "c"], "retry": {"attempts": 2, "on": ["TLE"]}},
		"end":  {"task": "e"}}, "final": "end"}`
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			w, err := Parse([]byte(doc), FileName)
			if err != nil {
				t.Fatal(err)
			}
			mem := NewRun(w)
			d := &driver{t: t, r: NewRun(w)}
			rng := rand.New(rand.NewPCG(seed, 1))
			statuses := []spec.Status{spec.StatusOK, spec.StatusOK, spec.StatusOK, spec.StatusRE, spec.StatusSE, spec.StatusTLE}
			same := func(step string) {
				t.Helper()
				a, _ := json.Marshal(mem)
				b, _ := json.Marshal(d.r)
				if !bytes.Equal(a, b) {
					t.Fatalf("after %s the persisted run differs:\n%s\n%s", step, a, b)
				}
			}
			used := map[string]bool{}
			retried := false
			for steps := 0; steps < 500; steps++ {
				if d.r.State() != Running {
					if retried || d.r.State() == RunOK {
						break
					}
					retried = true
					if err := mem.Retry(); err != nil {
						t.Fatal(err)
					}
					if err := d.r.Retry(); err != nil {
						t.Fatal(err)
					}
					d.persist()
					same("Retry")
					continue
				}
				for _, n := range d.r.NeedItems() {
					list := []byte(`["p", "q", "r", "s"]`)
					if rng.IntN(5) == 0 {
						list = []byte(`["p", "../q"]`)
					}
					_, e1 := mem.Expand(n.Step, list)
					_, e2 := d.r.Expand(n.Step, list)
					if (e1 == nil) != (e2 == nil) {
						t.Fatalf("Expand: %v vs %v", e1, e2)
					}
					d.persist()
					same("Expand")
				}
				for _, id := range d.r.Ready() {
					d.next++
					key := fmt.Sprintf("k%d", d.next)
					if used[key] {
						t.Fatalf("key %s used twice", key)
					}
					used[key] = true
					if err := mem.Submitted(id, key); err != nil {
						t.Fatal(err)
					}
					if err := d.r.Submitted(id, key); err != nil {
						t.Fatal(err)
					}
					d.persist()
					same("Submitted " + key)
				}
				var running []string
				for k := range used {
					if id, ok := d.r.keys[k]; ok {
						if in, _ := d.r.Instance(id); in.State == Submitted && in.TaskKey == k {
							running = append(running, k)
						}
					}
				}
				if len(running) == 0 {
					continue
				}
				slices.Sort(running)
				k := running[rng.IntN(len(running))]
				st := statuses[rng.IntN(len(statuses))]
				c1, e1 := mem.Ended(k, st)
				c2, e2 := d.r.Ended(k, st)
				if e1 != nil || e2 != nil || !slices.Equal(c1, c2) {
					t.Fatalf("Ended: %v %v / %v %v", c1, e1, c2, e2)
				}
				d.persist()
				same("Ended " + k)
				// A replay after a crash: the same end again.
				if rng.IntN(3) == 0 {
					if c, err := d.r.Ended(k, st); err != nil || c != nil {
						t.Fatalf("replay: %v %v", c, err)
					}
					same("a replayed Ended " + k)
				}
			}
			if d.r.State() == Running {
				t.Fatalf("still running after 500 rounds: %s", d.states())
			}
		})
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	for _, bad := range []string{`{"steps": {"a": null}}`, `{"steps": {"a": {"step": {"task": "a"}, "expanded": true, "instances": [{"index": 1, "state": "ready"}]}}}`, `{"x": 1}`} {
		if err := json.Unmarshal([]byte(bad), &Run{}); err == nil {
			t.Errorf("read %s", bad)
		}
	}
}

// Resuming a cancelled run and an aborted one: what was cancelled runs
// again, OK results stay, and the final step (which may retry after an
// abort) runs again.
func TestRetryAfterCancelAndAbort(t *testing.T) {
	t.Run("cancel", func(t *testing.T) {
		d := start(t, `{"tasks": {"a": {"task": "a"}, "b": {"task": "b"}, "c": {"task": "c", "after": ["a"]}, "f": {"task": "f"}}, "final": "f"}`)
		d.submit()
		d.end("b", 0, spec.StatusOK)
		kb := d.key(ID{"b", 0})
		d.r.Cancel()
		d.persist()
		if err := d.r.Retry(); err != nil {
			t.Fatal(err)
		}
		d.persist()
		d.want("a=ready b=ok c=waiting f=waiting", Running)
		if d.key(ID{"b", 0}) != kb {
			t.Error("b lost its result")
		}
		d.submit()
		d.end("a", 0, spec.StatusOK)
		d.submit()
		d.end("c", 0, spec.StatusOK)
		d.submit()
		d.end("f", 0, spec.StatusOK)
		d.want("a=ok b=ok c=ok f=ok", RunOK)
	})
	t.Run("abort", func(t *testing.T) {
		d := start(t, `{"tasks": {"a": {"task": "a"}, "b": {"task": "b"}, "f": {"task": "f", "retry": {"attempts": 2}}},
			"on_failure": "abort", "final": "f"}`)
		d.submit()
		d.end("a", 0, spec.StatusRE)
		d.want("a=failed b=cancelled f=ready", Running)
		d.submit()
		d.end("f", 0, spec.StatusSE) // the final step retries after an abort too
		d.want("a=failed b=cancelled f=ready", Running)
		d.submit()
		d.end("f", 0, spec.StatusOK)
		d.want("a=failed b=cancelled f=ok", RunFailed)
		if err := d.r.Retry(); err != nil {
			t.Fatal(err)
		}
		d.persist()
		if d.r.Aborted() {
			t.Error("still aborted")
		}
		d.want("a=ready b=ready f=waiting", Running)
		first := d.submit()
		// A replayed submission of an earlier try changes nothing.
		in, _ := d.r.Instance(ID{"f", 0})
		if err := d.r.Submitted(ID{"f", 0}, in.Earlier[0]); err != nil {
			t.Errorf("a replayed Submitted of an earlier try: %v", err)
		}
		if ids(first) != "a[0] b[0]" {
			t.Errorf("submitted %s", ids(first))
		}
		d.end("a", 0, spec.StatusOK)
		d.end("b", 0, spec.StatusOK)
		d.submit()
		d.end("f", 0, spec.StatusOK)
		d.want("a=ok b=ok f=ok", RunOK)
	})
}
