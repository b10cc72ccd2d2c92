package client_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/spec"
)

// triggerServer stands in for a server of the extension "triggers" until
// the real one serves it: it keeps uploaded blobs (and says so to HEAD),
// deletes references, answers a put with its answer (or a FAIL) and
// records every request.
type triggerServer struct {
	t          *testing.T
	extensions []string
	refuse     string            // non-empty: a put is answered FAIL with it
	types      map[string]string // GET /type/<name>/: the type's kolejka_task.json

	mu       sync.Mutex
	blobs    map[string]string // reference → bytes
	deleted  []string
	puts     map[string][]byte // path → body of the last POST of JSON
	requests []string          // "METHOD path"
	headers  map[string]http.Header
	next     int
}

func (s *triggerServer) start() *client.Client {
	s.t.Helper()
	s.blobs, s.puts, s.headers = map[string]string{}, map[string][]byte{}, map[string]http.Header{}
	hs := httptest.NewServer(http.HandlerFunc(s.serve))
	s.t.Cleanup(hs.Close)
	cl, err := client.New(context.Background(), client.Config{Server: hs.URL, Token: "t0ken", Limits: spec.Limits{Memory: ptr(int64(512 << 20))}})
	if err != nil {
		s.t.Fatal(err)
	}
	return cl
}

func ptr[T any](v T) *T { return &v }

func (s *triggerServer) answer(w http.ResponseWriter, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		s.t.Error(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(data)
}

func (s *triggerServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)
	s.headers[r.URL.Path] = r.Header.Clone()
	ok := api.Envelope{Status: api.StatusOK}
	path := r.URL.Path
	switch {
	case path == "/settings/":
		s.answer(w, api.SettingsAnswer{Envelope: ok, Settings: api.Settings{Extensions: s.extensions}})
	case r.Method == http.MethodPost && strings.HasPrefix(path, "/blob/blob/"):
		http.NotFound(w, r) // no bytes known by hash: the client uploads
	case r.Method == http.MethodPost && path == "/blob/reference/":
		sum := sha256.Sum256(body)
		s.next++
		key := fmt.Sprintf("%032x", s.next)
		s.blobs[key] = string(body)
		s.answer(w, api.ReferenceAnswer{Envelope: ok, Reference: api.Reference{Key: key, Blob: hex.EncodeToString(sum[:]), Size: int64(len(body))}})
	case strings.HasPrefix(path, "/blob/reference/"):
		key := strings.Trim(strings.TrimPrefix(path, "/blob/reference/"), "/")
		_, found := s.blobs[key]
		switch {
		case !found:
			http.NotFound(w, r)
		case r.Method == http.MethodDelete:
			delete(s.blobs, key)
			s.deleted = append(s.deleted, key)
			s.answer(w, ok)
		default:
			w.WriteHeader(http.StatusOK)
		}
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/type/"):
		name := strings.Trim(strings.TrimPrefix(path, "/type/"), "/")
		doc, found := s.types[name]
		if !found {
			s.answer(w, api.Failure{Envelope: api.Envelope{Status: api.StatusFail}, Message: "no type " + name})
			return
		}
		s.answer(w, api.TypeAnswer{Envelope: ok, Info: api.TypeInfo{Name: name, Owner: "alice", Version: 4}, Type: json.RawMessage(doc)})
	case r.Method == http.MethodPost && (path == "/schedule/" || path == "/trigger/"):
		s.puts[path] = body
		if s.refuse != "" {
			s.answer(w, api.Failure{Envelope: api.Envelope{Status: api.StatusFail}, Message: s.refuse})
			return
		}
		put, err := api.ParseTriggerPut(body)
		if err != nil {
			s.t.Errorf("the put does not parse as the server parses it: %v", err)
		}
		s.answer(w, api.TriggerPutAnswer{Envelope: ok, Name: put.Name, Version: 3})
	case r.Method == http.MethodPost && strings.HasPrefix(path, "/trigger/") && strings.Count(path, "/") == 3:
		s.puts[path] = body
		s.answer(w, api.TriggerFireAnswer{Envelope: ok, Key: "k-" + r.Header.Get("Idempotency-Key"), Started: "task"})
	case strings.HasPrefix(path, "/schedule/") || strings.HasPrefix(path, "/trigger/"):
		if r.Method == http.MethodDelete {
			s.answer(w, ok)
			return
		}
		name := strings.Split(path, "/")[2]
		if name == "" {
			s.answer(w, api.TriggersAnswer{Envelope: ok, Triggers: []api.TriggerInfo{{Name: "a", Kind: api.TriggerSchedule}, {Name: "b", Kind: api.TriggerSchedule}}})
			return
		}
		s.answer(w, api.TriggerAnswer{Envelope: ok, Trigger: api.TriggerInfo{Name: name, Paused: strings.HasSuffix(path, "/pause/"), Target: path}})
	default:
		s.t.Errorf("unexpected request %s %s", r.Method, path)
		http.NotFound(w, r)
	}
}

