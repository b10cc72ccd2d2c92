package tasktype

// This file owns rendering: a type and a user's parameters in, a plain
// Kolejka task and the record of where it came from out.

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kolejka-go/kolejka/spec"
)

// Origin records where a rendered task came from. The server stores it
// beside the task (task show prints it); it is never written into
// kolejka_task.json, which stays a plain Kolejka task.
type Origin struct {
	Type    string            `json:"type"`
	Version int               `json:"version"`
	Params  map[string]string `json:"params,omitempty"`   // every value parameter, defaults applied
	Files   map[string]string `json:"files,omitempty"`    // file parameter → its file's name in the task folder
	PassEnv []string          `json:"pass_env,omitempty"` // the type's environment whitelist
}

// Render fills the type's placeholders. values gives value parameters;
// files gives file parameters, each as the name of the file the user adds to
// the task folder: it becomes one of the task's files (its path that name)
// and its placeholder stands for that name.
//
// It refuses, each problem a *spec.Error whose Field is `params["NAME"]`:
// an unknown parameter, a missing required one, a file parameter given as
// a value or a value parameter given as a file, a value that is not UTF-8,
// and a rendered task that spec's Validate(Local) refuses because of a
// parameter (a file, stdin or output name leaving the task folder, a NUL in
// an argument, two files rendered to one name). Nothing is returned then.
//
// The task returned passes Validate(Local); a server sets the blob
// references of its files before storing it.
func (t *Type) Render(values, files map[string]string) (*spec.Task, *Origin, error) {
	p := spec.NewProblems(t.file)
	for _, name := range slices.Sorted(maps.Keys(values)) {
		prm, ok := t.params[name]
		switch {
		case !ok:
			p.Add(spec.EntryPath("params", name), "unknown parameter (%s)", declared(t.params))
		case prm.File:
			p.Add(spec.EntryPath("params", name), "is a file parameter: give it a file, not a value")
		case !utf8.ValidString(values[name]):
			p.Add(spec.EntryPath("params", name), "the value is not valid UTF-8")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		prm, ok := t.params[name]
		switch {
		case !ok:
			p.Add(spec.EntryPath("params", name), "unknown parameter (%s)", declared(t.params))
		case !prm.File:
			p.Add(spec.EntryPath("params", name), "is a value parameter: give it a value, not a file")
		case !utf8.ValidString(files[name]):
			p.Add(spec.EntryPath("params", name), "the file name is not valid UTF-8")
		}
	}
	effective := map[string]string{}
	origin := &Origin{Type: t.Name, Version: t.Version, PassEnv: t.PassEnv()}
	for _, name := range slices.Sorted(maps.Keys(t.params)) {
		prm := t.params[name]
		if prm.File {
			if _, ok := files[name]; !ok {
				p.Add(spec.EntryPath("params", name), "missing (a file parameter: give it a file)")
			}
			continue
		}
		v, ok := values[name]
		if !ok && prm.Default != nil {
			v, ok = *prm.Default, true
		}
		if !ok {
			p.Add(spec.EntryPath("params", name), "missing (required: it has no default)")
			continue
		}
		effective[name] = v
	}
	if err := p.Err(); err != nil {
		return nil, nil, err
	}
	if len(effective) > 0 {
		origin.Params = effective
	}
	fileParams := map[string]string{}
	for name, f := range files {
		fileParams[name] = f
	}
	if len(fileParams) > 0 {
		origin.Files = fileParams
	}
	task, err := t.render(effective, fileParams)
	if err != nil {
		return nil, nil, err
	}
	return task, origin, nil
}

// render builds the task from values (value parameters) and files (file
// parameters → file names) and validates it, naming the parameters behind
// each problem.
func (t *Type) render(values, files map[string]string) (*spec.Task, error) {
	p := spec.NewProblems(t.file)
	all := map[string]string{}
	for k, v := range values {
		all[k] = v
	}
	for k, v := range files {
		all[k] = v
	}
	// A fresh copy of the template through its canonical form: nothing the
	// caller does to the result can reach the type.
	data, err := t.template.Encode()
	if err != nil {
		return nil, err
	}
	task, err := spec.ParseTask(data, t.file)
	if err != nil {
		return nil, err
	}
	// trace: which parameters made each rendered field.
	trace := map[string][]string{}
	renderedFiles := map[string]spec.File{}
	from := map[string]string{} // rendered file name → the type's name for it
	for _, f := range t.fields {
		s := expand(f.pieces, all)
		if f.set != nil {
			f.set(task, s)
			trace[f.field] = params(f.pieces)
			continue
		}
		orig := strings.TrimSuffix(strings.TrimPrefix(f.field, `files[`), `]`)
		orig, _ = strconv.Unquote(orig)
		if other, dup := from[s]; dup {
			used := append(params(f.pieces), trace[spec.EntryPath("files", s)]...)
			p.AddError(traced(t.file, spec.EntryPath("files", s), fmt.Sprintf("files %q and %q both become %q", other, orig, s), used, all))
			continue
		}
		from[s] = orig
		renderedFiles[s] = task.Files[orig]
		trace[spec.EntryPath("files", s)] = params(f.pieces)
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		fname := files[name]
		if orig, dup := from[fname]; dup {
			p.Add(spec.EntryPath("params", name), "file %q clashes with the type's file %q", fname, orig)
			continue
		}
		from[fname] = "{" + name + "}"
		renderedFiles[fname] = spec.File{Path: fname}
		trace[spec.EntryPath("files", fname)] = []string{name}
	}
	task.Files = renderedFiles
	if err := p.Err(); err != nil {
		return nil, err
	}
	if err := task.Validate(spec.Local); err != nil {
		blamed := map[string]bool{}
		for _, e := range flatten(err) {
			field, err := blame(t.file, e, trace, all)
			// One problem per rendered file is enough: a file name that
			// leaves the folder need not be reported again for its path.
			if field != "" && blamed[field] {
				continue
			}
			blamed[field] = field != ""
			p.AddError(err)
		}
		return nil, p.Err()
	}
	return task, nil
}

// blame names the parameters behind a validation problem of the rendered
// task, when there are any: the problem is theirs, not the type's. field is
// the rendered field blamed on them, "" when none is.
func blame(file string, err error, trace map[string][]string, values map[string]string) (field string, _ error) {
	var se *spec.Error
	if !errors.As(err, &se) {
		return "", err
	}
	for field, used := range trace {
		if len(used) > 0 && (se.Field == field || strings.HasPrefix(se.Field, field+".")) {
			return field, traced(file, se.Field, se.Problem, used, values)
		}
	}
	c := *se
	c.File = file
	return "", &c
}

// traced is the problem of a rendered field, blamed on the first of the
// parameters used in it and showing the values of all of them.
func traced(file, field, problem string, used []string, values map[string]string) error {
	seen := map[string]bool{}
	var shown []string
	first := ""
	for _, name := range used {
		if seen[name] {
			continue
		}
		seen[name] = true
		if first == "" {
			first = name
		}
		shown = append(shown, fmt.Sprintf("%s = %q", name, values[name]))
	}
	return &spec.Error{File: file, Field: spec.EntryPath("params", first), Problem: fmt.Sprintf("with %s, %s: %s", strings.Join(shown, ", "), field, problem)}
}

// flatten lists the members of an errors.Join, or err alone.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // spec joins its *Errors directly
		return j.Unwrap()
	}
	return []error{err}
}
