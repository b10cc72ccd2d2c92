package spec

// This file owns the typed reading of parsed JSON: each accessor checks one
// value's type and syntax and records a problem naming its field path, so one
// pass over a file reports everything wrong with it.
//
// Field paths: object keys of a fixed schema are joined with dots
// ("limits.memory"); keys of free-form maps (files, environment, cpus, gpus)
// are quoted in brackets (`files["in/1.txt"].path`); list elements are
// indexed ("collect[2].glob"). A null value is the same as an absent key.

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

type decoder struct{ problems }

func newDecoder(file string) *decoder { return &decoder{problems{file: file}} }

func fieldPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func entryPath(parent, key string) string { return parent + "[" + strconv.Quote(key) + "]" }

func indexPath(parent string, i int) string { return parent + "[" + strconv.Itoa(i) + "]" }

func absent(n *node) bool { return n == nil || n.kind == jsonNull }

// root checks that a file holds an object.
func (d *decoder) root(n *node) bool {
	if n.kind != jsonObject {
		d.add("", "expected a JSON object, got %s", n.describe())
		return false
	}
	return true
}

// fields reads an object of a fixed schema: unknown and repeated keys are
// problems. allowed must be sorted (it is listed in messages). An absent
// object reads as empty.
func (d *decoder) fields(n *node, path string, allowed ...string) fieldSet {
	f := fieldSet{path: path}
	if absent(n) {
		return f
	}
	if n.kind != jsonObject {
		d.add(path, "expected an object, got %s", n.describe())
		return f
	}
	for _, k := range n.dups {
		d.add(fieldPath(path, k), "key given more than once")
	}
	f.vals = make(map[string]*node, len(n.keys))
	for i, k := range n.keys {
		if !slices.Contains(allowed, k) {
			d.add(fieldPath(path, k), "%s", unknownKey(k, allowed))
			continue
		}
		f.vals[k] = n.vals[i]
	}
	return f
}

// fieldSet is an object of a fixed schema as fields read it: its values by
// key, under the object's path.
type fieldSet struct {
	path string
	vals map[string]*node
}

// at returns the value of key (nil when absent) and its field path: the
// arguments of every accessor, as in d.size(m.at("memory")).
func (f fieldSet) at(key string) (*node, string) { return f.vals[key], fieldPath(f.path, key) }

// get returns the value of key, nil when absent.
func (f fieldSet) get(key string) *node { return f.vals[key] }

// entries reads an object used as a map; repeated keys are problems.
func (d *decoder) entries(n *node, path string) (keys []string, vals []*node) {
	if absent(n) {
		return nil, nil
	}
	if n.kind != jsonObject {
		d.add(path, "expected an object, got %s", n.describe())
		return nil, nil
	}
	for _, k := range n.dups {
		d.add(entryPath(path, k), "key given more than once")
	}
	return n.keys, n.vals
}

// list reads a JSON list.
func (d *decoder) list(n *node, path string) []*node {
	if absent(n) {
		return nil
	}
	if n.kind != jsonArray {
		d.add(path, "expected a list, got %s", n.describe())
		return nil
	}
	return n.items
}

// str reads a string; absent reads as "".
func (d *decoder) str(n *node, path string) string {
	if absent(n) {
		return ""
	}
	if n.kind != jsonString {
		d.add(path, "expected a string, got %s", n.describe())
		return ""
	}
	return n.str
}

// word reads a string, or a number as Kolejka's str() spells it (for args
// and environment values).
func (d *decoder) word(n *node, path string) (string, bool) {
	switch n.kind {
	case jsonString:
		return n.str, true
	case jsonNumber:
		s, ok := pythonNumberString(n.str)
		if !ok {
			d.add(path, "%s is out of range", n.str)
		}
		return s, ok
	}
	d.add(path, "expected a string or a number, got %s", n.describe())
	return "", false
}

