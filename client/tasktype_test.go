package client_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/spec"
)

// typeDoc is issue 16's example type, with a file whose name is templated
// and a pass_env list.
const typeDoc = `{"image": "kolejka-test:latest", "args": ["sh", "run.sh", "{n}", "{src}"],
 "params": {"n": {"default": "10"}, "src": {"file": true}}, "pass_env": ["LANG"],
 "limits": {"time": "10s", "memory": "64M"}, "stdout": "out.txt",
 "files": {"run.sh": {"path": "run.sh"}, "data-{n}.txt": "lib/d.txt"}}`

// uploads counts the requests that make references.
func uploads(n *atomic.Int64) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/blob/") {
				n.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	}
}

func TestTypePutGetRoundTrip(t *testing.T) {
	g := startServer(t, nil)
	alice, bob := g.as(t, "alice"), g.as(t, "bob")
	ctx := context.Background()
	dir := writeTask(t, typeDoc, map[string]string{"run.sh": "cat \"$2\"\n", "lib/d.txt": "data\n"})
	for want := 1; want <= 2; want++ {
		v, err := alice.TypePut(ctx, "compile", dir, want == 2)
		if err != nil || v != want {
			t.Fatalf("put %d: %d %v", want, v, err)
		}
	}
	types, err := bob.Types(ctx)
	if err != nil || len(types) != 1 || types[0].Name != "compile" || types[0].Version != 2 || !types[0].Public ||
		!reflect.DeepEqual(types[0].PassEnv, []string{"LANG"}) || !types[0].Params["src"].File {
		t.Fatalf("bob's listing %+v %v", types, err)
	}
	// Bob downloads the shared type and puts it as his own: the same type.
	got := filepath.Join(t.TempDir(), "type")
	if _, err := bob.TypeGet(ctx, "compile", got); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"run.sh": "cat \"$2\"\n", "lib/d.txt": "data\n"} {
		if data, _ := os.ReadFile(filepath.Join(got, path)); string(data) != want {
			t.Errorf("%s: %q", path, data)
		}
	}
	local, _ := os.ReadFile(filepath.Join(got, spec.TaskFile))
	if strings.Contains(string(local), "reference") {
		t.Errorf("the downloaded type names references (another user could not put it): %s", local)
	}
	if v, err := bob.TypePut(ctx, "my-compile", got, false); err != nil || v != 1 {
		t.Fatalf("bob's put of the downloaded type: %d %v", v, err)
	}
	a, _ := alice.Type(ctx, "compile", 0)
	b, err := bob.Type(ctx, "my-compile", 0)
	if err != nil || !reflect.DeepEqual(a.Info.Params, b.Info.Params) || !reflect.DeepEqual(a.Info.PassEnv, b.Info.PassEnv) {
		t.Fatalf("round trip: %+v vs %+v (%v)", a.Info, b.Info, err)
	}
	at, _ := spec.ParseTaskExtended(a.Type, "a", "params", "pass_env")
	bt, _ := spec.ParseTaskExtended(b.Type, "b", "params", "pass_env")
	if !reflect.DeepEqual(at.Args, bt.Args) || at.Files["data-{n}.txt"].Path != bt.Files["data-{n}.txt"].Path {
		t.Errorf("round trip changed the type: %s\nvs %s", a.Type, b.Type)
	}
	// A type folder that is not a type is refused before any upload.
	bad := writeTask(t, `{"image": "i", "args": ["{x}"], "files": {"f": null}}`, map[string]string{"f": "x"})
	if _, err := alice.TypePut(ctx, "bad", bad, false); err == nil || !strings.Contains(err.Error(), "{x}") {
		t.Errorf("a bad type: %v", err)
	}
	var se *spec.Error
	if _, err := alice.TypePut(ctx, "no/name", dir, false); !errors.As(err, &se) {
		t.Errorf("a bad name: %v", err)
	}
	var refused *client.ServerError
	if _, err := bob.TypePut(ctx, "compile", dir, false); !errors.As(err, &refused) || !strings.Contains(err.Error(), "belongs to user alice") {
		t.Errorf("bob's put of alice's name: %v", err)
	}
	if err := bob.TypeRemove(ctx, "compile"); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("bob removing alice's type: %v", err)
	}
	if err := alice.TypeRemove(ctx, "compile"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Type(ctx, "compile", 0); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("removed: %v", err)
	}
}

