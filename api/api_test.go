package api_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/spec"
)

// The golden files were recorded from the server's answers
// (internal/server/answers_test.go) and the client's requests
// (client/requests_test.go), random keys as "KEY1"… and times as "TIME".

// The task and the result of the recorded walk, as the server stored them.
const (
	storedTask   = `{"args":["true"],"collect":[],"environment":{},"files":{"in.txt":{"reference":"KEY1"}},"id":"KEY2","image":"busybox:latest","limits":{"cpus":1,"memory":"1073741824b","time":"10.0s"},"requires":[]}`
	storedResult = `{"files":{"stdout":{"reference":"KEY1"}},"id":"KEY2","limits":{},"result":0,"stats":{"cpu":{},"cpus":{},"gpus":{},"memory":{},"perf":{},"pids":{}},"status":"OK","stdout":"stdout","tags":[]}`
	clonedTask   = `{"args":["true"],"collect":[],"environment":{},"files":{},"id":"KEY1","image":"busybox:latest","limits":{},"requires":[]}`
	inputHash    = "3eb177d83f1060306bac0611806531e2620a8e2fec79f51dcfcc20a19b53db0d"
)

func answers() map[string]any {
	ref := api.Reference{Blob: inputHash, Key: "KEY1", Size: 10, TimeAccess: "TIME", TimeCreate: "TIME"}
	deleted := func() any { return api.OK(&api.DeletedAnswer{Deleted: true}) }
	handedOut := []api.Attempt{{Attempt: 1, Node: "node", TimeAssign: "TIME"}}
	return map[string]any{
		"login":     api.OK(&api.Envelope{}),
		"login-get": api.OK(&api.Envelope{}),
		"logout":    api.OK(&api.Envelope{}),
		"fail":      api.Fail("invalid username or password"),
		"settings": api.OK(&api.SettingsAnswer{Settings: api.Settings{
			BlobHashAlgorithm: "sha256",
			Extensions: []string{api.ExtBearer, api.ExtHeartbeat, api.ExtLongPoll, api.ExtDequeueDefaults, api.ExtRelease, api.ExtQueues, api.ExtTypes,
				api.ExtTaskList, api.ExtTaskDetail, api.ExtCancel, api.ExtClone, api.ExtWorkflows, api.ExtTriggers, api.ExtNodes, api.ExtImages, api.ExtRoomWake},
			LeaseTime:     "60.0s",
			MaxResultBody: "16777216b",
			MaxWait:       "60.0s",
		}}),
		"stats-empty": api.OK(&api.StatsAnswer{QueueStats: api.QueueStats{
			Queues: map[string]api.QueueFigures{"default": {}}, TaskAssignees: map[string]int{},
		}}),
		"stats": api.OK(&api.StatsAnswer{QueueStats: api.QueueStats{
			Queues:            map[string]api.QueueFigures{"default": {Running: 1}},
			TaskAssignedCount: 1, TaskAssignees: map[string]int{"node": 1}, TaskCount: 1, TaskUnresolvedCount: 1,
		}}),
		"reference-upload": api.OK(&api.ReferenceAnswer{Reference: ref}),
		"reference-dedup":  api.OK(&api.ReferenceAnswer{Reference: ref}),
		"reference-put":    api.OK(&api.ReferenceAnswer{Reference: ref}),
		"reference-delete": deleted(),
		"blob-put":         api.OK(&api.BlobAnswer{Blob: api.Blob{Key: inputHash, References: 2, Size: 10, TimeAccess: "TIME", TimeCreate: "TIME"}}),
		"blob-delete":      deleted(),
		"task-post":        api.OK(&api.NewTaskAnswer{Task: json.RawMessage(storedTask)}),
		"task-get": api.OK(&api.TaskAnswer{Assignments: []api.Attempt{}, Queue: "default", State: api.StateQueued,
			Task: json.RawMessage(storedTask), TimeCreate: "TIME"}),
		"task-get-assigned": api.OK(&api.TaskAnswer{Assignee: "node", Assignments: handedOut, Attempts: 1, Node: "node", Queue: "default",
			State: api.StateRunning, Task: json.RawMessage(storedTask), TimeCreate: "TIME", TimeStart: "TIME"}),
		"task-get-resolved": api.OK(&api.TaskAnswer{Assignments: handedOut, Attempts: 1, Node: "node", Queue: "default", Resolved: true,
			ResultStatus: "OK", State: api.StateDone, Task: json.RawMessage(storedTask), TimeCreate: "TIME", TimeFinish: "TIME", TimeStart: "TIME"}),
		"task-list": api.OK(&api.TaskListAnswer{Next: "KEY1", Tasks: []api.TaskSummary{
			{Key: "KEY1", Owner: "alice", Queue: "default", State: api.StateQueued, TimeCreate: "TIME"}}}),
		"task-cancel":      api.OK(&api.CancelAnswer{State: api.StateCancelled, Was: api.StateQueued}),
		"result-cancelled": api.Cancelled("KEY1"),
		"task-clone":       api.OK(&api.NewTaskAnswer{Task: json.RawMessage(clonedTask)}),
		"task-delete":      deleted(),
		"result-post":      api.OK(&api.ResultAnswer{Result: json.RawMessage(storedResult)}),
		"result-get":       api.OK(&api.ResultAnswer{Result: json.RawMessage(storedResult)}),
		"result-delete":    deleted(),
		"dequeue":          api.OK(&api.DequeueAnswer{Tasks: []json.RawMessage{json.RawMessage(storedTask)}}),
		"dequeue-empty":    api.OK(&api.DequeueAnswer{Tasks: []json.RawMessage{}}),
		"heartbeat":        api.OK(&api.HeartbeatAnswer{Lease: "60.0s", Lost: []string{"KEY1"}, Tasks: []string{"KEY2"}}),
		"heartbeat-none":   api.OK(&api.HeartbeatAnswer{Lease: "60.0s", Lost: []string{}, Tasks: []string{}}),
		"release":          api.OK(&api.ReleaseAnswer{Lost: []string{"KEY1"}, Released: []string{"KEY2"}}),
		"release-none":     api.OK(&api.ReleaseAnswer{Lost: []string{}, Released: []string{}}),
		"type-put":         api.OK(&api.TypePutAnswer{Name: "echo", Version: 1}),
		"types":            api.OK(&api.TypesAnswer{Types: []api.TypeInfo{typeInfo()}}),
		"type-get":         api.OK(&api.TypeAnswer{Info: typeInfo(), Type: json.RawMessage(storedType)}),
		"type-task":        api.OK(&api.NewTaskAnswer{Task: json.RawMessage(typeTask)}),
		"dequeue-pass-env": api.OK(&api.DequeueAnswer{PassEnv: map[string][]string{"KEY1": {"LANG"}},
			Tasks: []json.RawMessage{json.RawMessage(typeTaskDequeued)}}),
		"type-delete": deleted(),
		"image-put":   api.OK(&api.ImagePutAnswer{Name: "docker.io/library/busybox:latest"}),
		"images":      api.OK(&api.ImagesAnswer{Images: []api.ImageInfo{imageInfo()}}),
		"image-get": api.OK(&api.ImageAnswer{Info: imageInfo(), Manifest: api.ImageManifest{Kind: api.ImageArchive, Blobs: []api.ImageBlob{
			{Reference: "KEY1", Digest: "sha256:b2be85082235449a2ad77521d9e1b209c3a52a5806553636442d6fe3daa2ce6a", Size: 17}}}}),
		"image-delete": deleted(),
		"node-drain":   api.OK(&api.NodeAnswer{Node: neverSeen()}),
		"nodes":        api.OK(&api.NodesAnswer{LeaseTime: "60.0s", Nodes: []api.Node{neverSeen()}}),
	}
}

