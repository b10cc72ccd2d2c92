package workflow

// This file owns reading kolejka_workflow.json: its steps, their fields and
// the checks of the graph they make (names, cycles, ancestors, bounds).

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kolejka-go/kolejka/spec"
)

// Bounds on one run, counted over everything Append adds too: a workflow
// that grows itself cannot grow without end.
const (
	MaxSteps     = 1000    // steps in a run
	MaxInstances = 10000   // instances in a run: a step counts once per item
	MaxAttempts  = 100     // retry.attempts of a step
	MaxFileSize  = 4 << 20 // bytes of a kolejka_workflow.json or an items list
	maxItemLen   = 255     // an item is a file name (DEST/ITEM, OUT/STEP/ITEM)
)

// FileName is the workflow file in a workflow folder, and in a step's
// result when the step extends the run.
const FileName = "kolejka_workflow.json"

// OnFailure values.
const (
	Continue = "continue" // the default: a failure skips only what needs it
	Abort    = "abort"    // the first failure cancels the rest but final
)

// Workflow is a parsed kolejka_workflow.json.
type Workflow struct {
	Steps     map[string]*Step // by name
	OnFailure string           // "" when not given: Continue
	Final     string           // "" when none
}

// Step is one step of a workflow: a task folder or a type instance, its
// conditions, inputs, items and retries. Its JSON form is the file's.
type Step struct {
	Task        string            `json:"task,omitempty"`   // a task folder, relative to the workflow folder
	Type        string            `json:"type,omitempty"`   // or a type's name
	Params      map[string]string `json:"params,omitempty"` // the type's value parameters
	Files       map[string]string `json:"files,omitempty"`  // the type's file parameters → local paths
	After       []string          `json:"after,omitempty"`
	AfterAny    []string          `json:"after_any,omitempty"`
	AfterFailed []string          `json:"after_failed,omitempty"`
	Inputs      map[string]Source `json:"inputs,omitempty"` // DEST → a result file of an earlier step
	Items       []string          `json:"items,omitempty"`
	ItemsFrom   *Source           `json:"items_from,omitempty"`
	Retry       *Retry            `json:"retry,omitempty"`
}

// Source is "STEP:PATH": the file PATH of STEP's result folder.
type Source struct {
	Step string
	Path string
}

// String is the source as the file writes it.
func (s Source) String() string { return s.Step + ":" + s.Path }

// MarshalText writes "STEP:PATH".
func (s Source) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads "STEP:PATH" with the checks Parse makes.
func (s *Source) UnmarshalText(b []byte) error {
	src, problem := parseSource(string(b))
	if problem != "" {
		return errors.New(problem)
	}
	*s = src
	return nil
}

// Retry says how often a step is tried and on which statuses again.
type Retry struct {
	Attempts int           `json:"attempts"`     // tries in all, the first included
	On       []spec.Status `json:"on,omitempty"` // empty: every failure status
}

// Fanned reports whether the step runs once per item.
func (s *Step) Fanned() bool { return len(s.Items) > 0 || s.ItemsFrom != nil }

