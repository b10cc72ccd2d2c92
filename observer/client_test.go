package observer

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/spec"
)

// The client's side of the wire without a daemon; the daemon's tests
// (internal/observer/daemon, TestGoClient) run every method against it.

// TestDecodeAnswer: each error kind comes back as its sentinel, with the
// daemon's message once (not "...: forbidden: forbidden"); an unknown kind
// or a body that is no JSON still is an error with the status; a 200 that
// is no JSON object is an error.
func TestDecodeAnswer(t *testing.T) {
	for kind, sentinel := range errorOfKind {
		body, _ := json.Marshal(Answer{Status: StatusError, Error: kind, Message: "unable to x: " + sentinel.Error()})
		_, _, err := decodeAnswer("stats", http.StatusForbidden, body)
		if !errors.Is(err, sentinel) {
			t.Errorf("kind %s: %v, want %v", kind, err, sentinel)
		}
		if err != nil && strings.Count(err.Error(), sentinel.Error()) != 1 {
			t.Errorf("kind %s: %q repeats the sentinel", kind, err)
		}
	}
	for _, body := range []string{`{"status": "error", "error": "failure", "message": "disk on fire"}`, `<html>`} {
		_, _, err := decodeAnswer("stats", http.StatusInternalServerError, []byte(body))
		if err == nil || !strings.Contains(err.Error(), "500") {
			t.Errorf("%s: %v", body, err)
		}
		for _, sentinel := range errorOfKind {
			if errors.Is(err, sentinel) {
				t.Errorf("%s: %v matches %v", body, err, sentinel)
			}
		}
	}
	if _, _, err := decodeAnswer("open", http.StatusOK, []byte(`[1]`)); err == nil {
		t.Error("a 200 with an array decoded")
	}
	a, body, err := decodeAnswer("open", http.StatusOK, []byte(`{"secret": "s", "session_id": "i", "status": "ok", "more": 1}`))
	if err != nil || a.SessionID != "i" || a.Secret != "s" || a.Status != StatusOK || !strings.Contains(string(body), `"more"`) {
		t.Errorf("decoded %+v, %s, %v", a, body, err)
	}
}

// TestMessageBytes: requests carry only the keys a command reads (open an
// empty object, Kolejka's runner's way), answers are Kolejka's
// dictionaries with sorted keys.
func TestMessageBytes(t *testing.T) {
	id, pid, path := "ab", 7, "/x"
	mem := int64(1 << 20)
	for _, c := range []struct {
		v    any
		want string
	}{
		{Request{}, `{}`},
		{Request{SessionID: &id, Secret: "cd"}, `{"session_id":"ab","secret":"cd"}`},
		{Request{Pid: &pid, Path: &path, Limits: &spec.Limits{Memory: &mem}}, `{"limits":{"memory":"1048576b"},"pid":7,"path":"/x"}`},
		{Answer{Status: StatusOK}, `{"status":"ok"}`},
		{Answer{Status: StatusOK, SessionID: "i", Secret: "s"}, `{"secret":"s","session_id":"i","status":"ok"}`},
		{Answer{Status: StatusOK, Sessions: new(int)}, `{"sessions":0,"status":"ok"}`},
		{Answer{Status: StatusError, Error: KindNotFound, Message: "m"}, `{"error":"not_found","message":"m","status":"error"}`},
	} {
		b, err := json.Marshal(c.v)
		if err != nil || string(b) != c.want {
			t.Errorf("%+v: %s, %v; want %s", c.v, b, err, c.want)
		}
	}
}
