package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/spec"
)

// offline is an env whose server does not listen: a command refused for
// its usage exits 2 before it connects (connecting would exit 4).
func offline(t *testing.T) *env {
	conf := filepath.Join(t.TempDir(), "kolejka.conf")
	os.WriteFile(conf, []byte("[default]\nserver = http://127.0.0.1:1\n"), 0o644)
	return &env{conf: conf}
}

func TestScheduleTriggerUsageErrors(t *testing.T) {
	e := offline(t)
	task := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"schedule", "put", "--cron", "* * * * *", "--every", "30s", "--task", task, "n"}, "--cron and --every: give one"},
		{[]string{"schedule", "put", "--task", task, "n"}, "need --cron EXPR or --every TIME"},
		{[]string{"schedule", "put", "--every", "30s", "n"}, "need a target"},
		{[]string{"schedule", "put", "--every", "30s", "--task", task, "--workflow", task, "n"}, "--task and --workflow: give one target"},
		{[]string{"schedule", "put", "--every", "30s", "--task", task, "--type", "t", "n"}, "--task and --type: give one target"},
		{[]string{"schedule", "put", "--every", "500ms", "--task", task, "n"}, "--every 500ms: at least 1s"},
		{[]string{"schedule", "put", "--every", "soon", "--task", task, "n"}, "--every:"},
		{[]string{"schedule", "put", "--every", "30s", "--tz", "Europe/Warsaw", "--task", task, "n"}, "--tz: only with --cron"},
		{[]string{"schedule", "put", "--every", "30s", "--overlap", "sometimes", "--task", task, "n"}, "--overlap sometimes"},
		{[]string{"schedule", "put", "--every", "30s", "--workflow", task, "--queue", "q", "n"}, "--queue: a workflow's steps"},
		{[]string{"schedule", "put", "--every", "30s", "--task", task, "-p", "n=1", "n"}, "--param and --file need a target --type"},
		{[]string{"schedule", "put", "--every", "30s", "--type", "a", "--type", "b", "n"}, "--type given 2 times"},
		{[]string{"schedule", "put", "--every", "30s", "--type", "a", "-p", "x", "n"}, `--param "x": expected NAME=VALUE`},
		{[]string{"schedule", "put", "--every", "30s", "--task", task}, "need NAME"},
		{[]string{"trigger", "put", "--task", task, "n"}, "need one of --on-result, --on-run and --on-request"},
		{[]string{"trigger", "put", "--on-result", "--on-run", "--task", task, "n"}, "--on-result and --on-run: give one"},
		{[]string{"trigger", "put", "--on-request", "--queue", "q", "--task", task, "n"}, "--queue: --on-request takes no filters"},
		{[]string{"trigger", "put", "--on-request", "--status", "OK", "--task", task, "n"}, "--status: --on-request takes no filters"},
		{[]string{"trigger", "put", "--on-request", "--type", "t", "--task", task, "n"}, "--type t: --on-request takes no filters"},
		{[]string{"trigger", "put", "--on-run", "--queue", "q", "--task", task, "n"}, "--queue: --on-run filters only by --status"},
		{[]string{"trigger", "put", "--on-run", "--type", "a", "--type", "b", "n"}, "--type a: --on-run filters only by --status"},
		{[]string{"trigger", "put", "--on-run", "--status", "ok,weird", "--task", task, "n"}, "--status weird"},
		{[]string{"trigger", "put", "--on-result", "--status", "OK,,RE", "--task", task, "n"}, `--status "OK,,RE": an empty status`},
		{[]string{"trigger", "put", "--on-result", "--type", "a", "--type", "b", "--type", "c", "n"}, "--type given 3 times"},
		{[]string{"trigger", "put", "--on-result", "--queue", "no way", "--task", task, "n"}, "--queue:"},
		{[]string{"trigger", "put", "--on-result", "--type", "f", "--task", task, "--workflow", task, "n"}, "--task and --workflow: give one target"},
		{[]string{"trigger", "put", "--on-result", "n"}, "need a target"},
		{[]string{"trigger", "fire", "-p", "n", "hook"}, `--param "n": expected NAME=VALUE`},
	} {
		if code, msg := e.runStderr(t, c.args...); code != 2 || !strings.Contains(msg, c.want) {
			t.Errorf("%v: exit %d %q, want 2 naming %s", c.args, code, msg, c.want)
		}
	}
}

