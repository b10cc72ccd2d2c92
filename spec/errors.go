package spec

// This file owns the error type of the package and the collecting of many
// problems into one error.

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Error is one problem with a task, a result or a value in them. Functions of
// this package that find several problems return them all at once, joined
// with errors.Join; errors.As(err, &e) with e of type *Error finds the first.
type Error struct {
	File    string // where the value came from, e.g. "task/kolejka_task.json"; may be empty
	Field   string // the field path, e.g. "limits.memory" or `files["in.txt"].path`; may be empty
	Problem string // what is wrong, e.g. `"64MiB" is not a size: unknown unit "i" (...)`
}

// Error formats the problem as "file: field: problem", leaving out the empty
// parts.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Problem)
	return b.String()
}

// maxProblems caps how many problems one call reports, so that a hostile file
// with a million bad keys yields a readable error and bounded memory.
const maxProblems = 50

// problems collects the *Errors of one file.
type problems struct {
	file    string
	list    []error
	dropped int
}

func (p *problems) add(field, format string, args ...any) {
	if len(p.list) >= maxProblems {
		p.dropped++
		return
	}
	p.list = append(p.list, &Error{File: p.file, Field: field, Problem: fmt.Sprintf(format, args...)})
}

// addErr adds an error already made (one of this package's, naming its
// own field), within the same cap.
func (p *problems) addErr(err error) {
	if len(p.list) >= maxProblems {
		p.dropped++
		return
	}
	p.list = append(p.list, err)
}

// err returns nil, the single *Error, or all of them joined.
func (p *problems) err() error {
	switch {
	case len(p.list) == 0:
		return nil
	case len(p.list) == 1 && p.dropped == 0:
		return p.list[0]
	}
	list := p.list
	if p.dropped > 0 {
		list = append(list[:len(list):len(list)], &Error{File: p.file, Problem: fmt.Sprintf("and %d more problems", p.dropped)})
	}
	return errors.Join(list...)
}

// relabel sets File of every *Error inside err (as returned by this package)
// to file, so that errors of a loaded folder name the path actually read.
func relabel(err error, file string) error {
	if err == nil {
		return nil
	}
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]error, len(list))
	for i, e := range list {
		// Only the package's own *Errors, members of the join, are copied:
		// one wrapped in another error keeps its wrapper and its File.
		if pe, ok := e.(*Error); ok { //nolint:errorlint // direct members only, as above
			c := *pe
			c.File = file
			out[i] = &c
		} else {
			out[i] = e
		}
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}

// suggest returns the candidate closest to key, if any is within edit
// distance 2 (and closer than the key is long, so "id" does not suggest "os").
func suggest(key string, candidates []string) string {
	best, bestDist := "", 3
	n := utf8.RuneCountInString(key)
	for _, c := range candidates {
		if m := utf8.RuneCountInString(c); n > m+2 || m > n+2 {
			continue // more than two edits apart; skip the quadratic work
		}
		d := editDistance(key, c)
		if d < bestDist && d < n {
			best, bestDist = c, d
		}
	}
	return best
}

// unknownKey is the problem text for a key not in allowed.
func unknownKey(key string, allowed []string) string {
	if s := suggest(key, allowed); s != "" {
		return fmt.Sprintf("unknown key (did you mean %q?)", s)
	}
	return fmt.Sprintf("unknown key (known keys: %s)", strings.Join(allowed, ", "))
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// Problems collects the *Errors found in one file as this package does: at
// most 50, then a count of the rest, so that a hostile file yields a
// readable error and bounded memory. Formats built on the task format
// (task types) report through it, so that their errors read as spec's.
type Problems struct{ p problems }

// NewProblems starts collecting the problems of file.
func NewProblems(file string) *Problems { return &Problems{problems{file: file}} }

// Add records that field has the problem format describes.
func (p *Problems) Add(field, format string, args ...any) { p.p.add(field, format, args...) }

// AddError records an error already made, such as one of Validate's.
func (p *Problems) AddError(err error) { p.p.addErr(err) }

// Err returns nil, the single *Error, or all of them joined.
func (p *Problems) Err() error { return p.p.err() }
