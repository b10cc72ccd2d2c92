package tasktype

// This file owns reading a type: its task, its "params" and "pass_env", and
// the placeholders of its templated fields.

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/kolejka-go/kolejka/spec"
)

// Type is a parsed task type, made only by Parse (a zero Type has no
// template to render). Parse fills everything but Name and Version,
// which the store that keeps the type's versions sets.
type Type struct {
	Name    string
	Version int

	file     string
	template *spec.Task // placeholders unexpanded
	params   map[string]Param
	passEnv  []string
	fields   []templated
}

// Param is one declared parameter. A value parameter is required unless it
// has a Default; a File parameter is always required and takes a file the
// user adds to the task folder: its placeholder stands for that file's name.
type Param struct {
	Default *string // nil: none ("" is a default)
	File    bool
}

// templated is one field of the task that may hold placeholders.
type templated struct {
	field  string // as spec names it: "args[2]", `environment["X"]`, "stdout", `files["in.txt"]`
	pieces []piece
	set    func(t *spec.Task, s string)
}

// Params returns a copy of the type's parameters by name.
func (t *Type) Params() map[string]Param {
	out := make(map[string]Param, len(t.params))
	for k, v := range t.params {
		out[k] = v
	}
	return out
}

// PassEnv returns the host environment variables a task of this type may
// take (saltant's environment whitelist), sorted. A node passes only those
// its own configuration also allows.
func (t *Type) PassEnv() []string { return slices.Clone(t.passEnv) }

// Parse reads a type's kolejka_task.json from data; file names it in errors.
// The task part is read by spec, as strictly as any task. Besides it:
//
//	"params":   {"NAME": {"default": "STRING", "file": BOOL}, ...}
//	"pass_env": ["VAR", ...]
//
// Parameter and variable names are identifiers; a file parameter has no
// default; every placeholder names a declared parameter. The type must also
// make a valid task (spec's Validate(Local)) with each value parameter at
// its default or, lacking one, its own name, and each file parameter as a
// file named "{NAME}". All problems come back at once, each a *spec.Error.
func Parse(data []byte, file string) (*Type, error) {
	task, err := spec.ParseTaskExtended(data, file, "params", "pass_env")
	if err != nil {
		return nil, err
	}
	p := spec.NewProblems(file)
	t := &Type{file: file, template: task, params: map[string]Param{}}
	keys, vals, err := spec.Members(data)
	if err != nil { // spec read it, so only a reader disagreement lands here
		p.Add("", "%v", err)
		return nil, p.Err()
	}
	for i, k := range keys {
		switch k {
		case "params":
			t.params = readParams(p, vals[i])
		case "pass_env":
			t.passEnv = readPassEnv(p, vals[i])
		}
	}
	t.compile(p)
	if err := p.Err(); err != nil {
		return nil, err
	}
	values, files := map[string]string{}, map[string]string{}
	for name, prm := range t.params {
		switch {
		case prm.File:
			files[name] = "{" + name + "}"
		case prm.Default != nil:
			values[name] = *prm.Default
		default:
			values[name] = name
		}
	}
	if _, err := t.render(values, files); err != nil {
		return nil, err
	}
	return t, nil
}

func readParams(p *spec.Problems, raw json.RawMessage) map[string]Param {
	out := map[string]Param{}
	if isNull(raw) {
		return out
	}
	names, vals, err := spec.Members(raw)
	if err != nil {
		p.Add("params", "expected an object of parameters, got %s", spec.Describe(raw))
		return out
	}
	for i, name := range names {
		field := spec.EntryPath("params", name)
		if _, dup := out[name]; dup {
			p.Add(field, "key given more than once")
			continue
		}
		if !isIdentifier(name) {
			p.Add(field, "%q is not a parameter name: a letter or _ followed by letters, digits and _", name)
			continue
		}
		out[name] = readParam(p, field, vals[i])
	}
	return out
}

func readParam(p *spec.Problems, field string, raw json.RawMessage) Param {
	var prm Param
	if isNull(raw) {
		return prm
	}
	_, err := spec.Fields(p, field, raw, func(kf, k string, v json.RawMessage) {
		switch k {
		case "default":
			if isNull(v) {
				return
			}
			var s string
			if v[0] != '"' || json.Unmarshal(v, &s) != nil {
				p.Add(kf, "expected a string, got %s", spec.Describe(v))
				return
			}
			prm.Default = &s
		case "file":
			switch string(v) {
			case "true":
				prm.File = true
			case "false", "null":
			default:
				p.Add(kf, "expected true or false, got %s", spec.Describe(v))
			}
		default:
			p.Add(kf, "unknown key (known keys: default, file)")
		}
	})
	if err != nil {
		p.Add(field, "expected an object with default and/or file, got %s", spec.Describe(raw))
		return prm
	}
	if prm.File && prm.Default != nil {
		p.Add(field+".default", "a file parameter has no default (the user always gives the file)")
	}
	return prm
}

func readPassEnv(p *spec.Problems, raw json.RawMessage) []string {
	if isNull(raw) {
		return nil
	}
	var list []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		p.Add("pass_env", "expected a list of variable names, got %s", spec.Describe(raw))
		return nil
	}
	var out []string
	for i, v := range list {
		field := "pass_env[" + strconv.Itoa(i) + "]"
		var s string
		if v[0] != '"' || json.Unmarshal(v, &s) != nil {
			p.Add(field, "expected a string, got %s", spec.Describe(v))
			continue
		}
		switch {
		case !isIdentifier(s):
			p.Add(field, "%q is not a variable name: a letter or _ followed by letters, digits and _", s)
		case slices.Contains(out, s):
			p.Add(field, "%q is listed more than once", s)
		default:
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// compile finds the templated fields of the task and checks that their
// placeholders name declared parameters.
func (t *Type) compile(p *spec.Problems) {
	task := t.template
	add := func(field, s string, set func(*spec.Task, string)) {
		pieces, problem := compile(s)
		if problem != "" {
			p.Add(field, "%s", problem)
			return
		}
		for _, name := range params(pieces) {
			if _, ok := t.params[name]; !ok {
				p.Add(field, "placeholder {%s} names no parameter (%s)", name, declared(t.params))
			}
		}
		t.fields = append(t.fields, templated{field: field, pieces: pieces, set: set})
	}
	for i, a := range task.Args {
		add("args["+strconv.Itoa(i)+"]", a, func(r *spec.Task, s string) { r.Args[i] = s })
	}
	for _, k := range slices.Sorted(maps.Keys(task.Environment)) {
		add(spec.EntryPath("environment", k), task.Environment[k], func(r *spec.Task, s string) { r.Environment[k] = s })
	}
	add("stdin", task.Stdin, func(r *spec.Task, s string) { r.Stdin = s })
	add("stdout", task.Stdout, func(r *spec.Task, s string) { r.Stdout = s })
	add("stderr", task.Stderr, func(r *spec.Task, s string) { r.Stderr = s })
	// File names are set by render, which also checks that they stay apart.
	for _, k := range slices.Sorted(maps.Keys(task.Files)) {
		add(spec.EntryPath("files", k), k, nil)
	}
}

func declared(params map[string]Param) string {
	if len(params) == 0 {
		return "the type declares none"
	}
	return "declared: " + strings.Join(slices.Sorted(maps.Keys(params)), ", ")
}

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }
