package api

// This file owns the messages of /type/ (our extension "types"): putting,
// listing, reading and removing task types, and submitting a task made
// from one. A type is a task folder's kolejka_task.json with a "params"
// section and {name} placeholders (internal/tasktype); the server keeps
// its files as references, as a task's.

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/kolejka-go/kolejka/spec"
)

// TypePut is the body of POST /type/: a new version of the type Name
// (the first put of a name makes the caller its owner).
type TypePut struct {
	Name string `json:"name"`
	// Public makes the type usable by every user (every version of it);
	// false keeps it (again) its owner's.
	Public bool `json:"public"`
	// Type is the type's kolejka_task.json, each file with its "path" in
	// the type's folder and the "reference" of its bytes on the server.
	Type json.RawMessage `json:"type"`
}

// TypePutAnswer answers POST /type/: the version the put made.
type TypePutAnswer struct {
	Name string `json:"name"`
	Envelope
	Version int `json:"version"`
}

// TypeParam is one parameter of a type as a listing shows it: a value
// parameter with its default (none: required), or a file parameter.
type TypeParam struct {
	Default *string `json:"default,omitempty"`
	File    bool    `json:"file,omitempty"`
}

// TypeInfo describes the latest (or asked for) version of a type.
type TypeInfo struct {
	Name       string               `json:"name"`
	Owner      string               `json:"owner"`
	Params     map[string]TypeParam `json:"params"`
	PassEnv    []string             `json:"pass_env,omitempty"`
	Public     bool                 `json:"public"`
	TimeCreate string               `json:"time_create"`
	Version    int                  `json:"version"`
}

// TypesAnswer answers GET /type/: the types the caller may use (its own
// and the public ones; a manager's: all), by name.
type TypesAnswer struct {
	Envelope
	Types []TypeInfo `json:"types"`
}

// TypeAnswer answers GET /type/<name>/[?version=N]: the type's
// description and its kolejka_task.json, files as path and reference.
type TypeAnswer struct {
	Info TypeInfo `json:"info"`
	Envelope
	Type json.RawMessage `json:"type"`
}

// TypeFile is a file a user gives a file parameter: the reference of its
// bytes and its name in the task folder (default: the parameter's name).
type TypeFile struct {
	Name      string `json:"name,omitempty"`
	Reference string `json:"reference"`
}

// TypeTask is the body of POST /type/<name>/task/: the parameters of a
// task made from the latest version of the type (or Version). The server
// renders and checks it as the type's owner wrote it; the answer is
// NewTaskAnswer, as for a posted task.
type TypeTask struct {
	Files map[string]TypeFile `json:"files,omitempty"`
	// Limits caps the type's limits (field-wise minimum), as a client's
	// limit options cap a task folder's.
	Limits spec.Limits       `json:"limits,omitzero"`
	Params map[string]string `json:"params,omitempty"`
	Queue  string            `json:"queue,omitempty"`
	// Version picks a version of the type; 0 is the latest.
	Version int `json:"version,omitempty"`
}

// ParseTypeTask reads the body of POST /type/<name>/task/ strictly, as
// the server does: unknown keys, bad limits and a file without a
// reference are errors naming them.
func ParseTypeTask(body []byte) (TypeTask, error) {
	var raw struct {
		Files   map[string]TypeFile `json:"files"`
		Limits  json.RawMessage     `json:"limits"`
		Params  map[string]string   `json:"params"`
		Queue   string              `json:"queue"`
		Version int                 `json:"version"`
	}
	if err := Decode(body, &raw); err != nil {
		return TypeTask{}, fmt.Errorf("type task: %w", err)
	}
	out := TypeTask{Files: raw.Files, Params: raw.Params, Queue: raw.Queue, Version: raw.Version}
	var err error
	if out.Limits, err = parseLimits(raw.Limits, "type task limits"); err != nil {
		return TypeTask{}, err
	}
	if out.Version < 0 {
		return TypeTask{}, fmt.Errorf("type task: version: %d is not a version (1, 2, …; 0 or none: the latest)", out.Version)
	}
	for name, f := range out.Files {
		if strings.TrimSpace(f.Reference) == "" {
			return TypeTask{}, fmt.Errorf("type task: files[%q].reference: missing (the reference of the file's bytes)", name)
		}
	}
	return out, nil
}
