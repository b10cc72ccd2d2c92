package trigger

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/api"
)

func TestParseOverlap(t *testing.T) {
	for in, want := range map[string]string{"": "allow", "allow": "allow", "forbid": "forbid", "replace": "replace"} {
		if got, err := ParseOverlap(in); err != nil || got != want {
			t.Errorf("ParseOverlap(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"Forbid", "skip", " allow"} {
		_, err := ParseOverlap(in)
		if err == nil || !strings.HasPrefix(err.Error(), "overlap: ") || !strings.Contains(err.Error(), "allow, forbid, replace") {
			t.Errorf("ParseOverlap(%q): %v", in, err)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"nightly", "a", "build-1.2_x", "0", strings.Repeat("x", 64)} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".hidden", "-x", "_x", "a/b", "a b", "..", "zażółć", "a%2F", strings.Repeat("x", 65)} {
		if err := CheckName(bad); err == nil || !strings.HasPrefix(err.Error(), "name: ") {
			t.Errorf("CheckName(%q) = %v, want a name: error", bad, err)
		}
	}
}

func TestCheckOn(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind string
		on   *api.TriggerOn
		want *api.TriggerOn
		err  string // the whole error, or its start when it ends in "…"
	}{
		{"result, none", api.TriggerResult, nil, nil, ""},
		{"result, normalized", api.TriggerResult, &api.TriggerOn{Queue: "gpu", Type: "compile", Status: []string{"tle", "RE", "Tle", "ok"}},
			&api.TriggerOn{Queue: "gpu", Type: "compile", Status: []string{"OK", "RE", "TLE"}}, ""},
		{"result, empty list", api.TriggerResult, &api.TriggerOn{Status: []string{}}, &api.TriggerOn{}, ""},
		{"result, bad status", api.TriggerResult, &api.TriggerOn{Status: []string{"OK", "XX"}}, nil,
			`on.status[1]: "XX" is not a result status (OK, RE, TLE, MLE, PLE, OLE, SE)`},
		{"result, a run state", api.TriggerResult, &api.TriggerOn{Status: []string{"failed"}}, nil, `on.status[0]: "failed" is not a result status …`},
		{"result, bad queue", api.TriggerResult, &api.TriggerOn{Queue: "../x"}, nil, "on.queue: …"},
		{"result, bad type", api.TriggerResult, &api.TriggerOn{Type: "a b"}, nil, "on.type: …"},
		{"run, normalized", api.TriggerRun, &api.TriggerOn{Status: []string{"Failed", "CANCELLED", "failed"}},
			&api.TriggerOn{Status: []string{"cancelled", "failed"}}, ""},
		{"run, bad state", api.TriggerRun, &api.TriggerOn{Status: []string{"ok", "RE"}}, nil,
			`on.status[1]: "RE" is not a run state (ok, failed, cancelled)`},
		{"run, canceled", api.TriggerRun, &api.TriggerOn{Status: []string{"canceled"}}, nil, `on.status[0]: "canceled" is not a run state …`},
		{"run, queue", api.TriggerRun, &api.TriggerOn{Queue: "default"}, nil, "on.queue: …"},
		{"run, type", api.TriggerRun, &api.TriggerOn{Type: "compile"}, nil, "on.type: …"},
		{"schedule", api.TriggerSchedule, &api.TriggerOn{}, nil, "on: a schedule trigger fires on no task"},
		{"request", api.TriggerRequest, &api.TriggerOn{Status: []string{"OK"}}, nil, "on: a request trigger fires on no task"},
		{"request, none", api.TriggerRequest, nil, nil, ""},
		{"unknown kind", "cron", nil, nil, `kind: "cron" is not a trigger kind (schedule, result, run, request)`},
	} {
		got, err := CheckOn(tc.kind, tc.on)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && err == nil:
			t.Errorf("%s: accepted as %+v", tc.name, got)
		case strings.HasSuffix(tc.err, "…") && !strings.HasPrefix(err.Error(), strings.TrimSuffix(tc.err, "…")):
			t.Errorf("%s: error %q, want %q", tc.name, err, tc.err)
		case tc.err != "" && !strings.HasSuffix(tc.err, "…") && err.Error() != tc.err:
			t.Errorf("%s: error %q, want %q", tc.name, err, tc.err)
		case !reflect.DeepEqual(got, tc.want):
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
	// The caller's on is not changed.
	on := &api.TriggerOn{Status: []string{"tle", "ok"}}
	if _, err := CheckOn(api.TriggerResult, on); err != nil || on.Status[0] != "tle" {
		t.Errorf("CheckOn changed its argument: %v, %v", on.Status, err)
	}
}

func TestMatches(t *testing.T) {
	tle := &api.TriggerOn{Status: []string{"RE", "TLE"}}
	for _, tc := range []struct {
		name               string
		on                 *api.TriggerOn
		queue, typ, status string
		want               bool
	}{
		{"nil on", nil, "gpu", "compile", "OK", true},
		{"empty on", &api.TriggerOn{}, "", "", "SE", true},
		{"status listed", tle, "", "", "TLE", true},
		{"status not listed", tle, "", "", "OK", false},
		{"queue", &api.TriggerOn{Queue: "gpu"}, "gpu", "", "OK", true},
		{"other queue", &api.TriggerOn{Queue: "gpu"}, "cpu", "", "OK", false},
		{"no queue is the default", &api.TriggerOn{Queue: "default"}, "", "", "OK", true},
		{"default is no queue", &api.TriggerOn{Queue: "gpu"}, "", "", "OK", false},
		{"type", &api.TriggerOn{Type: "compile"}, "", "compile", "OK", true},
		{"other type", &api.TriggerOn{Type: "compile"}, "", "test", "OK", false},
		{"not from a type", &api.TriggerOn{Type: "compile"}, "", "", "OK", false},
		{"all three", &api.TriggerOn{Queue: "gpu", Type: "compile", Status: []string{"OK"}}, "gpu", "compile", "OK", true},
		{"all but the status", &api.TriggerOn{Queue: "gpu", Type: "compile", Status: []string{"OK"}}, "gpu", "compile", "RE", false},
		{"run state", &api.TriggerOn{Status: []string{"failed"}}, "", "", "failed", true},
		{"run state not listed", &api.TriggerOn{Status: []string{"failed"}}, "", "", "ok", false},
	} {
		if got := Matches(tc.on, tc.queue, tc.typ, tc.status); got != tc.want {
			t.Errorf("%s: Matches(%+v, %q, %q, %q) = %v", tc.name, tc.on, tc.queue, tc.typ, tc.status, got)
		}
	}
}
