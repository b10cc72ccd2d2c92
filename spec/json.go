package spec

// This file owns the JSON layer: a strict reader that keeps number literals
// and key order and reports syntax errors by line and column, and a writer
// that produces exactly the bytes of Python's
// json.dump(obj, sort_keys=True, indent=2, ensure_ascii=False).
//
// encoding/json cannot do either job alone: it forgets whether 5 was written
// as 5 or 5.0 (Kolejka's str() tells them apart), merges duplicate keys, and
// writes with HTML escaping, \u2028 escapes and Go's own layout.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

type jsonKind uint8

const (
	jsonNull jsonKind = iota
	jsonBool
	jsonNumber
	jsonString
	jsonArray
	jsonObject
)

// maxDepth caps nesting. Our formats nest four levels; the cap keeps a
// hostile "[[[[…" from costing a deep recursion.
const maxDepth = 64

// node is one parsed JSON value.
type node struct {
	kind  jsonKind
	str   string // a string's value, or a number's literal
	bool  bool
	items []*node // array elements
	keys  []string
	vals  []*node  // object members, in input order
	dups  []string // keys given more than once (the last value is kept)
}

// describe names a value's type for "expected X, got Y" messages.
func (n *node) describe() string {
	switch n.kind {
	case jsonNull:
		return "null"
	case jsonBool:
		return strconv.FormatBool(n.bool)
	case jsonNumber:
		return "the number " + n.str
	case jsonString:
		return "a string"
	case jsonArray:
		return "a list"
	}
	return "an object"
}

// decodeFile reads data (the file named file) as one document: JSON, then
// a root object, then read's strict decoding of its fields. The first
// error stops it; decoding errors name the field.
func decodeFile[T any](data []byte, file string, read func(*decoder, *node) T) (T, error) {
	var zero T
	root, err := parseJSON(data, file)
	if err != nil {
		return zero, err
	}
	d := newDecoder(file)
	if !d.root(root) {
		return zero, d.err()
	}
	v := read(d, root)
	if err := d.err(); err != nil {
		return zero, err
	}
	return v, nil
}

// unmarshalValue is an UnmarshalJSON: data read as parse does, naming
// file, handed to set; a JSON null sets nothing.
func unmarshalValue[V any](data []byte, file string, parse func([]byte, string) (V, error), set func(V)) error {
	if string(data) == "null" {
		return nil
	}
	v, err := parse(data, file)
	if err != nil {
		return err
	}
	set(v)
	return nil
}

// encodeFile is encodeJSON for the description file named file: its
// errors name the file.
func encodeFile(file string, o object) ([]byte, error) {
	data, err := encodeJSON(o)
	if err != nil {
		return nil, &Error{File: file, Problem: err.Error()}
	}
	return data, nil
}

// folderDocument is a task or a result, as a folder holds it.
type folderDocument interface {
	Validate(ValidateMode) error
	CheckFiles(dir string) error
}

// loadFolder reads dir/name with parse and checks it as a local folder's:
// Validate(Local) and CheckFiles(dir). Errors name the file read; what is
// "task" or "result", for a file that cannot be read.
func loadFolder[T folderDocument](dir, name, what string, parse func([]byte, string) (T, error)) (T, error) {
	var zero T
	file := filepath.Join(dir, name)
	data, err := os.ReadFile(file)
	if err != nil {
		return zero, fmt.Errorf("unable to load %s: %w", what, err)
	}
	v, err := parse(data, file)
	if err != nil {
		return zero, err
	}
	if err := v.Validate(Local); err != nil {
		return zero, relabel(err, file)
	}
	if err := v.CheckFiles(dir); err != nil {
		return zero, relabel(err, file)
	}
	return v, nil
}