// --type given twice is the filter, then the target type; once, the
// target type without --task or --workflow, else the filter; --queue is
// always the filter.
func TestTriggerPutOf(t *testing.T) {
	for _, c := range []struct {
		name   string
		o      triggerOptions
		on     *api.TriggerOn
		target client.Target
	}{
		{"type once is the target", triggerOptions{onResult: true, target: targetOptions{types: []string{"a"}}},
			nil, client.Target{Type: "a"}},
		{"type once with --task is the filter", triggerOptions{onResult: true, target: targetOptions{types: []string{"a"}, task: "d"}},
			&api.TriggerOn{Type: "a"}, client.Target{Task: "d"}},
		{"type twice: filter, then target", triggerOptions{onResult: true, target: targetOptions{types: []string{"a", "b"}, params: map[string]string{"n": "5"}}},
			&api.TriggerOn{Type: "a"}, client.Target{Type: "b", Params: map[string]string{"n": "5"}}},
		{"queue is the filter", triggerOptions{onResult: true, status: []string{"OK", "RE"}, target: targetOptions{types: []string{"a"}, workflow: "w", queue: "q"}},
			&api.TriggerOn{Queue: "q", Type: "a", Status: []string{"OK", "RE"}}, client.Target{Workflow: "w"}},
		{"queue filter and target type", triggerOptions{onResult: true, target: targetOptions{types: []string{"b"}, queue: "q"}},
			&api.TriggerOn{Queue: "q"}, client.Target{Type: "b"}},
		{"run: status only", triggerOptions{onRun: true, status: []string{"failed"}, target: targetOptions{types: []string{"b"}}},
			&api.TriggerOn{Status: []string{"failed"}}, client.Target{Type: "b"}},
		{"request", triggerOptions{onRequest: true, target: targetOptions{types: []string{"b"}, files: map[string]string{"src": "x.c"}}},
			nil, client.Target{Type: "b", Files: map[string]string{"src": "x.c"}}},
	} {
		put, target, err := triggerPutOf("t", c.o)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		kind := map[bool]string{true: api.TriggerResult}[c.o.onResult] + map[bool]string{true: api.TriggerRun}[c.o.onRun] + map[bool]string{true: api.TriggerRequest}[c.o.onRequest]
		if put.Name != "t" || put.Kind != kind || !reflect.DeepEqual(put.On, c.on) || !reflect.DeepEqual(*target, c.target) {
			t.Errorf("%s: put %+v on %+v target %+v, want kind %s on %+v target %+v", c.name, put, put.On, *target, kind, c.on, c.target)
		}
	}
}

func TestSchedulePutOf(t *testing.T) {
	put, target, err := schedulePutOf("nightly", scheduleOptions{cron: "0 3 * * *", tz: "Europe/Warsaw", overlap: "forbid",
		target: targetOptions{types: []string{"compile"}, params: map[string]string{"n": "5"}, queue: "fast"}})
	want := api.TriggerPut{Kind: api.TriggerSchedule, Name: "nightly", Cron: "0 3 * * *", TZ: "Europe/Warsaw", Overlap: "forbid"}
	if err != nil || !reflect.DeepEqual(put, want) || !reflect.DeepEqual(*target, client.Target{Type: "compile", Params: map[string]string{"n": "5"}, Queue: "fast"}) {
		t.Fatalf("cron: %+v %+v %v", put, target, err)
	}
	put, target, err = schedulePutOf("often", scheduleOptions{every: "30s", target: targetOptions{task: "d"}})
	if err != nil || put.Every != "30s" || put.Cron != "" || !reflect.DeepEqual(*target, client.Target{Task: "d"}) {
		t.Fatalf("every: %+v %+v %v", put, target, err)
	}
}

