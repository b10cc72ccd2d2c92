package server_test

import (
	"bytes"
	"flag"
	"fmt"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite ../../api/testdata/answers/*.json from the server's current answers")

// answersDir holds the golden answers: package api's tests marshal its
// message types against the same files.
var answersDir = filepath.Join("..", "..", "api", "testdata", "answers")

var (
	randomKey = regexp.MustCompile(`"[0-9a-f]{32}"`)
	djangoAt  = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z"`)
)

// normalize replaces what differs from run to run in an answer: random
// keys become "KEY1", "KEY2"… in order of first appearance, times "TIME".
func normalize(body []byte) []byte {
	names := map[string]string{}
	body = randomKey.ReplaceAllFunc(body, func(k []byte) []byte {
		n, ok := names[string(k)]
		if !ok {
			n = fmt.Sprintf(`"KEY%d"`, len(names)+1)
			names[string(k)] = n
		}
		return []byte(n)
	})
	return djangoAt.ReplaceAll(body, []byte(`"TIME"`))
}

// Every JSON answer the server writes keeps its bytes (key order, present
// keys with null or empty values, number formats): the walk below asks
// for each once and compares it, made stable by normalize, with its
// golden file.
func TestAnswersKeepTheirBytes(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	got := map[string][]byte{}
	record := func(name string, a answer) answer {
		t.Helper()
		if a.code != 200 {
			t.Fatalf("%s: %v", name, a)
		}
		got[name] = normalize(a.body)
		return a
	}
	alice, node, node2, max := e.tok("alice"), e.tok("node"), e.tok("node2"), e.tok("max")

	py := newPyClient(t, e.base)
	record("logout", py.get("/logout/"))
	record("login-get", py.get("/login/"))
	record("fail", py.login("alice", "wrong"))
	record("login", py.login("alice", password("alice")))
	record("settings", alice.do("GET", "/settings/", nil))
	record("stats-empty", alice.do("GET", "/queue/stats/", nil))

	input := []byte("the input\n")
	up := record("reference-upload", alice.do("POST", "/blob/reference/", input))
	inRef := up.json["reference"].(map[string]any)["key"].(string)
	record("reference-dedup", alice.do("POST", "/blob/blob/"+sha(input)+"/", nil))
	record("reference-put", alice.do("PUT", "/blob/reference/"+inRef+"/", nil))

	task := simpleTask()
	task["files"] = map[string]any{"in.txt": map[string]any{"reference": inRef}}
	task["limits"] = map[string]any{"cpus": 1, "memory": "1G", "time": "10s"}
	posted := record("task-post", alice.postJSON("/task/task/", task))
	key := posted.json["task"].(map[string]any)["id"].(string)
	record("task-get", alice.do("GET", "/task/task/"+key+"/", nil))

	record("dequeue", node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1, "limits": map[string]any{"cpus": 2, "memory": "4G"}, "tags": []string{}}))
	record("dequeue-empty", node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1, "limits": map[string]any{}, "tags": []string{}}))
	record("task-get-assigned", alice.do("GET", "/task/task/"+key+"/", nil))
	record("stats", alice.do("GET", "/queue/stats/", nil))
	record("heartbeat", node.postJSON("/queue/heartbeat/", map[string]any{"tasks": []string{key, "0123456789abcdef0123456789abcdef"}}))
	record("heartbeat-none", node2.do("POST", "/queue/heartbeat/", nil))
	record("release-none", node2.postJSON("/queue/release/", map[string]any{"tasks": []string{}}))
	record("release", node.postJSON("/queue/release/", map[string]any{"tasks": []string{key, "0123456789abcdef0123456789abcdef"}}))
	if keys := taskKeys(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1, "limits": map[string]any{}, "tags": []string{}})); len(keys) != 1 {
		t.Fatalf("dequeue after release: %v", keys)
	}

	outRef := node.upload([]byte("the output\n"))
	record("result-post", node.postJSON("/task/result/", map[string]any{
		"id": key, "result": 0, "status": "OK", "stdout": "stdout",
		"files": map[string]any{"stdout": map[string]any{"reference": outRef}},
	}))
	record("result-get", alice.do("GET", "/task/result/"+key+"/", nil))
	record("task-get-resolved", alice.do("GET", "/task/task/"+key+"/", nil))
	record("blob-put", max.do("PUT", "/blob/blob/"+sha(input)+"/", nil))
	record("result-delete", alice.do("DELETE", "/task/result/"+key+"/", nil))
	record("task-delete", alice.do("DELETE", "/task/task/"+key+"/", nil))
	record("reference-delete", alice.do("DELETE", "/blob/reference/"+alice.upload([]byte("spare\n"))+"/", nil))
	spare := []byte("another spare\n")
	alice.upload(spare)
	record("blob-delete", max.do("DELETE", "/blob/blob/"+sha(spare)+"/", nil))

	// Task types (extension "types").
	runRef := alice.upload([]byte("echo $1\n"))
	typ := map[string]any{"image": "busybox:latest", "args": []string{"sh", "run.sh", "{n}"}, "pass_env": []string{"LANG"},
		"params": map[string]any{"n": map[string]any{"default": "1"}}, "files": map[string]any{"run.sh": map[string]any{"path": "run.sh", "reference": runRef}}}
	record("type-put", alice.postJSON("/type/", map[string]any{"name": "echo", "public": true, "type": typ}))
	record("types", alice.do("GET", "/type/", nil))
	record("type-get", alice.do("GET", "/type/echo/", nil))
	record("type-task", alice.postJSON("/type/echo/task/", map[string]any{"params": map[string]any{"n": "2"}}))
	record("dequeue-pass-env", node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1, "limits": map[string]any{}, "tags": []string{}}))
	record("type-delete", alice.do("DELETE", "/type/echo/", nil))

	// Images (extension "images").
	archive := []byte("an image archive\n")
	imageRef := alice.upload(archive)
	record("image-put", alice.postJSON("/image/", map[string]any{"name": "busybox", "manifest": map[string]any{
		"kind": "archive", "blobs": []any{map[string]any{"reference": imageRef, "digest": "sha256:" + sha(archive), "size": len(archive)}}}}))
	record("images", node.do("GET", "/image/", nil))
	record("image-get", node.do("GET", "/image/busybox/", nil))
	record("image-delete", alice.do("DELETE", "/image/busybox/", nil))

	// The lifecycle (extensions task_list, cancel, clone).
	first := alice.submit(simpleTask(), nil)
	alice.submit(simpleTask(), nil)
	record("task-list", alice.do("GET", "/task/list/?limit=1", nil))
	record("task-cancel", alice.do("POST", "/task/task/"+first+"/cancel/", nil))
	cancelled := alice.do("GET", "/task/result/"+first+"/", nil)
	// The message names the key bare, as Kolejka's "Task X is unknown".
	cancelled.body = bytes.ReplaceAll(cancelled.body, []byte(first), []byte("KEY1"))
	record("result-cancelled", cancelled)
	record("task-clone", alice.do("POST", "/task/task/"+first+"/clone/", nil))

	// Nodes (extension "nodes"): node3 never came, so its answer holds no
	// time of day.
	e.user("node3", server.Processors)
	record("node-drain", max.do("POST", "/node/node3/drain/", nil))
	record("nodes", e.tok("node3").do("GET", "/node/", nil))

	testenv.Golden(t, answersDir, got, *update, "answer")
}
