// Package api holds the typed messages of Kolejka's HTTP API and of our
// announced extensions: one struct per request body and per JSON answer,
// the JSON names exactly as Kolejka spells them. The server reads the
// requests and writes the answers with them; the client writes the
// requests and reads the answers. The task and result formats the
// messages carry are package spec's; the paths and who may call them are
// in docs/kolejka-protocol.md §3.
//
// Every JSON answer is an object with "status": "OK" beside its fields,
// or "status": "FAIL" with a "message" saying why (Failure). Answer types
// embed Envelope for the status, and OK sets it. Their fields are declared
// in the order of their JSON names, so an answer is written with its keys
// sorted; the files in testdata hold every message byte for byte.
//
// Keys that a server always writes have no omitempty, even when their
// value may be null or empty; only keys the server leaves out (a task's
// "assignee" once it is resolved, our extensions' keys in a request to a
// server that does not announce them) do.
package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// The values of an answer's "status".
const (
	StatusOK   = "OK"
	StatusFail = "FAIL"
)

// Envelope is the "status" every JSON answer carries. Alone, it is the
// answer of /login/ and /logout/; every other answer type embeds it.
type Envelope struct {
	Status string `json:"status"`
}

func (e *Envelope) envelope() *Envelope { return e }

// Answer is a JSON answer: a pointer to one of this package's answer
// types, all of which embed Envelope.
type Answer interface{ envelope() *Envelope }

// OK returns a with its status "OK": the answer of a request done.
func OK[A Answer](a A) A {
	a.envelope().Status = StatusOK
	return a
}

// Failure is the answer of a request the server refused (with HTTP 200,
// as Kolejka): "status": "FAIL" and a message naming the problem. A
// client reads every answer into it first: its Status tells OK from FAIL.
type Failure struct {
	// Cancelled (our key, only when true) says the task asked about was
	// cancelled (lifecycle.go).
	Cancelled bool   `json:"cancelled,omitempty"`
	Message   string `json:"message"`
	Envelope
}

// Fail returns the FAIL answer saying message.
func Fail(message string) *Failure {
	return &Failure{Message: message, Envelope: Envelope{Status: StatusFail}}
}

// DeletedAnswer answers a DELETE of a task, result, reference or blob.
type DeletedAnswer struct {
	Deleted bool `json:"deleted"`
	Envelope
}

// Decode reads a request body of one JSON object into v strictly, as the
// server reads the requests of our extensions and Kolejka's dequeue:
// unknown keys and data after the object are errors. An empty body is an
// empty object.
func Decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}
