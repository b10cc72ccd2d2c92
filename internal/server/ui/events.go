package ui

// This file owns the live stream: GET <ui>/events/?tasks=K1+K2 (or
// ?run=KEY) answers server-sent events, "task" with a task's key, state
// and status whenever one of them changes, "run" with a run's state and
// its steps' states. It reads the store every PollEvery, only what the
// caller may read (the backend's rules), and ends when the client goes or
// the server shuts down. At most Options.Streams are open at once.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// taskEvent is a "task" event's data.
type taskEvent struct {
	Key    string `json:"key"`
	State  string `json:"state"`
	Status string `json:"status,omitempty"`
	Node   string `json:"node,omitempty"`
	Finish string `json:"finish,omitempty"` // as the table writes it
}

// runEvent is a "run" event's data.
type runEvent struct {
	State string            `json:"state"`
	Steps map[string]string `json:"steps"`
}

func (u *UI) events(w http.ResponseWriter, r *http.Request) {
	usr := u.signedIn(w, r)
	if usr == nil {
		return
	}
	keys := strings.Fields(r.URL.Query().Get("tasks"))
	run := r.URL.Query().Get("run")
	if len(keys) > u.opt.MaxStream {
		u.fail(w, r, &Refused{Code: http.StatusBadRequest, Msg: fmt.Sprintf("tasks: at most %d tasks per stream", u.opt.MaxStream)})
		return
	}
	if len(keys) == 0 && run == "" {
		u.fail(w, r, &Refused{Code: http.StatusBadRequest, Msg: "tasks or run: name what to follow"})
		return
	}
	select {
	case u.open <- struct{}{}:
		defer func() { <-u.open }()
	default:
		// The browser's EventSource tries again (retry: 2 s); the page
		// still reads as it is.
		u.fail(w, r, &Refused{Code: http.StatusServiceUnavailable, Msg: fmt.Sprintf("too many live streams (%d) open: try again later", u.opt.Streams)})
		return
	}
	flusher, ok := w.(interface{ Flush() })
	if !ok {
		rc := http.NewResponseController(w)
		flusher = flushFunc(func() { _ = rc.Flush() })
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, "retry: 2000\n\n")
	flusher.Flush()
	sent := map[string]string{}
	ticker := time.NewTicker(u.opt.PollEvery)
	defer ticker.Stop()
	for {
		if err := u.sendChanges(w, r, keys, run, sent); err != nil {
			return // the store failed or the client went: the browser reconnects
		}
		flusher.Flush()
		select {
		case <-ticker.C:
		case <-u.b.Stopped():
			return
		case <-r.Context().Done():
			return
		}
	}
}

type flushFunc func()

func (f flushFunc) Flush() { f() }

// sendChanges writes the events of what changed since sent (keyed by what
// it describes, holding the data last sent).
func (u *UI) sendChanges(w http.ResponseWriter, r *http.Request, keys []string, run string, sent map[string]string) error {
	usr := u.b.User(r)
	if len(keys) > 0 {
		states, err := u.b.TaskStates(r.Context(), usr, keys)
		if err != nil {
			return err
		}
		for _, t := range states {
			if err := send(w, "task", t.Key, taskEvent{Key: t.Key, State: t.State.Lifecycle(), Status: t.Status, Node: t.Node, Finish: when(t.Finish)}, sent); err != nil {
				return err
			}
		}
	}
	if run != "" {
		info, _, err := u.b.Run(r.Context(), usr, run)
		if err != nil {
			return err
		}
		ev := runEvent{State: info.State, Steps: map[string]string{}}
		for _, st := range info.Steps {
			ev.Steps[st.Name] = st.State
		}
		if err := send(w, "run", "run", ev, sent); err != nil {
			return err
		}
	}
	return nil
}

// send writes event name with data v unless it is what was last sent for id.
func send(w http.ResponseWriter, name, id string, v any, sent map[string]string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if sent[id] == string(b) {
		return nil
	}
	sent[id] = string(b)
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
	return err
}
