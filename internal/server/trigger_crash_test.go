package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

// kill -9 of the server between a schedule's tick and its submission,
// with a server in another process: before the firing's transaction
// commits, and after it commits but before the run it started advances.
// After a restart the tick has started exactly one run — not zero (the
// uncommitted firing fires again, the tick being still due), not two (the
// committed one is not fired again) — and that run's first step is
// queued (the startup's advance does what the crash left undone).
func TestScheduleKill9BetweenTickAndSubmission(t *testing.T) {
	for _, phase := range []string{"recorded", "committed"} {
		t.Run(phase, func(t *testing.T) {
			dir := t.TempDir()
			a := openAdminWithTokens(t, dir)
			adm, tokens := a.srv, a.tokens
			// The schedule is put through the API of a server in this
			// process; an hour apart, its ticks never come by themselves.
			ts := httptest.NewServer(adm.Handler())
			alice := &tokenClient{t: t, base: ts.URL + adm.Config().Prefix, token: tokens["alice"], hc: &http.Client{}}
			wf := `{"tasks": {"a": {"task": "x"}, "b": {"task": "x", "after": ["a"]}}}`
			mustOK(t, alice.postJSON("/schedule/", map[string]any{"name": "hourly", "every": "1H",
				"target": map[string]any{"workflow": map[string]any{"workflow": json.RawMessage(wf), "tasks": map[string]any{"x": wfTask(alice, []string{"true"}, nil, nil)}}}}))
			ts.Close()
			adm.Close()
			// Its tick is due now.
			db := folderDB(t, dir, "_busy_timeout=5000")
			due := time.Now().Add(-time.Second).UnixMicro()
			if _, err := db.Exec(`UPDATE triggers SET next_fire = ?`, due); err != nil {
				t.Fatal(err)
			}
			db.Close()

			// The server fires the tick at startup and dies at the phase.
			h := testenv.StartHelper(t, "server-die-at-fire", dir+"|"+phase, nil)
			done := make(chan error, 1)
			go func() { done <- h.Cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("the server exited cleanly; it was to be killed at " + phase)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("the server did not fire the due tick within 60 s")
			}

			ch := startChild(t, dir)
			defer ch.kill(t)
			alice.base = ch.base
			node := &tokenClient{t: t, base: ch.base, token: tokens["node"], hc: &http.Client{}}
			var fires []map[string]any
			waitFor(t, "the tick's firing after the restart", func() bool {
				_, fires = triggerShow(t, alice, "schedule", "hourly")
				return len(fires) >= 1
			})
			runs := mustOK(t, alice.do("GET", "/workflow/", nil)).json["workflows"].([]any)
			if len(fires) != 1 || len(runs) != 1 || fires[0]["state"] != "started" || fires[0]["key"] != runs[0].(map[string]any)["key"] {
				t.Fatalf("after kill -9 at %s: firings %v, runs %v; want one firing that started the one run", phase, fires, runs)
			}
			if tasks := take(t, node); len(tasks) != 1 {
				t.Fatalf("the run's first step: %d tasks queued, want 1", len(tasks))
			}
			info, _ := triggerShow(t, alice, "schedule", "hourly")
			next, err := time.Parse(time.RFC3339Nano, info["next_fire"].(string))
			if err != nil || next.Before(time.Now().Add(50*time.Minute)) {
				t.Errorf("next tick %v (%v): want an hour on", info["next_fire"], err)
			}
		})
	}
}