// taskDoc is a task folder's kolejka_task.json with two files, one in a
// subfolder, and a memory limit over the client's cap (512M).
const taskDoc = `{"image": "kolejka-test:latest", "args": ["sh", "run.sh"], "limits": {"time": "10s", "memory": "1G"},
 "files": {"run.sh": {"path": "run.sh"}, "data.txt": "lib/d.txt"}}`

// A schedule of a task folder uploads the folder's files and puts the
// task with their references, its limits capped by the client's; nothing
// is submitted.
func TestSchedulePutUploadsTaskFolder(t *testing.T) {
	s := &triggerServer{t: t, extensions: []string{api.ExtTriggers}}
	cl := s.start()
	dir := writeTask(t, taskDoc, map[string]string{"run.sh": "echo hi\n", "lib/d.txt": "data\n"})
	v, err := cl.SchedulePut(context.Background(), api.TriggerPut{Name: "nightly", Cron: "0 3 * * *", TZ: "Europe/Warsaw"}, &client.Target{Task: dir})
	if err != nil || v != 3 {
		t.Fatalf("put: %d %v", v, err)
	}
	put, err := api.ParseTriggerPut(s.puts["/schedule/"])
	if err != nil {
		t.Fatal(err)
	}
	if put.Kind != api.TriggerSchedule || put.Name != "nightly" || put.Cron != "0 3 * * *" || put.TZ != "Europe/Warsaw" {
		t.Errorf("the put: %+v", put)
	}
	task, err := spec.ParseTask(put.Target.Task, "target")
	if err != nil {
		t.Fatalf("the target's task: %v (%s)", err, put.Target.Task)
	}
	for name, want := range map[string]string{"run.sh": "echo hi\n", "data.txt": "data\n"} {
		if ref := task.Files[name].Reference; s.blobs[ref] != want {
			t.Errorf("file %s: reference %q holds %q, want %q", name, ref, s.blobs[ref], want)
		}
	}
	if task.Limits.Memory == nil || *task.Limits.Memory != 512<<20 || task.Limits.Time == nil {
		t.Errorf("the target's limits are not capped by the client's: %+v", task.Limits)
	}
	for _, req := range s.requests {
		if strings.HasPrefix(req, "POST /task/") {
			t.Errorf("the target was submitted: %s", req)
		}
	}
	if len(s.deleted) != 0 {
		t.Errorf("a stored put deleted references: %v", s.deleted)
	}
}

// A refused put deletes what was uploaded for it, and says the server's
// reason.
func TestTriggerPutRefusedDeletesUploads(t *testing.T) {
	s := &triggerServer{t: t, extensions: []string{api.ExtTriggers}, refuse: "on.status: unknown status XX"}
	cl := s.start()
	dir := writeTask(t, taskDoc, map[string]string{"run.sh": "echo hi\n", "lib/d.txt": "data\n"})
	_, err := cl.TriggerPut(context.Background(), api.TriggerPut{Name: "t", Kind: api.TriggerResult, On: &api.TriggerOn{Status: []string{"XX"}}}, &client.Target{Task: dir})
	var se *client.ServerError
	if !errors.As(err, &se) || !strings.Contains(se.Message, "unknown status XX") {
		t.Fatalf("put: %v, want the server's refusal", err)
	}
	if len(s.deleted) != 2 || len(s.blobs) != 0 {
		t.Errorf("deleted %v, left %v: want both uploads deleted", s.deleted, s.blobs)
	}
	if _, ok := s.puts["/trigger/"]; !ok {
		t.Error("the put was not posted to /trigger/")
	}
}