// The task type of the recorded walk, as the server stored it, and the
// task made from it, as stored and as handed to a node.
const (
	storedType       = `{"args":["sh","run.sh","{n}"],"files":{"run.sh":{"path":"run.sh","reference":"KEY1"}},"image":"busybox:latest","params":{"n":{"default":"1"}},"pass_env":["LANG"]}`
	typeTask         = `{"args":["sh","run.sh","2"],"collect":[],"environment":{},"files":{"run.sh":{"reference":"KEY1"}},"id":"KEY2","image":"busybox:latest","limits":{},"requires":[]}`
	typeTaskDequeued = `{"args":["sh","run.sh","2"],"collect":[],"environment":{},"files":{"run.sh":{"reference":"KEY2"}},"id":"KEY1","image":"busybox:latest","limits":{"cpus":1,"memory":"1073741824b","time":"3600.0s"},"requires":[]}`
)

// neverSeen is node3 of the recorded walk, drained before it came.
func neverSeen() api.Node {
	return api.Node{Drained: true, Health: api.HealthCrit, Name: "node3", Queues: []string{}, Running: []string{}, Tags: []string{}}
}

func typeInfo() api.TypeInfo {
	one := "1"
	return api.TypeInfo{Name: "echo", Owner: "alice", Params: map[string]api.TypeParam{"n": {Default: &one}},
		PassEnv: []string{"LANG"}, Public: true, TimeCreate: "TIME", Version: 1}
}

