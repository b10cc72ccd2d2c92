package spec

// This file owns the helpers for formats that extend Kolejka's files with
// sections of their own (a task type's "params", kolejka_workflow.json):
// they read those sections from raw JSON and report problems with the same
// words and field paths as this package's own decoder.

import (
	"bytes"
	"encoding/json"
	"errors"
)

// Members reads a JSON object's keys and raw values in order, repeated keys
// included (encoding/json's maps would merge them). Anything but one
// object is an error.
func Members(raw []byte) ([]string, []json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, errors.New("expected an object")
	}
	var keys []string
	var vals []json.RawMessage
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		keys = append(keys, tok.(string))
		vals = append(vals, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	if dec.More() {
		return nil, nil, errors.New("data after the object")
	}
	return keys, vals, nil
}

// Describe names a raw JSON value's type for "expected X, got Y" messages.
func Describe(raw json.RawMessage) string {
	switch {
	case len(raw) == 0:
		return "nothing"
	case raw[0] == '{':
		return "an object"
	case raw[0] == '[':
		return "a list"
	case raw[0] == '"':
		return "a string"
	case raw[0] == 't' || raw[0] == 'f':
		return "a boolean"
	case raw[0] == 'n':
		return "null"
	}
	return "the number " + string(raw)
}

// EntryPath is the field path of a map's entry, as errors name it:
// files["in.txt"], tasks["test"].
func EntryPath(parent, key string) string { return entryPath(parent, key) }

// Fields reads the JSON object raw, the value at field ("" for a whole
// document), member by member: read gets each member's path, key and
// value, once per key; a key given again is a problem at its path and is
// passed over. It returns the keys read, or Members' error (before any
// read) when raw is not one object.
func Fields(p *Problems, field string, raw []byte, read func(kf, k string, v json.RawMessage)) (map[string]bool, error) {
	keys, vals, err := Members(raw)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, k := range keys {
		kf := fieldPath(field, k)
		if seen[k] {
			p.Add(kf, "key given more than once")
			continue
		}
		seen[k] = true
		read(kf, k, vals[i])
	}
	return seen, nil
}