// deps lists the steps s runs after, each once, sorted.
func (s *Step) deps() []string {
	var out []string
	for _, l := range [][]string{s.After, s.AfterAny, s.AfterFailed} {
		for _, d := range l {
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	slices.Sort(out)
	return out
}

// retries reports whether a failure with status is tried again after
// attempt tries.
func (s *Step) retries(status spec.Status, attempt int) bool {
	if s.Retry == nil || attempt >= s.Retry.Attempts {
		return false
	}
	return len(s.Retry.On) == 0 || slices.Contains(s.Retry.On, status)
}

// Parse reads a kolejka_workflow.json from data; file names it in errors.
//
//	{"tasks": {"NAME": STEP, ...}, "on_failure": "continue"|"abort", "final": "NAME"}
//
// Every problem comes back at once, each a *spec.Error whose Field is a
// path like `tasks["test"].after[0]`: unknown keys, wrong types, a step
// with both or neither of task and type, paths leaving their folder, a
// step named in after, after_any, after_failed, inputs or items_from that
// does not exist or is the step itself, a cycle (named as a → b → a), an
// input or items_from whose step is not an ancestor, a final step others
// depend on, and more than MaxSteps steps or MaxInstances instances.
func Parse(data []byte, file string) (*Workflow, error) {
	p := spec.NewProblems(file)
	w := read(p, data, true)
	if w == nil {
		return nil, p.Err()
	}
	checkGraph(p, w.Steps, nil, w.Final, len(w.Steps), count(w.Steps))
	if err := p.Err(); err != nil {
		return nil, err
	}
	return w, nil
}

// read reads the document's keys and each step's fields; top says whether
// on_failure and final may be given (not in an appended document).
func read(p *spec.Problems, data []byte, top bool) *Workflow {
	if len(data) > MaxFileSize {
		p.Add("", "%d bytes: more than %d", len(data), MaxFileSize)
		return nil
	}
	if !utf8.Valid(data) {
		p.Add("", "not valid UTF-8")
		return nil
	}
	w := &Workflow{Steps: map[string]*Step{}}
	seen, err := spec.Fields(p, "", data, func(_, k string, v json.RawMessage) {
		switch {
		case k == "tasks":
			readSteps(p, w, v)
		case k == "on_failure" && top:
			s, ok := str(p, k, v)
			if ok && s != Continue && s != Abort {
				p.Add(k, "%q is not a choice (use %q or %q)", s, Continue, Abort)
			}
			w.OnFailure = s
		case k == "final" && top:
			w.Final, _ = str(p, k, v)
		case k == "on_failure" || k == "final":
			p.Add(k, "only the run's own workflow sets it, not one a step appends")
		default:
			if top {
				p.Add(k, "unknown key (known keys: final, on_failure, tasks)")
			} else {
				p.Add(k, "unknown key (known keys: tasks)")
			}
		}
	})
	if err != nil {
		p.Add("", "expected a JSON object: %v", err)
		return nil
	}
	if !seen["tasks"] {
		p.Add("tasks", "missing: a workflow has steps")
	}
	return w
}

func readSteps(p *spec.Problems, w *Workflow, raw json.RawMessage) {
	names, vals, err := spec.Members(raw)
	if err != nil {
		p.Add("tasks", "expected an object of steps by name, got %s", spec.Describe(raw))
		return
	}
	if len(names) == 0 {
		p.Add("tasks", "no steps")
	}
	for i, name := range names {
		field := spec.EntryPath("tasks", name)
		if _, dup := w.Steps[name]; dup {
			p.Add(field, "step given more than once")
			continue
		}
		if err := spec.CheckName(name); err != nil {
			p.Add(field, "%v", err)
			continue
		}
		if len(w.Steps) >= MaxSteps {
			p.Add("tasks", "more than %d steps", MaxSteps)
			return
		}
		w.Steps[name] = readStep(p, field, vals[i])
	}
}

func readStep(p *spec.Problems, field string, raw json.RawMessage) *Step {
	s := &Step{}
	seen, err := spec.Fields(p, field, raw, func(kf, k string, v json.RawMessage) {
		switch k {
		case "task":
			if t, ok := str(p, kf, v); ok {
				if problem := folderProblem(t); problem != "" {
					p.Add(kf, "%s", problem)
				}
				s.Task = t
			}
		case "type":
			if t, ok := str(p, kf, v); ok {
				if err := spec.CheckName(t); err != nil {
					p.Add(kf, "%v", err)
				}
				s.Type = t
			}
		case "params":
			s.Params = strMap(p, kf, v, func(string, string) string { return "" })
		case "files":
			s.Files = strMap(p, kf, v, func(_, path string) string { return pathProblem(path) })
		case "after":
			s.After = names(p, kf, v)
		case "after_any":
			s.AfterAny = names(p, kf, v)
		case "after_failed":
			s.AfterFailed = names(p, kf, v)
		case "inputs":
			s.Inputs = readInputs(p, kf, v)
		case "items":
			s.Items = readItems(p, kf, v)
		case "items_from":
			if t, ok := str(p, kf, v); ok {
				src, problem := parseSource(t)
				if problem != "" {
					p.Add(kf, "%s", problem)
				} else {
					s.ItemsFrom = &src
				}
			}
		case "retry":
			s.Retry = readRetry(p, kf, v)
		default:
			p.Add(kf, "unknown key (known keys: after, after_any, after_failed, files, inputs, items, items_from, params, retry, task, type)")
		}
	})
	if err != nil {
		p.Add(field, "expected an object, got %s", spec.Describe(raw))
		return s
	}
	switch {
	case s.Task == "" && s.Type == "" && !seen["task"] && !seen["type"]:
		p.Add(field, "neither task (a task folder) nor type (a type's name): give one")
	case seen["task"] && seen["type"]:
		p.Add(field, "both task and type: give one")
	case seen["task"] && (seen["params"] || seen["files"]):
		p.Add(field, "params and files belong to a type step, not a task folder")
	}
	if seen["items"] && seen["items_from"] {
		p.Add(field+".items_from", "given with items: give one")
	}
	return s
}

func readInputs(p *spec.Problems, field string, raw json.RawMessage) map[string]Source {
	m := strMap(p, field, raw, func(dest, src string) string {
		if problem := pathProblem(dest); problem != "" {
			return "destination " + problem
		}
		if dest == spec.TaskFile {
			return "destination would replace the task's own " + spec.TaskFile
		}
		_, problem := parseSource(src)
		return problem
	})
	out := map[string]Source{}
	for _, dest := range slices.Sorted(maps.Keys(m)) {
		src, _ := parseSource(m[dest])
		for other := range out {
			if strings.HasPrefix(dest, other+"/") {
				p.Add(spec.EntryPath(field, dest), "lies inside input %q", other)
			}
		}
		out[dest] = src
	}
	return out
}

func readItems(p *spec.Problems, field string, raw json.RawMessage) []string {
	list, ok := strList(p, field, raw)
	if !ok {
		return nil
	}
	if len(list) == 0 {
		p.Add(field, "an empty list runs the step no times: leave items out")
	}
	if len(list) > MaxInstances {
		p.Add(field, "%d items: more than %d", len(list), MaxInstances)
		return nil
	}
	for i, it := range list {
		if problem := itemProblem(it, list[:i]); problem != "" {
			p.Add(field+"["+strconv.Itoa(i)+"]", "%s", problem)
		}
	}
	return list
}

func readRetry(p *spec.Problems, field string, raw json.RawMessage) *Retry {
	r := &Retry{}
	seen, err := spec.Fields(p, field, raw, func(kf, k string, v json.RawMessage) {
		switch k {
		case "attempts":
			n, err := strconv.Atoi(string(v))
			if err != nil || n < 1 || n > MaxAttempts {
				p.Add(kf, "expected a whole number from 1 to %d, got %s", MaxAttempts, spec.Describe(v))
			}
			r.Attempts = n
		case "on":
			list, _ := strList(p, kf, v)
			for j, s := range list {
				st := spec.Status(s)
				switch {
				case st == spec.StatusOK || !st.Valid():
					p.Add(kf+"["+strconv.Itoa(j)+"]", "%q is not a failure status (use RE, TLE, MLE, PLE, OLE, SE)", s)
				case slices.Contains(r.On, st):
					p.Add(kf+"["+strconv.Itoa(j)+"]", "%q is listed more than once", s)
				default:
					r.On = append(r.On, st)
				}
			}
		default:
			p.Add(kf, "unknown key (known keys: attempts, on)")
		}
	})
	if err != nil {
		p.Add(field, "expected an object with attempts and on, got %s", spec.Describe(raw))
		return nil
	}
	if !seen["attempts"] {
		p.Add(field+".attempts", "missing: how many tries in all")
	}
	return r
}

// count is the instances steps make: one, or one per item; a step whose
// items come from a result counts one until they come.
func count(steps map[string]*Step) int {
	n := 0
	for _, s := range steps {
		n += max(1, len(s.Items))
	}
	return n
}

// checkGraph checks the steps news (a document) against all (the run's
// steps, news among them): references, cycles, ancestors, final, bounds.
// For Parse both are the document's steps; old is nil.
func checkGraph(p *spec.Problems, news map[string]*Step, old map[string]*Step, final string, nSteps, nInstances int) {
	all := map[string]*Step{}
	maps.Copy(all, old)
	maps.Copy(all, news)
	if final != "" {
		if _, ok := all[final]; !ok {
			p.Add("final", "%q names no step", final)
		}
	}
	names := slices.Sorted(maps.Keys(news))
	ok := true
	for _, name := range names {
		s := all[name]
		field := spec.EntryPath("tasks", name)
		for _, l := range []struct {
			key  string
			list []string
		}{{"after", s.After}, {"after_any", s.AfterAny}, {"after_failed", s.AfterFailed}} {
			for i, d := range l.list {
				f := field + "." + l.key + "[" + strconv.Itoa(i) + "]"
				switch _, exists := all[d]; {
				case d == name:
					p.Add(f, "names the step itself")
					ok = false
				case !exists:
					p.Add(f, "%q names no step%s", d, suggest(d, all))
					ok = false
				case d == final:
					p.Add(f, "%q is the final step: it runs last, nothing runs after it", d)
				}
			}
		}
	}
	if !ok {
		return // cycles and ancestors need every edge to land somewhere
	}
	for _, cycle := range cycles(all, names) {
		p.Add(spec.EntryPath("tasks", cycle[0]), "a cycle: %s", strings.Join(cycle, " → "))
	}
	for _, name := range names {
		s := all[name]
		field := spec.EntryPath("tasks", name)
		var anc map[string]bool
		ancestor := func(src string) string {
			if src == name {
				return "names the step itself"
			}
			if _, ok := all[src]; !ok {
				return fmt.Sprintf("%q names no step%s", src, suggest(src, all))
			}
			if name == final {
				return "" // final runs after every other step
			}
			if anc == nil {
				anc = ancestors(all, name)
			}
			if !anc[src] {
				return fmt.Sprintf("step %q is not among the steps %q runs after (add it to after, after_any or after_failed)", src, name)
			}
			return ""
		}
		for _, dest := range slices.Sorted(maps.Keys(s.Inputs)) {
			if problem := ancestor(s.Inputs[dest].Step); problem != "" {
				p.Add(spec.EntryPath(field+".inputs", dest), "%s", problem)
			}
		}
		if s.ItemsFrom != nil {
			problem := ancestor(s.ItemsFrom.Step)
			if src, ok := all[s.ItemsFrom.Step]; problem == "" && ok && src.Fanned() {
				problem = fmt.Sprintf("step %q runs once per item: the list comes from a step that runs once", s.ItemsFrom.Step)
			}
			if problem != "" {
				p.Add(field+".items_from", "%s", problem)
			}
		}
	}
	if nSteps > MaxSteps {
		p.Add("tasks", "the run would have %d steps: more than %d", nSteps, MaxSteps)
	}
	if nInstances > MaxInstances {
		p.Add("tasks", "the run would have %d instances (a step counts once per item): more than %d", nInstances, MaxInstances)
	}
}

// cycles finds the cycles through the steps from (depth first, in name
// order), each as a path that starts and ends at the same step.
func cycles(all map[string]*Step, from []string) [][]string {
	const (
		unseen = iota
		onPath
		done
	)
	mark := map[string]int{}
	var path []string
	var out [][]string
	var visit func(string)
	visit = func(n string) {
		mark[n] = onPath
		path = append(path, n)
		for _, d := range all[n].deps() {
			switch mark[d] {
			case unseen:
				visit(d)
			case onPath:
				i := slices.Index(path, d)
				// path runs from dependents to dependencies; a cycle reads
				// in the order steps run.
				c := slices.Clone(path[i:])
				slices.Reverse(c)
				// Start at the least name, so that a cycle reads the same
				// however it was found.
				least := slices.Index(c, slices.Min(c))
				c = append(c[least:], c[:least]...)
				out = append(out, append(c, c[0]))
			}
		}
		path = path[:len(path)-1]
		mark[n] = done
	}
	for _, n := range from {
		if mark[n] == unseen {
			visit(n)
		}
	}
	return out
}

// ancestors is every step name runs after, through any list, transitively.
func ancestors(all map[string]*Step, name string) map[string]bool {
	out := map[string]bool{}
	stack := []string{name}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		s, ok := all[n]
		if !ok {
			continue
		}
		for _, d := range s.deps() {
			if !out[d] {
				out[d] = true
				stack = append(stack, d)
			}
		}
	}
	return out
}

func suggest(name string, all map[string]*Step) string {
	if len(all) == 0 || len(all) > 20 {
		return ""
	}
	return " (steps: " + strings.Join(slices.Sorted(maps.Keys(all)), ", ") + ")"
}

// parseSource reads "STEP:PATH".
func parseSource(s string) (Source, string) {
	step, path, ok := strings.Cut(s, ":")
	if !ok {
		return Source{}, fmt.Sprintf("%q is not STEP:PATH", s)
	}
	if err := spec.CheckName(step); err != nil {
		return Source{}, fmt.Sprintf("%q: the step: %v", s, err)
	}
	if problem := pathProblem(path); problem != "" {
		return Source{}, fmt.Sprintf("%q: the path in the result: %s", s, problem)
	}
	return Source{Step: step, Path: path}, ""
}

// pathProblem says why p is not a relative path that stays in its folder.
func pathProblem(p string) string {
	switch {
	case p == "":
		return "is empty"
	case strings.HasPrefix(p, "/"):
		return fmt.Sprintf("%q is absolute: give a path inside the folder", p)
	case strings.ContainsRune(p, 0):
		return fmt.Sprintf("%q has a NUL byte", p)
	case !utf8.ValidString(p):
		return fmt.Sprintf("%q is not valid UTF-8", p)
	}
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "..":
			return fmt.Sprintf("%q leaves the folder (\"..\")", p)
		case "", ".":
			return fmt.Sprintf("%q is not a plain path (no empty or \".\" parts)", p)
		}
	}
	return ""
}

