package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
)

// Images through the server (issue 20): a node whose image store is empty
// runs a task naming an image alice pushed with `image push`: the foreman
// fetches it from the server once, and a second task does not fetch it
// again. A task naming an image neither the node nor the server has ends
// SE, the node's log saying so.
func TestGridImageThroughServer(t *testing.T) {
	g := newGrid(t)
	g.NodeImages["a"] = t.TempDir() // nothing in it
	g.StartForeman("a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client := func(args ...string) (string, string, int) {
		t.Helper()
		return g.KolejkaClient(ctx, args...)
	}

	archive := filepath.Join(testenv.TestImage(t), "docker-save.tar")
	out, errOut, code := client("image", "push", gridtest.TestImage, archive)
	if code != 0 || strings.TrimSpace(out) != "docker.io/library/kolejka-test:latest" {
		t.Fatalf("image push: exit %d %q %s", code, out, errOut)
	}
	if out, _, code := client("image", "ls"); code != 0 || !strings.Contains(out, "docker.io/library/kolejka-test:latest") || !strings.Contains(out, "alice") {
		t.Fatalf("image ls: exit %d %q", code, out)
	}

	run := func(i int) {
		t.Helper()
		dir := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "cat /etc/os-release | head -1; echo run"], "stdout": "out.txt", "limits": {"time": "20s", "memory": "64M"}}`)
		res := filepath.Join(t.TempDir(), "result")
		if _, errOut, code := client("execute", dir, res); code != 0 {
			t.Fatalf("task %d: exit %d: %s\nnode log:\n%s", i, code, errOut, gridtest.Tail(g.Nodes["a"].Log))
		}
		data, err := os.ReadFile(filepath.Join(res, "out.txt"))
		if err != nil || !strings.HasSuffix(string(data), "run\n") {
			t.Fatalf("task %d output %q (%v)", i, data, err)
		}
	}
	run(1)
	run(2)
	fetched := gridtest.LogLines(g.Nodes["a"].Log, "image fetched from the server")
	if len(fetched) != 1 || !strings.Contains(fetched[0], "kind=oci blobs=3 cached=0") {
		t.Errorf("the image was fetched %d times, want once, as its 3 blobs (manifest, config, layer): %q", len(fetched), fetched)
	}

	// The same image under another name: its blobs are in the node's
	// cache, none is fetched again.
	if _, errOut, code := client("image", "push", "kolejka-test:again", archive); code != 0 {
		t.Fatalf("image push again: exit %d %s", code, errOut)
	}
	dir := gridtest.WriteTask(t, `{"image": "kolejka-test:again", "args": ["true"], "limits": {"time": "20s"}}`)
	if _, errOut, code := client("execute", dir, filepath.Join(t.TempDir(), "result")); code != 0 {
		t.Fatalf("task naming kolejka-test:again: exit %d: %s", code, errOut)
	}
	fetched = gridtest.LogLines(g.Nodes["a"].Log, "image fetched from the server")
	if len(fetched) != 2 || !strings.Contains(fetched[1], "cached=3") {
		t.Errorf("the second name's blobs were not all found in the cache: %q", fetched)
	}

	// An image nobody has: the usual verdict for a missing image, and a
	// log line naming it.
	dir = gridtest.WriteTask(t, `{"image": "nosuch:1", "args": ["true"], "limits": {"time": "5s"}}`)
	res := filepath.Join(t.TempDir(), "result")
	client("execute", dir, res)
	if st := resultStatus(t, res); st != "SE" {
		t.Errorf("a task naming an image nobody has: status %q, want SE", st)
	}
	if len(gridtest.LogLines(g.Nodes["a"].Log, "neither on this node nor on the server")) != 1 {
		t.Errorf("the node's log does not say the image is missing; log:\n%s", gridtest.Tail(g.Nodes["a"].Log))
	}

	// Removed from the server, the image stays in the node's cache.
	if _, errOut, code := client("image", "rm", gridtest.TestImage); code != 0 {
		t.Fatalf("image rm: exit %d %s", code, errOut)
	}
	if out, _, _ := client("image", "ls"); strings.Contains(out, "kolejka-test:latest") || !strings.Contains(out, "kolejka-test:again") {
		t.Errorf("image ls after rm: %q", out)
	}
	run(3)
}

// resultStatus is the status in the result folder's kolejka_result.json.
func resultStatus(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, spec.ResultFile))
	if err != nil {
		t.Fatalf("the result: %v", err)
	}
	res, err := spec.ParseResult(data, spec.ResultFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(res.Status)
}