// parseJSON reads data as one JSON value. Errors are *Error naming file and
// the line, column and byte offset of the fault.
func parseJSON(data []byte, file string) (*node, error) {
	fail := func(offset int, problem string) error {
		line, col := lineColumn(data, offset)
		return &Error{File: file, Problem: fmt.Sprintf("malformed JSON at line %d, column %d (byte %d): %s", line, col, offset, problem)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &Error{File: file, Problem: "malformed JSON: the file is empty"}
	}
	if bytes.HasPrefix(data, []byte("\ufeff")) {
		return nil, fail(0, "the file starts with a byte order mark (Python's json.load refuses it too); save it without")
	}
	if !utf8.Valid(data) {
		off := 0
		for off < len(data) {
			r, size := utf8.DecodeRune(data[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		return nil, fail(off, "invalid UTF-8")
	}
	// A first pass with the standard scanner finds syntax errors with exact
	// offsets (the streaming decoder's are approximate); then the value is
	// built from tokens, which cannot fail on syntax any more.
	if err := json.Unmarshal(data, new(json.RawMessage)); err != nil {
		var se *json.SyntaxError
		if !errors.As(err, &se) {
			return nil, fail(0, err.Error())
		}
		if se.Offset >= int64(len(data)) && strings.HasPrefix(se.Error(), "unexpected end") {
			return nil, fail(len(data), "unexpected end of input")
		}
		// Offset counts the bytes read, the offending one included.
		return nil, fail(int(max(se.Offset-1, 0)), se.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	r := &jsonReader{dec: dec}
	n, err := r.value(0)
	if err != nil {
		return nil, fail(int(dec.InputOffset()), err.Error())
	}
	return n, nil
}

// tooDeep is the error of a value nested deeper than maxDepth.
type tooDeep struct{}

func (tooDeep) Error() string { return fmt.Sprintf("nested more than %d levels deep", maxDepth) }

type jsonReader struct{ dec *json.Decoder }

func (r *jsonReader) value(depth int) (*node, error) {
	tok, err := r.dec.Token()
	if err != nil {
		return nil, err
	}
	switch v := tok.(type) {
	case nil:
		return &node{kind: jsonNull}, nil
	case bool:
		return &node{kind: jsonBool, bool: v}, nil
	case json.Number:
		return &node{kind: jsonNumber, str: string(v)}, nil
	case string:
		return &node{kind: jsonString, str: v}, nil
	case json.Delim:
		if depth >= maxDepth {
			return nil, tooDeep{}
		}
		switch v {
		case '[':
			n := &node{kind: jsonArray}
			for r.dec.More() {
				item, err := r.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, item)
			}
			_, err := r.dec.Token() // ']'
			return n, err
		case '{':
			n := &node{kind: jsonObject}
			index := map[string]int{}
			dup := map[string]bool{}
			for r.dec.More() {
				tok, err := r.dec.Token()
				if err != nil {
					return nil, err
				}
				key, _ := tok.(string) // the decoder allows nothing else here
				val, err := r.value(depth + 1)
				if err != nil {
					return nil, err
				}
				if i, seen := index[key]; seen {
					if !dup[key] {
						dup[key] = true
						n.dups = append(n.dups, key)
					}
					n.vals[i] = val
					continue
				}
				index[key] = len(n.keys)
				n.keys = append(n.keys, key)
				n.vals = append(n.vals, val)
			}
			_, err := r.dec.Token() // '}'
			return n, err
		}
	}
	return nil, fmt.Errorf("unexpected %v", tok)
}

// lineColumn turns a byte offset into a 1-based line and column (in
// characters).
func lineColumn(data []byte, offset int) (line, col int) {
	offset = min(max(offset, 0), len(data))
	before := data[:offset]
	line = 1 + bytes.Count(before, []byte{'\n'})
	lineStart := bytes.LastIndexByte(before, '\n') + 1
	return line, 1 + utf8.RuneCount(before[lineStart:])
}

// object is a JSON object being written; keys are sorted when written.
type object map[string]any

// encodeJSON writes v the way Python's
// json.dump(v, sort_keys=True, indent=2, ensure_ascii=False) does, without a
// trailing newline. v is built of object, []any, []string, string, int64,
// int and bool.
func encodeJSON(v any) ([]byte, error) {
	w := &jsonWriter{}
	w.value(v, 0)
	if w.err != nil {
		return nil, w.err
	}
	return w.buf.Bytes(), nil
}

type jsonWriter struct {
	buf bytes.Buffer
	err error
}

func (w *jsonWriter) newline(depth int) {
	w.buf.WriteByte('\n')
	for range depth {
		w.buf.WriteString("  ")
	}
}

func (w *jsonWriter) value(v any, depth int) {
	switch v := v.(type) {
	case object:
		if len(v) == 0 {
			w.buf.WriteString("{}")
			return
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		// Go compares strings bytewise; for UTF-8 that is code point order,
		// which is Python's.
		slices.Sort(keys)
		w.buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				w.buf.WriteByte(',')
			}
			w.newline(depth + 1)
			w.string(k)
			w.buf.WriteString(": ")
			w.value(v[k], depth+1)
		}
		w.newline(depth)
		w.buf.WriteByte('}')
	case []any:
		if len(v) == 0 {
			w.buf.WriteString("[]")
			return
		}
		w.buf.WriteByte('[')
		for i, item := range v {
			if i > 0 {
				w.buf.WriteByte(',')
			}
			w.newline(depth + 1)
			w.value(item, depth+1)
		}
		w.newline(depth)
		w.buf.WriteByte(']')
	case []string:
		items := make([]any, len(v))
		for i, s := range v {
			items[i] = s
		}
		w.value(items, depth)
	case string:
		w.string(v)
	case int64:
		w.buf.WriteString(strconv.FormatInt(v, 10))
	case int:
		w.buf.WriteString(strconv.Itoa(v))
	case bool:
		w.buf.WriteString(strconv.FormatBool(v))
	default:
		// Only this package builds the trees; reaching here is a bug.
		panic(fmt.Sprintf("spec: cannot encode %T", v))
	}
}

// string writes s as Python's json does with ensure_ascii=False: only '"',
// '\\' and control characters below U+0020 are escaped (\n \r \t \b \f by
// name, the rest as \u00xx); everything else, U+2028 included, is raw.
func (w *jsonWriter) string(s string) {
	if !utf8.ValidString(s) && w.err == nil {
		w.err = fmt.Errorf("cannot write %q: not valid UTF-8", s)
	}
	const hex = "0123456789abcdef"
	w.buf.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		w.buf.WriteString(s[start:i])
		switch c {
		case '"':
			w.buf.WriteString(`\"`)
		case '\\':
			w.buf.WriteString(`\\`)
		case '\n':
			w.buf.WriteString(`\n`)
		case '\r':
			w.buf.WriteString(`\r`)
		case '\t':
			w.buf.WriteString(`\t`)
		case '\b':
			w.buf.WriteString(`\b`)
		case '\f':
			w.buf.WriteString(`\f`)
		default:
			w.buf.WriteString(`\u00`)
			w.buf.WriteByte(hex[c>>4])
			w.buf.WriteByte(hex[c&0xf])
		}
		start = i + 1
	}
	w.buf.WriteString(s[start:])
	w.buf.WriteByte('"')
}