func imageInfo() api.ImageInfo {
	return api.ImageInfo{Name: "docker.io/library/busybox:latest", Owner: "alice", Size: 17, TimeCreate: "TIME"}
}

const unknownKey = "0123456789abcdef0123456789abcdef"

func requests() map[string]any {
	cpus, mem, limit, all := int64(4), int64(2<<30), 10*time.Second, int64(8)
	return map[string]any{
		"dequeue": &api.DequeueRequest{
			Capacity: spec.Limits{CPUs: &all}, Concurrency: 2, Defaults: spec.Limits{Time: &limit}, Heartbeat: true,
			Limits: spec.Limits{CPUs: &cpus, Memory: &mem}, Tags: []string{"gpu", "fast"}, Wait: api.Seconds(250 * time.Millisecond),
		},
		"dequeue-kolejka": &api.DequeueRequest{Concurrency: 1, Limits: spec.Limits{CPUs: &cpus}, Tags: []string{}},
		"heartbeat":       &api.TaskKeys{Tasks: []string{unknownKey}},
		"heartbeat-all":   &api.TaskKeys{Tasks: []string{}},
		"release":         &api.TaskKeys{Tasks: []string{unknownKey}},
	}
}

func golden(t *testing.T, dir, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", dir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(data, []byte("\n"))
}

// Each message marshals to the bytes the server or the client wrote, and
// every golden file has its message.
func TestMessagesMarshalAsRecorded(t *testing.T) {
	for dir, msgs := range map[string]map[string]any{"answers": answers(), "requests": requests()} {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		if err != nil || len(files) == 0 {
			t.Fatalf("testdata/%s: %v (no golden files)", dir, err)
		}
		for _, f := range files {
			if name := strings.TrimSuffix(filepath.Base(f), ".json"); msgs[name] == nil {
				t.Errorf("%s has no message in this test", f)
			}
		}
		for name, msg := range msgs {
			got, err := json.Marshal(msg)
			if err != nil {
				t.Errorf("%s/%s: %v", dir, name, err)
				continue
			}
			if want := golden(t, dir, name); !bytes.Equal(got, want) {
				t.Errorf("%s/%s:\n got %s\nwant %s", dir, name, got, want)
			}
		}
	}
}