// A type target is rendered first: a missing parameter is refused by
// name before anything is uploaded; a good one uploads its file
// parameters and puts the type with them.
func TestTriggerPutTypeTarget(t *testing.T) {
	s := &triggerServer{t: t, extensions: []string{api.ExtTriggers, api.ExtTypes}, types: map[string]string{"compile": typeDoc}}
	cl := s.start()
	ctx := context.Background()
	src := writeTask(t, "{}", map[string]string{"main.c": "int main() {}\n"}) + "/main.c"
	_, err := cl.TriggerPut(ctx, api.TriggerPut{Name: "t", Kind: api.TriggerRequest}, &client.Target{Type: "compile", Params: map[string]string{"n": "5"}})
	var fe *spec.Error
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), `params["src"]`) {
		t.Fatalf("a missing file parameter: %v", err)
	}
	if len(s.blobs) != 0 || s.puts["/trigger/"] != nil {
		t.Fatalf("a refused type target uploaded %v or put %s", s.blobs, s.puts["/trigger/"])
	}
	if _, err := cl.TriggerPut(ctx, api.TriggerPut{Name: "t", Kind: api.TriggerRequest},
		&client.Target{Type: "compile", Params: map[string]string{"n": "5"}, Files: map[string]string{"src": src}, Queue: "fast"}); err != nil {
		t.Fatal(err)
	}
	put, err := api.ParseTriggerPut(s.puts["/trigger/"])
	if err != nil {
		t.Fatal(err)
	}
	tg := put.Target
	if tg.Type != "compile" || tg.Queue != "fast" || !reflect.DeepEqual(tg.Params, map[string]string{"n": "5"}) || tg.Task != nil || tg.Workflow != nil {
		t.Errorf("the target: %+v", tg)
	}
	if f := tg.Files["src"]; f.Name != "main.c" || s.blobs[f.Reference] != "int main() {}\n" {
		t.Errorf("the file parameter: %+v", f)
	}
	if tg.Limits.Memory == nil || *tg.Limits.Memory != 512<<20 {
		t.Errorf("the client's caps are not the target's limits: %+v", tg.Limits)
	}
}

