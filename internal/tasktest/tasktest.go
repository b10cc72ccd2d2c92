// Package tasktest runs the example tasks of testdata/tasks against whatever
// executes tasks (a worker runtime, the whole grid) and checks each result
// against the expected.json beside the task. One table, every
// implementation: the conformance suite of this project.
package tasktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/spec"
)

// Case is one example task.
type Case struct {
	Name     string
	Dir      string
	Expected Expected
}

// Expected is expected.json.
type Expected struct {
	Status   spec.Status          `json:"status"`
	Result   *int                 `json:"result"`
	Files    map[string]FileCheck `json:"files"`
	Absent   []string             `json:"absent"`
	Omitted  []string             `json:"omitted"` // exactly the names the result's "omitted" must give
	Stats    StatsCheck           `json:"stats"`
	Runtimes []string             `json:"runtimes"`
}

// FileCheck is what one result file must be.
type FileCheck struct {
	Equals            *string  `json:"equals"`
	Regex             string   `json:"regex"`
	Lines             []string `json:"lines"` // each must be a whole line of the file
	SizeIsOutputLimit bool     `json:"size_is_output_limit"`
}

// StatsCheck bounds measured stats; empty strings and zeros are unchecked.
type StatsCheck struct {
	TimeAtLeast          string `json:"time_at_least"`
	TimeAtMost           string `json:"time_at_most"`
	CPUAtLeast           string `json:"cpu_at_least"`
	CPUAtMost            string `json:"cpu_at_most"`
	MemoryMaxUsageAtMost string `json:"memory_max_usage_at_most"`
	PidsMaxUsageAtMost   int64  `json:"pids_max_usage_at_most"`
}

// Root finds testdata/tasks from the current folder or one of its parents
// (go test runs in the package's folder).
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "testdata", "tasks")
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("testdata/tasks not found above %s", dir)
		}
		dir = parent
	}
}

// Cases loads every task with an expected.json, sorted by name.
func Cases() ([]Case, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var cases []Case
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		data, err := os.ReadFile(filepath.Join(dir, "expected.json"))
		if err != nil {
			continue
		}
		c := Case{Name: e.Name(), Dir: dir}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c.Expected); err != nil {
			return nil, fmt.Errorf("%s/expected.json: %w", dir, err)
		}
		for name, fc := range c.Expected.Files {
			if _, err := regexp.Compile(fc.Regex); err != nil {
				return nil, fmt.Errorf("%s/expected.json: files.%s.regex: %w", dir, name, err)
			}
		}
		cases = append(cases, c)
	}
	sort.Slice(cases, func(i, j int) bool { return cases[i].Name < cases[j].Name })
	return cases, nil
}

// AppliesTo reports whether the case is meant for runtime.
func (c *Case) AppliesTo(runtime string) bool {
	return len(c.Expected.Runtimes) == 0 || slices.Contains(c.Expected.Runtimes, runtime)
}

// Check compares a result folder (and its parsed result) with the
// expectation; outputLimit is the cap the executor used. It returns every
// mismatch, none when all is well.
func (c *Case) Check(resultDir string, res *spec.Result, outputLimit int64) []string {
	var bad []string
	e := &c.Expected
	if res.Status != e.Status {
		bad = append(bad, fmt.Sprintf("status %q, want %q", res.Status, e.Status))
	}
	if e.Result != nil {
		switch {
		case res.Result == nil:
			bad = append(bad, fmt.Sprintf("no exit code, want %d", *e.Result))
		case *res.Result != *e.Result:
			bad = append(bad, fmt.Sprintf("exit code %d, want %d", *res.Result, *e.Result))
		}
	}
	for name, fc := range e.Files {
		if _, listed := res.Files[name]; !listed {
			bad = append(bad, fmt.Sprintf("%s not listed in the result's files", name))
		}
		data, err := os.ReadFile(filepath.Join(resultDir, filepath.FromSlash(name)))
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if fc.Equals != nil && string(data) != *fc.Equals {
			bad = append(bad, fmt.Sprintf("%s is %q, want %q", name, clip(data), *fc.Equals))
		}
		if fc.Regex != "" && !regexp.MustCompile(fc.Regex).Match(data) {
			bad = append(bad, fmt.Sprintf("%s is %q, want it to match %q", name, clip(data), fc.Regex))
		}
		have := make(map[string]bool)
		for _, l := range strings.Split(string(data), "\n") {
			have[l] = true
		}
		for _, l := range fc.Lines {
			if !have[l] {
				bad = append(bad, fmt.Sprintf("%s has no line %q in %q", name, l, clip(data)))
			}
		}
		if fc.SizeIsOutputLimit && int64(len(data)) != outputLimit {
			bad = append(bad, fmt.Sprintf("%s has %d bytes, want exactly the output limit %d", name, len(data), outputLimit))
		}
	}
	for _, name := range e.Absent {
		if _, listed := res.Files[name]; listed {
			bad = append(bad, fmt.Sprintf("%s must not be in the result's files", name))
		}
		if _, err := os.Lstat(filepath.Join(resultDir, filepath.FromSlash(name))); err == nil {
			bad = append(bad, fmt.Sprintf("%s must not be in the result folder", name))
		}
	}
	for _, name := range e.Omitted {
		if _, ok := res.Omitted[name]; !ok {
			bad = append(bad, fmt.Sprintf("%s is not named in the result's omitted %v", name, res.Omitted))
		}
	}
	for name, why := range res.Omitted {
		if !slices.Contains(e.Omitted, name) {
			bad = append(bad, fmt.Sprintf("%s was left out of the result unexpectedly: %s", name, why))
		}
	}
	bad = append(bad, e.Stats.check(&res.Stats)...)
	return bad
}

func (s *StatsCheck) check(st *spec.Stats) []string {
	var bad []string
	dur := func(what, bound string, got *time.Duration, atLeast bool) {
		if bound == "" {
			return
		}
		want, err := spec.ParseTime(bound)
		if err != nil {
			bad = append(bad, fmt.Sprintf("bad bound %s %q: %v", what, bound, err))
			return
		}
		switch {
		case got == nil:
			bad = append(bad, what+" was not measured")
		case atLeast && *got < want:
			bad = append(bad, fmt.Sprintf("%s %v, want at least %v", what, *got, want))
		case !atLeast && *got > want:
			bad = append(bad, fmt.Sprintf("%s %v, want at most %v", what, *got, want))
		}
	}
	dur("time", s.TimeAtLeast, st.Time, true)
	dur("time", s.TimeAtMost, st.Time, false)
	dur("cpu", s.CPUAtLeast, st.CPU.Usage, true)
	dur("cpu", s.CPUAtMost, st.CPU.Usage, false)
	if s.MemoryMaxUsageAtMost != "" {
		want, err := spec.ParseSize(s.MemoryMaxUsageAtMost)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("bad bound memory %q: %v", s.MemoryMaxUsageAtMost, err))
		case st.Memory.MaxUsage == nil:
			bad = append(bad, "memory was not measured")
		case *st.Memory.MaxUsage > want:
			bad = append(bad, fmt.Sprintf("memory peak %d, want at most %d", *st.Memory.MaxUsage, want))
		}
	}
	if s.PidsMaxUsageAtMost > 0 {
		switch {
		case st.Pids.MaxUsage == nil:
			bad = append(bad, "pids were not measured")
		case *st.Pids.MaxUsage > s.PidsMaxUsageAtMost:
			bad = append(bad, fmt.Sprintf("pids peak %d, want at most %d", *st.Pids.MaxUsage, s.PidsMaxUsageAtMost))
		}
	}
	return bad
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}