// stringList reads a list of strings.
func (d *decoder) stringList(n *node, path string) []string {
	return d.listOf(n, path, func(item *node, path string) (string, bool) {
		if item.kind != jsonString {
			d.add(path, "expected a string, got %s", item.describe())
			return "", false
		}
		return item.str, true
	})
}

// wordList reads a list of strings or numbers (Kolejka's [str(k) for k in ...]).
func (d *decoder) wordList(n *node, path string) []string { return d.listOf(n, path, d.word) }

// listOf reads a list with item, which reads one element (at its path) or
// refuses it: refused elements are left out.
func (d *decoder) listOf(n *node, path string, item func(*node, string) (string, bool)) []string {
	items := d.list(n, path)
	if len(items) == 0 {
		return nil
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		if s, ok := item(it, indexPath(path, i)); ok {
			out = append(out, s)
		}
	}
	return out
}

// quantity reads a number or a string with the parser for kind, reporting
// `"64MiB" is not a size: …` or `-1 is not a size: negative`.
func (d *decoder) quantity(n *node, path, what, expected string, parse func(string) (int64, string)) *int64 {
	if absent(n) {
		return nil
	}
	var shown string
	switch n.kind {
	case jsonNumber:
		shown = n.str
	case jsonString:
		shown = strconv.Quote(n.str)
	default:
		d.add(path, "expected %s, got %s", expected, n.describe())
		return nil
	}
	v, problem := parse(n.str)
	if problem != "" {
		d.add(path, "%s is not a %s: %s", shown, what, problem)
		return nil
	}
	return &v
}

func (d *decoder) size(n *node, path string) *int64 {
	return d.quantity(n, path, "size", `a size (a number of bytes or a string like "64M")`, parseSize)
}

func (d *decoder) bigInt(n *node, path string) *int64 {
	return d.quantity(n, path, "big integer", `a big integer (a number or a string like "2g")`, parseBigInt)
}

// count reads a non-negative whole number: a JSON number with no fraction, or
// a string Python's int() reads.
func (d *decoder) count(n *node, path string) *int64 {
	return d.quantity(n, path, "count", "a whole number", func(s string) (int64, string) {
		if n.kind == jsonString {
			return parseCount(s)
		}
		dec, _, _ := scanDecimal(s)
		return toInt64(dec, unitScale(), requireWhole)
	})
}

// signed reads a whole number that may be negative (exit codes, temperatures).
func (d *decoder) signed(n *node, path string) *int64 {
	return d.quantity(n, path, "whole number", "a whole number", func(s string) (int64, string) {
		t := strings.TrimSpace(s)
		neg := strings.HasPrefix(t, "-")
		if neg {
			t = "+" + t[1:] // "+-5" stays an error
		}
		var v int64
		var problem string
		if n.kind == jsonString {
			v, problem = parseCount(t)
		} else {
			dec, _, _ := scanDecimal(t)
			v, problem = toInt64(dec, unitScale(), requireWhole)
		}
		if neg {
			v = -v
		}
		return v, problem
	})
}

func (d *decoder) duration(n *node, path string) *time.Duration {
	v := d.quantity(n, path, "time", `a time (a number of seconds or a string like "10s")`, func(s string) (int64, string) {
		t, problem := parseTime(s)
		return int64(t), problem
	})
	if v == nil {
		return nil
	}
	t := time.Duration(*v)
	return &t
}

// boolean reads true/false, or a string ParseBool reads.
func (d *decoder) boolean(n *node, path string) *bool {
	if absent(n) {
		return nil
	}
	switch n.kind {
	case jsonBool:
		b := n.bool
		return &b
	case jsonString:
		b, err := ParseBool(n.str)
		if err != nil {
			d.add(path, "%v", err)
			return nil
		}
		return &b
	}
	d.add(path, "expected a boolean (true/false, or a string yes/no/1/0), got %s", n.describe())
	return nil
}

// sortedKeys returns the keys of m, sorted.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