// The parameters a firing gives are not missing at the put: a request's
// body gives the type's required value parameters, a result or run
// trigger's source gives "trigger"; the put carries only the ones given.
// A schedule gives neither: the same put is refused naming the parameter.
func TestTriggerPutTypeTargetFireParams(t *testing.T) {
	s := &triggerServer{t: t, extensions: []string{api.ExtTriggers, api.ExtTypes}, types: map[string]string{
		"build": `{"image": "kolejka-test:latest", "args": ["echo", "{rev}", "{mode}"], "params": {"rev": {}, "mode": {"default": "fast"}}}`,
		"chain": `{"image": "kolejka-test:latest", "args": ["echo", "{trigger}"], "params": {"trigger": {}}}`,
	}}
	cl := s.start()
	ctx := context.Background()
	for _, c := range []struct {
		kind, typ string
		refused   string // "": put
	}{
		{api.TriggerRequest, "build", ""},
		{api.TriggerResult, "chain", ""},
		{api.TriggerRun, "chain", ""},
		{api.TriggerResult, "build", `params["rev"]`},
		{api.TriggerSchedule, "build", `params["rev"]`},
		{api.TriggerSchedule, "chain", `params["trigger"]`},
	} {
		s.puts = map[string][]byte{}
		put := api.TriggerPut{Name: "t", Kind: c.kind}
		var err error
		if c.kind == api.TriggerSchedule {
			put.Every = "1m"
			_, err = cl.SchedulePut(ctx, put, &client.Target{Type: c.typ})
		} else {
			_, err = cl.TriggerPut(ctx, put, &client.Target{Type: c.typ})
		}
		if c.refused != "" {
			if err == nil || !strings.Contains(err.Error(), c.refused) || len(s.puts) != 0 {
				t.Errorf("%s of type %s: %v (puts %v), want refused naming %s", c.kind, c.typ, err, s.puts, c.refused)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s of type %s: %v", c.kind, c.typ, err)
			continue
		}
		sent, err := api.ParseTriggerPut(s.puts["/trigger/"])
		if err != nil || len(sent.Target.Params) != 0 {
			t.Errorf("%s of type %s put params %v (%v): the samples of the check were sent", c.kind, c.typ, sent.Target.Params, err)
		}
	}
}

// A target is exactly one of a task folder, a type and a workflow folder;
// a put needs a valid name; both refused before anything is sent.
func TestTriggerPutBadInput(t *testing.T) {
	s := &triggerServer{t: t, extensions: []string{api.ExtTriggers}}
	cl := s.start()
	ctx := context.Background()
	dir := writeTask(t, taskDoc, map[string]string{"run.sh": "echo hi\n", "lib/d.txt": "data\n"})
	for _, c := range []struct {
		name   string
		target client.Target
		want   string
	}{
		{"t", client.Target{}, "exactly one"},
		{"t", client.Target{Task: dir, Workflow: dir}, "exactly one"},
		{"t", client.Target{Task: dir, Params: map[string]string{"n": "1"}}, "no type"},
		{"bad name", client.Target{Task: dir}, "not a name"},
	} {
		_, err := cl.TriggerPut(ctx, api.TriggerPut{Name: c.name, Kind: api.TriggerRequest}, &c.target)
		var fe *spec.Error
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %+v: %v, want a *spec.Error naming %q", c.name, c.target, err, c.want)
		}
	}
	if len(s.blobs) != 0 || len(s.puts) != 0 {
		t.Errorf("bad input uploaded %v or put %v", s.blobs, s.puts)
	}
}

// The webhook posts its parameters as a JSON object, with the
// Idempotency-Key header when given, and says what it started.
func TestTriggerFire(t *testing.T) {
	s := &triggerServer{t: t, extensions: []string{api.ExtTriggers}}
	cl := s.start()
	ctx := context.Background()
	out, err := cl.TriggerFire(ctx, "hook", map[string]string{"n": "5"}, "req-1")
	if err != nil || out.Key != "k-req-1" || out.Started != "task" {
		t.Fatalf("fire: %+v %v", out, err)
	}
	params, err := api.ParseWebhookParams(s.puts["/trigger/hook/"])
	if err != nil || !reflect.DeepEqual(params, map[string]string{"n": "5"}) {
		t.Errorf("the body: %s (%v)", s.puts["/trigger/hook/"], err)
	}
	if h := s.headers["/trigger/hook/"]; h.Get("Idempotency-Key") != "req-1" || h.Get("Authorization") != "Bearer t0ken" {
		t.Errorf("the headers: %v", h)
	}
	if _, err := cl.TriggerFire(ctx, "hook", nil, ""); err != nil {
		t.Fatal(err)
	}
	if body := string(s.puts["/trigger/hook/"]); body != "{}" {
		t.Errorf("no parameters sent %q, want {}", body)
	}
	if _, sent := s.headers["/trigger/hook/"]["Idempotency-Key"]; sent {
		t.Error("an Idempotency-Key was sent without one given")
	}
}

