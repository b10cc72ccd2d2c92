package spec

// This file owns kolejka_task.json: reading it strictly, writing it in
// Kolejka's canonical form, and loading and storing task folders.

import (
	"slices"
	"strings"
)

func taskKeys() []string {
	return []string{"args", "callback_url", "collect", "environment", "exclusive", "files", "id", "image", "limits", "queue", "requires", "stderr", "stdin", "stdout"}
}

func fileSpecKeys() []string { return []string{"path", "reference"} }

func collectKeys() []string { return []string{"glob", "prefix", "strip"} }

// ParseTask reads kolejka_task.json from data; file names it in errors. It
// checks syntax and types strictly (unknown keys, bad units, wrong types are
// *Errors naming the field) but not meaning: see Validate and CheckFiles.
func ParseTask(data []byte, file string) (*Task, error) {
	return decodeFile(data, file, (*decoder).task)
}

// ParseTaskExtended is ParseTask for a format that extends a task with
// top-level keys of its own (a task type's "params"): the keys in extra are
// allowed and left unread, for the caller to read from data itself; every
// other key is read as ParseTask reads it. Repeated keys, extra ones
// included, are still problems.
func ParseTaskExtended(data []byte, file string, extra ...string) (*Task, error) {
	keys := append(taskKeys(), extra...)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	return decodeFile(data, file, func(d *decoder, n *node) *Task { return d.taskWithKeys(n, keys) })
}

// LoadTask reads DIR/kolejka_task.json and checks it as a local task folder:
// ParseTask, Validate(Local) and CheckFiles(dir). Errors name the file read.
func LoadTask(dir string) (*Task, error) {
	return loadFolder(dir, TaskFile, "task", ParseTask)
}

func (d *decoder) task(n *node) *Task { return d.taskWithKeys(n, taskKeys()) }

// taskWithKeys reads a task from an object whose allowed top-level keys are
// keys (sorted): the task's own, and perhaps keys a caller reads itself.
func (d *decoder) taskWithKeys(n *node, keys []string) *Task {
	m := d.fields(n, "", keys...)
	return &Task{
		ID:          d.str(m.at("id")),
		Image:       d.str(m.at("image")),
		Args:        d.wordList(m.at("args")),
		Requires:    d.stringList(m.at("requires")),
		Exclusive:   d.boolean(m.at("exclusive")),
		Limits:      d.limits(m.at("limits")),
		Environment: d.environment(m.at("environment")),
		Stdin:       d.str(m.at("stdin")),
		Stdout:      d.str(m.at("stdout")),
		Stderr:      d.str(m.at("stderr")),
		Files:       d.files(m.at("files")),
		Collect:     d.collect(m.at("collect")),
		CallbackURL: d.str(m.at("callback_url")),
		Queue:       d.str(m.at("queue")),
	}
}

// environment reads name → value; numbers become strings as Kolejka's str()
// spells them.
func (d *decoder) environment(n *node, path string) map[string]string {
	env := map[string]string{}
	keys, vals := d.entries(n, path)
	for i, k := range keys {
		if s, ok := d.word(vals[i], entryPath(path, k)); ok {
			env[k] = s
		}
	}
	return env
}

// files reads name → spec, where a spec is a path string, null (the path is
// the name) or an object with path and/or reference.
func (d *decoder) files(n *node, path string) map[string]File {
	files := map[string]File{}
	keys, vals := d.entries(n, path)
	for i, name := range keys {
		p, v := entryPath(path, name), vals[i]
		switch v.kind {
		case jsonNull:
			files[name] = File{Path: name}
		case jsonString:
			files[name] = File{Path: v.str}
		case jsonObject:
			m := d.fields(v, p, fileSpecKeys()...)
			files[name] = File{
				Path:      d.str(m.at("path")),
				Reference: d.str(m.at("reference")),
			}
		default:
			d.add(p, "expected a path, null or an object with path and/or reference, got %s", v.describe())
		}
	}
	return files
}

