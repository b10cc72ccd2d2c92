package hardening

// This file owns the suite's table: the rows the tests fill in as they run
// (what each case expects, what the run observed, whether it passed) and
// docs/hardening.md, written from them at the end of a run.

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
)

// Category is one of the suite's three tables.
type Category int

// The categories, in the order the document shows them.
const (
	BadInput Category = iota
	Hostile
	Fault
	numCategories
)

// Title is the category's heading in the document.
func (c Category) Title() string {
	return [...]string{"Bad input", "Hostile tasks", "Faults"}[c]
}

// Minimum is how many cases of the category a complete run has at least
// (40 bad inputs, 12 hostile tasks, 6 faults): a table with fewer is
// refused.
func (c Category) Minimum() int {
	return [...]int{40, 12, 6}[c]
}

// Status is how a row's test ended.
type Status string

// Row statuses. A row is Pending until its test ends.
const (
	Pending Status = ""
	Pass    Status = "PASS"
	Fail    Status = "FAIL"
	Skip    Status = "SKIP"
)

// Row is one case: what must happen, and what the run saw.
type Row struct {
	Category Category
	ID       string // e.g. "B07"; unique in the table
	Case     string // what the input, task or fault is
	Expect   string // what must happen
	Test     string // the go test that checks it, e.g. TestBadInputServer/B07

	mu       sync.Mutex
	observed []string
	status   Status
	took     time.Duration
}

// Observe appends what the run saw (an error message, a verdict, the
// evidence that nothing changed or that the node is healthy).
func (r *Row) Observe(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.observed = append(r.observed, fmt.Sprintf(format, args...))
}

// Finish records how the row's test ended.
func (r *Row) Finish(s Status, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status, r.took = s, took
}

// Status is how the row's test ended (Pending while it runs).
func (r *Row) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Observed is what the run saw, in order.
func (r *Row) Observed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.observed...)
}

// Table collects the rows of one run. Safe for concurrent use.
type Table struct {
	mu   sync.Mutex
	rows []*Row
	ids  map[string]bool
}

// Add registers a row; an ID used twice is an error (the document must
// name every case once).
func (t *Table) Add(c Category, id, name, expect, test string) (*Row, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ids == nil {
		t.ids = map[string]bool{}
	}
	if t.ids[id] {
		return nil, fmt.Errorf("row %s registered twice", id)
	}
	if c < 0 || c >= numCategories || id == "" || name == "" || expect == "" {
		return nil, fmt.Errorf("row %q: category, id, case and expectation are required", id)
	}
	t.ids[id] = true
	r := &Row{Category: c, ID: id, Case: name, Expect: expect, Test: test}
	t.rows = append(t.rows, r)
	return r, nil
}

// Rows returns the rows of category c, sorted by ID.
func (t *Table) Rows(c Category) []*Row {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*Row
	for _, r := range t.rows {
		if r.Category == c {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return idLess(out[i].ID, out[j].ID) })
	return out
}

// idLess orders "B2" before "B10".
func idLess(a, b string) bool {
	pa, na := splitID(a)
	pb, nb := splitID(b)
	if pa != pb {
		return pa < pb
	}
	if na != nb {
		return na < nb
	}
	return a < b
}

func splitID(id string) (string, int) {
	i := len(id)
	for i > 0 && id[i-1] >= '0' && id[i-1] <= '9' {
		i--
	}
	n := 0
	for _, c := range id[i:] {
		n = n*10 + int(c-'0')
	}
	return id[:i], n
}

// Complete checks that the run is one the document may show: every row
// ended, and every category has at least its Minimum of cases that ran
// (passed or failed; a skipped case proves nothing).
func (t *Table) Complete() error {
	var problems []string
	for c := Category(0); c < numCategories; c++ {
		ran := 0
		for _, r := range t.Rows(c) {
			switch r.Status() {
			case Pending:
				problems = append(problems, fmt.Sprintf("row %s never finished", r.ID))
			case Pass, Fail:
				ran++
			}
		}
		if ran < c.Minimum() {
			problems = append(problems, fmt.Sprintf("%s: %d cases ran, at least %d required", c.Title(), ran, c.Minimum()))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("the hardening table is incomplete: %s", strings.Join(problems, "; "))
	}
	return nil
}

// Header is what the document says about the run that made it.
type Header struct {
	Command  string        // how to regenerate the document
	Date     time.Time     // when the run ended
	Commit   string        // the tree's commit, with a note if it had changes
	Host     string        // kernel, cgroup mode, cores
	Duration time.Duration // the suite's wall time
	Strict   bool          // KOLEJKA_REQUIRE_PRIVILEGED=1: nothing could skip
}

// WriteMarkdown writes the document: the header, then one table per
// category with its tally.
func (t *Table) WriteMarkdown(w io.Writer, h Header) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Hardening: bad input, hostile tasks, faults\n\n")
	fmt.Fprintf(&b, "Generated by the suite itself (`tests/hardening/`); do not edit. Regenerate with:\n\n")
	fmt.Fprintf(&b, "```sh\n%s\n```\n\n", h.Command)
	fmt.Fprintf(&b, "Last run: %s, commit %s, %s; the suite took %s", h.Date.UTC().Format("2006-01-02 15:04:05 UTC"), h.Commit, h.Host,
		h.Duration.Round(time.Second))
	if h.Strict {
		fmt.Fprintf(&b, " (KOLEJKA_REQUIRE_PRIVILEGED=1: a missing prerequisite fails instead of skipping)")
	}
	fmt.Fprintf(&b, ".\n\n")
	fmt.Fprintf(&b, "Every row is an assertion of a test (named in `test`); *observed* is what that run saw: the error as the\n")
	fmt.Fprintf(&b, "caller got it, the verdict, and the evidence that nothing changed or that the node is healthy.\n")
	for c := Category(0); c < numCategories; c++ {
		rows := t.Rows(c)
		tally := map[Status]int{}
		for _, r := range rows {
			tally[r.Status()]++
		}
		fmt.Fprintf(&b, "\n## %s\n\n", c.Title())
		fmt.Fprintf(&b, "%d cases: %d passed, %d failed, %d skipped.\n\n", len(rows), tally[Pass], tally[Fail], tally[Skip])
		fmt.Fprintf(&b, "| id | case | expectation | observed | result | test |\n|---|---|---|---|---|---|\n")
		for _, r := range rows {
			st := r.Status()
			if st == Pending {
				st = "DID NOT FINISH"
			}
			obs := r.Observed()
			if st == Fail {
				obs = append(obs, "see the test's log for the failure")
			}
			r.mu.Lock()
			took := r.took
			r.mu.Unlock()
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s (%s) | `%s` |\n", cell(r.ID), cell(r.Case), cell(r.Expect),
				cell(strings.Join(obs, "; ")), st, took.Round(time.Millisecond), r.Test)
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// maxCell bounds one observed cell: error messages are quoted whole up to
// this length.
const maxCell = 1200

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) > maxCell {
		s = s[:maxCell] + "…"
		s = strings.ToValidUTF8(s, "")
	}
	r := strings.NewReplacer("\r", "", "\n", " ⏎ ", "|", `\|`, "<", "&lt;", ">", "&gt;")
	return strings.TrimSpace(r.Replace(s))
}

// WriteFile replaces the document at path atomically (see
// internal/atomicfile).
func (t *Table) WriteFile(path string, h Header) error {
	var b bytes.Buffer
	if err := t.WriteMarkdown(&b, h); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b.Bytes(), 0o644)
}
