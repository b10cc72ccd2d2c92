package spec

// This file owns kolejka_result.json: reading it strictly, writing it in
// Kolejka's canonical form, and loading and storing result folders.

import (
	"fmt"
	"strings"
)

func resultKeys() []string {
	return []string{"files", "id", "limits", "omitted", "result", "stats", "status", "stderr", "stdout", "tags"}
}

// statuses lists every verdict.
func statuses() []Status {
	return []Status{StatusOK, StatusRE, StatusTLE, StatusMLE, StatusPLE, StatusOLE, StatusSE}
}

// Valid reports whether s is one of the verdicts OK, RE, TLE, MLE, PLE, OLE,
// SE.
func (s Status) Valid() bool {
	for _, v := range statuses() {
		if s == v {
			return true
		}
	}
	return false
}

func statusProblem(s Status) string {
	names := make([]string, 0, 7)
	for _, v := range statuses() {
		names = append(names, string(v))
	}
	return fmt.Sprintf("%q is not a status (use %s)", string(s), strings.Join(names, ", "))
}

// ParseResult reads kolejka_result.json from data; file names it in errors.
// Like ParseTask it checks syntax and types strictly, not meaning. Its stats
// are normalised as Kolejka does on load (see Stats.Normalize).
func ParseResult(data []byte, file string) (*Result, error) {
	return decodeFile(data, file, (*decoder).result)
}

// LoadResult reads DIR/kolejka_result.json and checks it as a local result
// folder: ParseResult, Validate(Local) and CheckFiles(dir).
func LoadResult(dir string) (*Result, error) {
	return loadFolder(dir, ResultFile, "result", ParseResult)
}

func (d *decoder) result(n *node) *Result {
	m := d.fields(n, "", resultKeys()...)
	r := &Result{
		ID:     d.str(m.at("id")),
		Tags:   d.stringList(m.at("tags")),
		Limits: d.limits(m.at("limits")),
		Stdout: d.str(m.at("stdout")),
		Stderr: d.str(m.at("stderr")),
		Files:  d.files(m.at("files")),
		Stats:  d.stats(m.at("stats")),
	}
	if keys, vals := d.entries(m.at("omitted")); len(keys) > 0 {
		r.Omitted = make(map[string]string, len(keys))
		for i, k := range keys {
			r.Omitted[k] = d.str(vals[i], entryPath("omitted", k))
		}
	}
	if code := d.signed(m.at("result")); code != nil {
		if int64(int(*code)) != *code {
			d.add("result", "%d is out of range", *code)
		} else {
			c := int(*code)
			r.Result = &c
		}
	}
	if !absent(m.get("status")) {
		r.Status = Status(d.str(m.at("status")))
		if m.get("status").kind == jsonString && !r.Status.Valid() {
			d.add("status", "%s", statusProblem(r.Status))
		}
	}
	return r
}

// Encode writes the result as Kolejka does (see Task.Encode). tags, limits,
// stats and files are always written; id, result, status, stdout, stderr
// and omitted when set. Stats are written normalised, times rounded to microseconds.
func (r *Result) Encode() ([]byte, error) {
	p := problems{file: ResultFile}
	r.Limits.check(&p, "limits")
	r.Stats.check(&p, "stats")
	if r.Status != "" && !r.Status.Valid() {
		p.add("status", "%s", statusProblem(r.Status))
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	o := object{
		"tags":   strs(r.Tags),
		"limits": r.Limits.jsonValue(),
		"stats":  r.Stats.canonical().jsonValue(),
		"files":  filesValue(r.Files),
	}
	putString(o, "id", r.ID)
	if r.Result != nil {
		o["result"] = *r.Result
	}
	putString(o, "status", string(r.Status))
	putString(o, "stdout", r.Stdout)
	putString(o, "stderr", r.Stderr)
	if len(r.Omitted) > 0 {
		o["omitted"] = stringMap(r.Omitted)
	}
	return encodeFile(ResultFile, o)
}

// WriteResult writes DIR/kolejka_result.json atomically (see WriteTask).
// Write it last: its presence marks the result folder complete.
func WriteResult(dir string, r *Result) error { return writeDescription(dir, ResultFile, r.Encode) }

// MarshalJSON is Encode.
func (r *Result) MarshalJSON() ([]byte, error) { return r.Encode() }

// UnmarshalJSON reads a result as ParseResult does (a JSON null leaves r as
// it is).
func (r *Result) UnmarshalJSON(data []byte) error {
	return unmarshalValue(data, ResultFile, ParseResult, func(v *Result) { *r = *v })
}