func TestFormatTrigger(t *testing.T) {
	info := client.TriggerInfo{Kind: api.TriggerSchedule, Name: "nightly", Owner: "alice", Version: 2, Cron: "0 3 * * *", TZ: "Europe/Warsaw",
		Overlap: "forbid", NextFire: "2026-12-08T02:00:00Z", Target: "type compile", TimeCreate: "2026-12-01T10:00:00Z",
		Fires: []api.TriggerFire{
			{Time: "2026-12-07T02:00:01Z", Fire: "2026-12-07T02:00:00Z", State: api.FireSkipped, Reason: "overlap forbid: 0123 still running"},
			{Time: "2026-12-06T02:00:01Z", Fire: "2026-12-06T02:00:00Z", State: api.FireStarted, Started: "task", Key: "0123", Status: "OK"},
		}}
	var out bytes.Buffer
	if err := formatTrigger(&out, &info); err != nil {
		t.Fatal(err)
	}
	want := `name:       nightly
owner:      alice
version:    2
schedule:   cron "0 3 * * *" (Europe/Warsaw)
overlap:    forbid
next fire:  2026-12-08T02:00:00Z
target:     type compile
paused:     false
created:    2026-12-01T10:00:00Z

TIME                  FIRE                  STATE    STARTED  KEY   STATUS  REASON
2026-12-07T02:00:01Z  2026-12-07T02:00:00Z  skipped                         overlap forbid: 0123 still running
2026-12-06T02:00:01Z  2026-12-06T02:00:00Z  started  task     0123  OK      
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	trig := client.TriggerInfo{Kind: api.TriggerResult, Name: "t", Owner: "bob", Version: 1, On: &api.TriggerOn{Queue: "q", Type: "compile", Status: []string{"OK", "RE"}},
		Target: "workflow", Paused: true}
	out.Reset()
	if err := formatTrigger(&out, &trig); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "on:       result queue=q type=compile status=OK,RE\n") || !strings.Contains(out.String(), "paused:   true\n") ||
		!strings.HasSuffix(out.String(), "\nno firings yet\n") || strings.Contains(out.String(), "schedule:") {
		t.Errorf("a trigger:\n%s", out.String())
	}
}

// fakeTriggers answers what trigger put, show and fire need, as the
// server of the extension "triggers" will: settings, blob uploads, the
// put, a trigger and the webhook; it records the requests' bodies and
// headers by path.
type fakeTriggers struct {
	mu      sync.Mutex
	bodies  map[string][]byte
	headers map[string]http.Header
	blobs   map[string]string
}

func (f *fakeTriggers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bodies[r.URL.Path], f.headers[r.URL.Path] = body, r.Header.Clone()
	ok := api.Envelope{Status: api.StatusOK}
	var answer any
	switch p := r.URL.Path; {
	case p == "/settings/":
		answer = api.SettingsAnswer{Envelope: ok, Settings: api.Settings{Extensions: []string{api.ExtTriggers}}}
	case strings.HasPrefix(p, "/blob/blob/"):
		http.NotFound(w, r)
		return
	case p == "/blob/reference/":
		key := fmt.Sprintf("%032x", len(f.blobs)+1)
		f.blobs[key] = string(body)
		answer = api.ReferenceAnswer{Envelope: ok, Reference: api.Reference{Key: key}}
	case p == "/trigger/":
		answer = api.TriggerPutAnswer{Envelope: ok, Name: "t", Version: 7}
	case p == "/trigger/hook/" && r.Method == http.MethodPost:
		answer = api.TriggerFireAnswer{Envelope: ok, Key: "started-key", Started: "workflow"}
	case p == "/trigger/hook/":
		answer = api.TriggerAnswer{Envelope: ok, Trigger: api.TriggerInfo{Kind: api.TriggerRequest, Name: "hook", Target: "task"}}
	default:
		http.NotFound(w, r)
		return
	}
	json.NewEncoder(w).Encode(answer)
}

// trigger put, show and fire against a fake server, with a token in the
// config: what is sent, and what is printed.
func TestTriggerCommands(t *testing.T) {
	f := &fakeTriggers{bodies: map[string][]byte{}, headers: map[string]http.Header{}, blobs: map[string]string{}}
	hs := httptest.NewServer(f)
	t.Cleanup(hs.Close)
	conf := filepath.Join(t.TempDir(), "kolejka.conf")
	os.WriteFile(conf, []byte("[default]\nserver = "+hs.URL+"\n\n[client]\ntoken = hook-token\n"), 0o644)
	e := &env{url: hs.URL, conf: conf}
	task := t.TempDir()
	os.WriteFile(filepath.Join(task, spec.TaskFile), []byte(`{"image": "busybox:latest", "args": ["sh", "run.sh"], "files": {"run.sh": {"path": "run.sh"}}}`), 0o644)
	os.WriteFile(filepath.Join(task, "run.sh"), []byte("echo hi\n"), 0o644)

	code, out := e.run(t, "trigger", "put", "--on-result", "--type", "compile", "--queue", "q", "--status", "OK,RE", "--task", task, "t")
	if code != 0 || strings.TrimSpace(out) != "7" {
		t.Fatalf("trigger put: %d %q", code, out)
	}
	put, err := api.ParseTriggerPut(f.bodies["/trigger/"])
	if err != nil || put.Kind != api.TriggerResult || !reflect.DeepEqual(put.On, &api.TriggerOn{Queue: "q", Type: "compile", Status: []string{"OK", "RE"}}) {
		t.Fatalf("the put: %s (%v)", f.bodies["/trigger/"], err)
	}
	if got, err := spec.ParseTask(put.Target.Task, "target"); err != nil || f.blobs[got.Files["run.sh"].Reference] != "echo hi\n" {
		t.Errorf("the target's task: %s (%v)", put.Target.Task, err)
	}

	code, out = e.run(t, "trigger", "fire", "-p", "n=5", "-p", "mode=a,b", "--idempotency-key", "req-1", "hook")
	if code != 0 || strings.TrimSpace(out) != "started-key" {
		t.Fatalf("trigger fire: %d %q", code, out)
	}
	params, err := api.ParseWebhookParams(f.bodies["/trigger/hook/"])
	h := f.headers["/trigger/hook/"]
	if err != nil || !reflect.DeepEqual(params, map[string]string{"n": "5", "mode": "a,b"}) || h.Get("Idempotency-Key") != "req-1" || h.Get("Authorization") != "Bearer hook-token" {
		t.Errorf("the webhook: %s %v (%v)", f.bodies["/trigger/hook/"], h, err)
	}

	code, out = e.run(t, "trigger", "show", "--json", "hook")
	var shown client.TriggerInfo
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown.Name != "hook" || shown.Kind != api.TriggerRequest {
		t.Errorf("trigger show --json: %d %q", code, out)
	}
	if code, _ := e.run(t, "schedule", "show", "nothing"); code != exitNotFound {
		t.Errorf("schedule show of an unknown path: exit %d, want %d", code, exitNotFound)
	}
}