// Listing, reading, pausing, resuming and removing go to their paths.
func TestTriggerCallsPaths(t *testing.T) {
	s := &triggerServer{t: t, extensions: []string{api.ExtTriggers}}
	cl := s.start()
	ctx := context.Background()
	list, err := cl.Schedules(ctx)
	if err != nil || len(list) != 2 || list[1].Name != "b" {
		t.Fatalf("schedules: %+v %v", list, err)
	}
	for _, c := range []struct {
		call func(context.Context, string) (*client.TriggerInfo, error)
		want string
	}{
		{cl.Schedule, "GET /schedule/n/"},
		{cl.SchedulePause, "POST /schedule/n/pause/"},
		{cl.ScheduleResume, "POST /schedule/n/resume/"},
		{cl.Trigger, "GET /trigger/n/"},
		{cl.TriggerPause, "POST /trigger/n/pause/"},
		{cl.TriggerResume, "POST /trigger/n/resume/"},
	} {
		info, err := c.call(ctx, "n")
		if err != nil || info.Name != "n" || "POST "+info.Target != c.want && "GET "+info.Target != c.want {
			t.Errorf("%s: %+v %v", c.want, info, err)
		}
		if last := s.requests[len(s.requests)-1]; last != c.want {
			t.Errorf("sent %s, want %s", last, c.want)
		}
	}
	if err := cl.ScheduleRemove(ctx, "n"); err != nil || s.requests[len(s.requests)-1] != "DELETE /schedule/n/" {
		t.Errorf("schedule remove: %v %v", err, s.requests)
	}
	if err := cl.TriggerRemove(ctx, "n"); err != nil || s.requests[len(s.requests)-1] != "DELETE /trigger/n/" {
		t.Errorf("trigger remove: %v %v", err, s.requests)
	}
	if _, err := cl.Triggers(ctx); err != nil || s.requests[len(s.requests)-1] != "GET /trigger/" {
		t.Errorf("triggers: %v %v", err, s.requests)
	}
}

// Without the extension every call is ErrUnsupported and sends nothing.
func TestTriggersNeedTheExtension(t *testing.T) {
	s := &triggerServer{t: t, extensions: []string{api.ExtTypes}}
	cl := s.start()
	ctx := context.Background()
	dir := writeTask(t, taskDoc, map[string]string{"run.sh": "echo hi\n", "lib/d.txt": "data\n"})
	before := len(s.requests)
	_, e1 := cl.SchedulePut(ctx, api.TriggerPut{Name: "s", Every: "30s"}, &client.Target{Task: dir})
	_, e2 := cl.Triggers(ctx)
	_, e3 := cl.TriggerFire(ctx, "hook", nil, "")
	_, e4 := cl.SchedulePause(ctx, "s")
	e5 := cl.TriggerRemove(ctx, "t")
	for i, err := range []error{e1, e2, e3, e4, e5} {
		if !errors.Is(err, client.ErrUnsupported) {
			t.Errorf("call %d: %v, want ErrUnsupported", i+1, err)
		}
	}
	if sent := s.requests[before:]; len(sent) != 0 {
		t.Errorf("sent %v", sent)
	}
	if slices.ContainsFunc(s.requests, func(r string) bool { return strings.HasPrefix(r, "POST /blob/") }) {
		t.Error("uploaded without the extension")
	}
}

// A workflow target is the put WorkflowPut would post (its task folders'
// files uploaded), not posted as a run.
func TestTriggerPutWorkflowTarget(t *testing.T) {
	s := &triggerServer{t: t, extensions: []string{api.ExtTriggers, api.ExtWorkflows}}
	cl := s.start()
	dir := writeTask(t, "{}", map[string]string{
		"kolejka_workflow.json": `{"tasks": {"a": {"task": "a"}}}`,
		"a/kolejka_task.json":   `{"image": "busybox:latest", "args": ["make", "all"], "files": {"Makefile": {"path": "Makefile"}}}`,
		"a/Makefile":            "all:\n",
	})
	if _, err := cl.TriggerPut(context.Background(), api.TriggerPut{Name: "w", Kind: api.TriggerRun}, &client.Target{Workflow: dir}); err != nil {
		t.Fatal(err)
	}
	put, err := api.ParseTriggerPut(s.puts["/trigger/"])
	if err != nil || put.Target.Workflow == nil {
		t.Fatalf("the put: %s (%v)", s.puts["/trigger/"], err)
	}
	task, err := spec.ParseTask(put.Target.Workflow.Tasks["a"], "step a")
	if err != nil || s.blobs[task.Files["Makefile"].Reference] != "all:\n" {
		t.Errorf("step a's task: %s (%v)", put.Target.Workflow.Tasks["a"], err)
	}
	for _, req := range s.requests {
		if strings.HasPrefix(req, "POST /workflow/") {
			t.Errorf("the workflow was run: %s", req)
		}
	}
}