// Each recorded answer reads into its type strictly (every key is one of
// its fields) and back to the same bytes: what a client reads is what the
// server wrote.
func TestAnswersReadBack(t *testing.T) {
	for name, msg := range answers() {
		want := golden(t, "answers", name)
		back := reflect.New(reflect.TypeOf(msg).Elem()).Interface()
		if err := api.Decode(want, back); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !reflect.DeepEqual(back, msg) {
			t.Errorf("%s: read %+v, want %+v", name, back, msg)
		}
	}
}

// The server reads each recorded request back into the message the
// client sent.
func TestRequestsReadBack(t *testing.T) {
	for name, msg := range requests() {
		data := golden(t, "requests", name)
		var back any
		if d, isDequeue := msg.(*api.DequeueRequest); isDequeue {
			req, err := api.ParseDequeue(data)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			back, msg = req, *d
		} else {
			var keys api.TaskKeys
			if err := api.Decode(data, &keys); err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			back = &keys
		}
		if !reflect.DeepEqual(back, msg) {
			t.Errorf("%s: read %+v, want %+v", name, back, msg)
		}
	}
}

func TestParseDequeue(t *testing.T) {
	thirty, cpus := 30*time.Second, int64(2)
	for _, c := range []struct {
		body string
		want api.DequeueRequest
		err  []string // the error names these
	}{
		{body: ``, want: api.DequeueRequest{Concurrency: 1}},
		{body: `{}`, want: api.DequeueRequest{Concurrency: 1}},
		{body: `{"concurency": 3, "limits": {"cpus": 2}, "tags": ["a"], "wait": "30s"}`,
			want: api.DequeueRequest{Concurrency: 3, Limits: spec.Limits{CPUs: &cpus}, Tags: []string{"a"}, Wait: api.Seconds(thirty)}},
		{body: `{"wait": 1.5, "defaults": {"time": "30s"}, "heartbeat": true}`,
			want: api.DequeueRequest{Concurrency: 1, Defaults: spec.Limits{Time: &thirty}, Heartbeat: true, Wait: api.Seconds(1500 * time.Millisecond)}},
		{body: `{"wait": null, "limits": null}`, want: api.DequeueRequest{Concurrency: 1}},
		{body: `{"concurrency": 2}`, err: []string{"dequeue: ", `unknown field "concurrency"`}},
		{body: `{"concurency": 0}`, err: []string{"dequeue: concurency: must be at least 1, not 0"}},
		{body: `{"limits": {"memory": "lots"}}`, err: []string{"dequeue limits", "memory", `"lots" is not a size`}},
		{body: `{"defaults": {"cpus": "many"}}`, err: []string{"dequeue defaults", "cpus"}},
		{body: `{"wait": -1}`, err: []string{"dequeue: wait: -1 is not a number of seconds"}},
		{body: `{"wait": [1]}`, err: []string{"dequeue: wait: expected seconds, got [1]"}},
		{body: `{"tags": []} {}`, err: []string{"dequeue: unexpected data after the JSON object"}},
		{body: `{"queues": ["gpu", "judge.v2"]}`, want: api.DequeueRequest{Concurrency: 1, Queues: []string{"gpu", "judge.v2"}}},
		{body: `{"queues": ["gpu", "../x"]}`, err: []string{`dequeue: queues[1]: "../x" is not a name`}},
		{body: `{"queues": "gpu"}`, err: []string{"dequeue: ", "queues"}},
		{body: `{"capacity": {"cpus": 2}}`, want: api.DequeueRequest{Concurrency: 1, Capacity: spec.Limits{CPUs: &cpus}}},
		{body: `{"capacity": {"memory": "lots"}}`, err: []string{"dequeue capacity", "memory", `"lots" is not a size`}},
	} {
		got, err := api.ParseDequeue([]byte(c.body))
		if c.err == nil {
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s: %+v, %v; want %+v", c.body, got, err, c.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted as %+v", c.body, got)
			continue
		}
		for _, w := range c.err {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.body, err, w)
			}
		}
	}
}
