package workflow

// This file owns what a caller needs to make an instance's task: the
// {item} substitution in a task folder's kolejka_task.json or in a type
// step's parameters, and the bindings of its inputs.

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kolejka-go/kolejka/internal/tasktype"
	"github.com/kolejka-go/kolejka/spec"
)

// RenderTask reads a task step's kolejka_task.json (data; file names it in
// errors) for an instance with item. Without an item (a step that runs
// once) the task is read as it is. With one, the task is a template as a
// task type's is, with one parameter, item: {item} in args, environment
// values, stdin, stdout, stderr and file names stands for the item, "{{"
// and "}}" for literal braces, any other placeholder is refused. An item
// that would move a file or an output out of the task folder is refused
// naming the item and the field; nothing is returned then.
func RenderTask(data []byte, file, item string) (*spec.Task, error) {
	if item == "" {
		return spec.ParseTask(data, file)
	}
	// Declaring the parameter makes the task a type: tasktype's parser and
	// renderer apply, with their brace rules and their folder checks.
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return spec.ParseTask(data, file) // spec names the problem
	}
	rest := bytes.TrimLeft(trimmed[1:], " \t\r\n")
	patched := []byte(`{"params": {"item": {}}`)
	if len(rest) > 0 && rest[0] != '}' {
		patched = append(patched, ',')
	}
	patched = append(patched, trimmed[1:]...)
	typ, err := tasktype.Parse(patched, file)
	if err != nil {
		return nil, err
	}
	task, _, err := typ.Render(map[string]string{"item": item}, nil)
	if err != nil {
		return nil, fmt.Errorf("item %q: %w", item, err)
	}
	return task, nil
}

// Params returns the parameters of a type step's instance: the step's
// params with {item} standing for the instance's item ("{{" and "}}" for
// literal braces) when the step runs per item, as they are otherwise. The
// type's Render then checks the values as it checks any user's.
func (r *Run) Params(id ID) (map[string]string, error) {
	in := r.find(id)
	if in == nil {
		return nil, fmt.Errorf("unable to give parameters: no instance %s", id)
	}
	s := r.s.Steps[id.Step].Step
	out := maps.Clone(s.Params)
	if in.Item == "" {
		return out, nil
	}
	p := spec.NewProblems(FileName)
	for _, k := range slices.Sorted(maps.Keys(out)) {
		v, problem := substitute(out[k], in.Item)
		if problem != "" {
			p.Add(spec.EntryPath(spec.EntryPath("tasks", id.Step)+".params", k), "%s", problem)
		}
		out[k] = v
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// substitute puts item for {item} in s, in one pass (braces in the item
// stay literal).
func substitute(s, item string) (string, string) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case (c == '{' || c == '}') && i+1 < len(s) && s[i+1] == c:
			b.WriteByte(c)
			i++
		case c == '{':
			if !strings.HasPrefix(s[i:], "{item}") {
				return "", fmt.Sprintf("%q: the only placeholder is {item} (write \"{{\" for a literal brace)", s)
			}
			b.WriteString(item)
			i += len("{item}") - 1
		case c == '}':
			return "", fmt.Sprintf("%q has a \"}\" with no \"{\" (write \"}}\" for a literal brace)", s)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), ""
}

// Inputs lists the bindings an instance needs, by destination: each input
// DEST from a step that runs once is that step's file; from a step that
// runs per item, DEST is a folder with one entry DEST/ITEM per item. Only
// instances with a result (ended OK or failed) are bound: a skipped or
// cancelled item has no file to give.
func (r *Run) Inputs(id ID) ([]Binding, error) {
	if r.find(id) == nil {
		return nil, fmt.Errorf("unable to list inputs: no instance %s", id)
	}
	s := r.s.Steps[id.Step].Step
	var out []Binding
	for _, dest := range slices.Sorted(maps.Keys(s.Inputs)) {
		src := s.Inputs[dest]
		from := r.s.Steps[src.Step]
		for _, in := range from.Instances {
			if in.TaskKey == "" || (in.State != OK && in.State != Failed) {
				continue
			}
			d := dest
			if from.Step.Fanned() {
				d = dest + "/" + in.Item
			}
			out = append(out, Binding{Dest: d, From: ID{src.Step, in.Index}, TaskKey: in.TaskKey, Path: src.Path})
		}
	}
	return out, nil
}