// folderProblem: a task folder is a path inside the workflow folder, not
// the workflow folder itself.
func folderProblem(p string) string {
	if p == "." {
		return `"." is the workflow folder itself: a step's task is a folder inside it`
	}
	return pathProblem(p)
}

// itemProblem says why it is not an item: items name folders (DEST/ITEM,
// OUT/STEP/ITEM), so each is one file name, unique among before.
func itemProblem(it string, before []string) string {
	switch {
	case it == "":
		return "an empty item"
	case len(it) > maxItemLen:
		return fmt.Sprintf("%q… is longer than %d bytes", it[:16], maxItemLen)
	case !utf8.ValidString(it):
		return fmt.Sprintf("%q is not valid UTF-8", it)
	case it == "." || it == ".." || strings.ContainsAny(it, "/\x00"):
		return fmt.Sprintf("item %q would leave its folder: an item is one file name (no \"/\", not \".\" or \"..\")", it)
	case slices.Contains(before, it):
		return fmt.Sprintf("item %q is listed more than once", it)
	}
	return ""
}

func str(p *spec.Problems, field string, raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		p.Add(field, "expected a string, got %s", spec.Describe(raw))
		return "", false
	}
	return s, true
}

func strList(p *spec.Problems, field string, raw json.RawMessage) ([]string, bool) {
	var list []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		p.Add(field, "expected a list of strings, got %s", spec.Describe(raw))
		return nil, false
	}
	out := make([]string, 0, len(list))
	ok := true
	for i, v := range list {
		s, good := str(p, field+"["+strconv.Itoa(i)+"]", v)
		ok = ok && good
		out = append(out, s)
	}
	return out, ok
}

// names reads a list of step names (checked against the graph later).
func names(p *spec.Problems, field string, raw json.RawMessage) []string {
	list, _ := strList(p, field, raw)
	var out []string
	for i, s := range list {
		if slices.Contains(out, s) {
			p.Add(field+"["+strconv.Itoa(i)+"]", "%q is listed more than once", s)
			continue
		}
		out = append(out, s)
	}
	return out
}

// strMap reads an object of strings; check says what is wrong with an entry.
func strMap(p *spec.Problems, field string, raw json.RawMessage, check func(k, v string) string) map[string]string {
	keys, vals, err := spec.Members(raw)
	if err != nil {
		p.Add(field, "expected an object of strings, got %s", spec.Describe(raw))
		return nil
	}
	out := map[string]string{}
	for i, k := range keys {
		f := spec.EntryPath(field, k)
		if _, dup := out[k]; dup {
			p.Add(f, "key given more than once")
			continue
		}
		s, ok := str(p, f, vals[i])
		if !ok {
			continue
		}
		if problem := check(k, s); problem != "" {
			p.Add(f, "%s", problem)
			continue
		}
		out[k] = s
	}
	return out
}
