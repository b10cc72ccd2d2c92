package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
)

// issueType is issue 16's example type, verbatim, with its run.sh.
const issueType = `{"image": "kolejka-test:latest", "args": ["sh", "run.sh", "{n}", "{src}"],
 "params": {"n": {"default": "10"}, "src": {"file": true}},
 "limits": {"time": "10s", "memory": "64M"}, "stdout": "out.txt",
 "files": {"run.sh": {"path": "run.sh"}}}`

// Task types on a grid of real processes: `type put` of the issue's
// example, `execute --type` with a value and a file parameter run on a
// node with the parameters in place; a missing, unknown or misused
// parameter exits 2 with nothing submitted; and a type's pass_env lets a
// task take the node's variables that the node allows, and only those.
func TestGridTaskTypes(t *testing.T) {
	g := newGrid(t)
	// The node's environment has both variables; it allows one.
	g.StartForeman("a", []string{"env", "KJ_ALLOWED=from-the-node", "KJ_DENIED=not-for-tasks"}, "pass_env = KJ_ALLOWED, KJ_UNSET")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client := func(args ...string) (string, string, int) {
		t.Helper()
		return g.KolejkaClient(ctx, args...)
	}

	typeDir := gridtest.WriteTask(t, issueType, "run.sh", "echo \"n=$1\"; echo \"src=$2\"; cat \"$2\"\n")
	if out, errOut, code := client("type", "put", "compile", typeDir); code != 0 || strings.TrimSpace(out) != "1" {
		t.Fatalf("type put: exit %d %q %s", code, out, errOut)
	}
	if out, _, code := client("type", "ls"); code != 0 || !strings.Contains(out, `n="10" src (file)`) {
		t.Fatalf("type ls: exit %d %q", code, out)
	}

	input := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(input, []byte("the input\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	resultDir := filepath.Join(t.TempDir(), "result")
	if _, errOut, code := client("execute", "--type", "compile", "-p", "n=5", "-f", "src="+input, resultDir); code != 0 {
		t.Fatalf("execute --type: exit %d: %s", code, errOut)
	}
	out, err := os.ReadFile(filepath.Join(resultDir, "out.txt"))
	if err != nil || string(out) != "n=5\nsrc=in.txt\nthe input\n" {
		t.Fatalf("the task's output %q (%v): the parameters were not used", out, err)
	}
	// The default, when n is not given.
	resultDir = filepath.Join(t.TempDir(), "result")
	if _, errOut, code := client("execute", "--type", "compile", "-f", "src="+input, resultDir); code != 0 {
		t.Fatalf("execute --type without n: exit %d: %s", code, errOut)
	}
	if out, _ := os.ReadFile(filepath.Join(resultDir, "out.txt")); !strings.HasPrefix(string(out), "n=10\n") {
		t.Errorf("the default of n was not used: %q", out)
	}

	// Refusals: exit 2 naming the parameter; nothing reaches the queue.
	stats, err := g.Alice.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"execute", "--type", "compile", "-p", "n=5"}, `params["src"]: missing`},
		{[]string{"execute", "--type", "compile", "-p", "m=5", "-f", "src=" + input}, `params["m"]: unknown parameter`},
		{[]string{"execute", "--type", "compile", "-p", "src=in.txt"}, `params["src"]: is a file parameter`},
	} {
		_, errOut, code := client(append(c.args, filepath.Join(t.TempDir(), "result"))...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d %q, want 2 naming %s", c.args, code, errOut, c.want)
		}
	}
	if after, err := g.Alice.Stats(ctx); err != nil || after.TaskCount != stats.TaskCount {
		t.Errorf("refused submissions reached the queue: %d → %+v (%v)", stats.TaskCount, after, err)
	}

	// pass_env: the type asks for three; the node allows one it has set.
	envDir := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "limits": {"time": "10s", "memory": "64M"},
		"args": ["sh", "-c", "echo \"allowed=$KJ_ALLOWED denied=$KJ_DENIED unset=$KJ_UNSET\""], "stdout": "out.txt",
		"pass_env": ["KJ_ALLOWED", "KJ_DENIED", "KJ_UNSET"]}`)
	if _, errOut, code := client("type", "put", "envy", envDir); code != 0 {
		t.Fatalf("type put envy: exit %d %s", code, errOut)
	}
	resultDir = filepath.Join(t.TempDir(), "result")
	if _, errOut, code := client("execute", "--type", "envy", resultDir); code != 0 {
		t.Fatalf("execute --type envy: exit %d: %s", code, errOut)
	}
	if out, _ := os.ReadFile(filepath.Join(resultDir, "out.txt")); string(out) != "allowed=from-the-node denied= unset=\n" {
		t.Errorf("the task saw %q: only the variable both allow may reach it", out)
	}
}