// collect reads the list of {glob, strip, prefix}. The prefix loses leading
// and trailing slashes, as in Kolejka.
func (d *decoder) collect(n *node, path string) []Collect {
	var out []Collect
	for i, item := range d.list(n, path) {
		p := indexPath(path, i)
		if item.kind != jsonObject {
			d.add(p, "expected an object with glob, strip and prefix, got %s", item.describe())
			continue
		}
		m := d.fields(item, p, collectKeys()...)
		c := Collect{
			Glob:   d.str(m.at("glob")),
			Prefix: strings.Trim(d.str(m.at("prefix")), "/"),
		}
		if absent(m.get("glob")) {
			d.add(fieldPath(p, "glob"), "missing")
		}
		if s := d.count(m.at("strip")); s != nil {
			if int64(int(*s)) != *s {
				d.add(fieldPath(p, "strip"), "too large")
			}
			c.Strip = int(*s)
		}
		out = append(out, c)
	}
	return out
}

// Encode writes the task as Kolejka does: json.dump(sort_keys=True,
// indent=2, ensure_ascii=False), no trailing newline. requires, limits,
// environment, args, files and collect are always written; other fields
// when set. It fails only on values no reader would accept back (negative
// limits, invalid UTF-8), naming the field.
func (t *Task) Encode() ([]byte, error) {
	p := problems{file: TaskFile}
	t.Limits.check(&p, "limits")
	for i, c := range t.Collect {
		if c.Strip < 0 {
			p.add(fieldPath(indexPath("collect", i), "strip"), "negative (%d)", c.Strip)
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	o := object{
		"requires":    strs(t.Requires),
		"limits":      t.Limits.jsonValue(),
		"environment": stringMap(t.Environment),
		"args":        strs(t.Args),
		"files":       filesValue(t.Files),
		"collect":     collectValue(t.Collect),
	}
	putString(o, "id", t.ID)
	putString(o, "image", t.Image)
	if t.Exclusive != nil {
		o["exclusive"] = *t.Exclusive
	}
	putString(o, "stdin", t.Stdin)
	putString(o, "stdout", t.Stdout)
	putString(o, "stderr", t.Stderr)
	putString(o, "callback_url", t.CallbackURL)
	putString(o, "queue", t.Queue)
	return encodeFile(TaskFile, o)
}

// WriteTask writes DIR/kolejka_task.json atomically: a reader sees the old
// file or the new one, and after a crash never a torn one.
func WriteTask(dir string, t *Task) error { return writeDescription(dir, TaskFile, t.Encode) }

// MarshalJSON is Encode, so that a task embedded in an HTTP answer is
// written in the canonical form.
func (t *Task) MarshalJSON() ([]byte, error) { return t.Encode() }

// UnmarshalJSON reads a task as ParseTask does (a JSON null leaves t as it
// is).
func (t *Task) UnmarshalJSON(data []byte) error {
	return unmarshalValue(data, TaskFile, ParseTask, func(v *Task) { *t = *v })
}

func strs(list []string) []any {
	out := make([]any, len(list))
	for i, s := range list {
		out[i] = s
	}
	return out
}

func stringMap(m map[string]string) object {
	o := make(object, len(m))
	for k, v := range m {
		o[k] = v
	}
	return o
}

func filesValue(files map[string]File) object {
	o := make(object, len(files))
	for name, f := range files {
		spec := object{}
		putString(spec, "path", f.Path)
		putString(spec, "reference", f.Reference)
		o[name] = spec
	}
	return o
}

func collectValue(list []Collect) []any {
	out := make([]any, len(list))
	for i, c := range list {
		o := object{"glob": c.Glob}
		if c.Strip > 0 {
			o["strip"] = c.Strip
		}
		putString(o, "prefix", strings.Trim(c.Prefix, "/")) // as a reader would see it
		out[i] = o
	}
	return out
}

func putString(o object, key, v string) {
	if v != "" {
		o[key] = v
	}
}