// A task made from a type is rendered by the client first: a wrong
// parameter is refused by name before anything is uploaded; a right one
// runs through Execute as a folder would.
func TestTypeTaskAndExecute(t *testing.T) {
	var posts atomic.Int64
	g := startServer(t, uploads(&posts))
	alice := g.as(t, "alice")
	ctx := context.Background()
	dir := writeTask(t, `{"image": "busybox", "args": ["cat", "{in}"], "params": {"in": {"file": true}, "x": {"default": "1"}},
		"pass_env": ["LANG"], "stdout": "stdout"}`, nil)
	if _, err := alice.TypePut(ctx, "cat", dir, false); err != nil {
		t.Fatal(err)
	}
	input := filepath.Join(t.TempDir(), "in.txt")
	os.WriteFile(input, []byte("hello type\n"), 0o644)
	before := posts.Load()
	for _, c := range []struct {
		tt   client.TypeTask
		want string
	}{
		{client.TypeTask{Type: "cat"}, `params["in"]: missing`},
		{client.TypeTask{Type: "cat", Params: map[string]string{"y": "1"}, Files: map[string]string{"in": input}}, `params["y"]: unknown parameter`},
		{client.TypeTask{Type: "cat", Params: map[string]string{"in": "in.txt"}}, `params["in"]: is a file parameter`},
		{client.TypeTask{Type: "cat", Files: map[string]string{"in": input + ".gone"}}, `params["in"]: ` + input + ".gone is not a readable file"},
	} {
		_, err := alice.TypeTaskPut(ctx, c.tt)
		var se *spec.Error
		if !errors.As(err, &se) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want a *spec.Error naming %s", c.tt, err, c.want)
		}
	}
	if _, err := alice.TypeTaskPut(ctx, client.TypeTask{Type: "nope"}); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("an unknown type: %v", err)
	}
	if n := posts.Load() - before; n != 0 {
		t.Errorf("refused type tasks uploaded %d times", n)
	}
	st, _ := g.as(t, "node").Stats(ctx)
	if st.TaskCount != 0 {
		t.Fatalf("refused type tasks were submitted: %+v", st)
	}

	// The node sees the type's pass_env beside the task.
	mem := int64(32 << 20)
	stored, err := alice.TypeTaskPut(ctx, client.TypeTask{Type: "cat", Files: map[string]string{"in": input}, Caps: spec.Limits{Memory: &mem}})
	if err != nil {
		t.Fatal(err)
	}
	if stored.Args[1] != "in.txt" || stored.Files["in.txt"].Reference == "" || *stored.Limits.Memory != mem {
		t.Fatalf("stored %+v", stored)
	}
	n := g.as(t, "node")
	d, err := n.DequeueTasks(ctx, client.DequeueRequest{Concurrency: 1})
	if err != nil || len(d.Tasks) != 1 || !reflect.DeepEqual(d.PassEnv[stored.ID], []string{"LANG"}) {
		t.Fatalf("dequeue: %+v %v", d, err)
	}

	// Execute through the type: the same waiting and download as a folder.
	go node(t, g, nil)
	resultDir := filepath.Join(t.TempDir(), "result")
	r, err := alice.Execute(ctx, "", resultDir, client.ExecuteOptions{Interval: 50 * time.Millisecond,
		Type: &client.TypeTask{Type: "cat", Files: map[string]string{"in": input}}})
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(resultDir, "stdout")); r.Status != spec.StatusOK || string(data) != "echo: hello type\n" {
		t.Fatalf("result %s %q", r.Status, data)
	}
}
