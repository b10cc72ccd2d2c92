package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runStderr is run with the process's stderr (where cliexit prints the
// error) caught too.
func runStderr(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stderr
	os.Stderr = f
	code, out, errOut := run(t, nil, args...)
	os.Stderr = saved
	printed, _ := os.ReadFile(f.Name())
	return code, out, errOut + string(printed)
}

// `kolejka-server queue`: add, ls (table and JSON), pause, resume, rm; bad
// input exits 2 naming the option and changes nothing.
func TestQueueCommands(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KOLEJKA_SERVER_CONFIG_FILE", filepath.Join(dir, "none.conf"))
	os.WriteFile(filepath.Join(dir, "none.conf"), nil, 0o644)
	data := filepath.Join(dir, "data")
	cmd := func(want int, args ...string) (string, string) {
		t.Helper()
		code, out, errOut := runStderr(t, append([]string{"--data", data}, args...)...)
		if code != want {
			t.Fatalf("%v: exit %d, want %d; stdout %q stderr %q", args, code, want, out, errOut)
		}
		return out, errOut
	}
	ls := func() []queueJSON {
		t.Helper()
		out, _ := cmd(0, "queue", "ls", "--json")
		var qs []queueJSON
		if err := json.Unmarshal([]byte(out), &qs); err != nil {
			t.Fatalf("queue ls --json: %v: %q", err, out)
		}
		return qs
	}
	cmd(0, "adduser", "--clients", "alice", "pw")
	cmd(0, "adduser", "--processors", "node", "pw")
	cmd(0, "queue", "add", "judge", "--private", "--submitters", "alice", "--nodes", "node", "--priority", "5")
	cmd(0, "queue", "add", "batch")

	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"queue", "add", "../x"}, `NAME: "../x" is not a name`},
		{[]string{"queue", "add", strings.Repeat("q", 100)}, "NAME: "},
		{[]string{"queue", "add", "judge"}, `"judge"`},
		{[]string{"queue", "add", "p", "--submitters", "alice"}, "--submitters: only a private queue"},
		{[]string{"queue", "add", "p", "--private", "--submitters", "alice,,x"}, "--submitters: user name 2 is empty"},
		{[]string{"queue", "add", "p", "--private", "--submitters", "mallory"}, `--submitters: no user named "mallory"`},
		{[]string{"queue", "add", "p", "--private", "--nodes", "alice"}, `--nodes: user "alice" is not a processor`},
		{[]string{"queue", "add", "p", "--priority", "high"}, "priority"},
		{[]string{"queue", "add"}, "need NAME"},
		{[]string{"queue", "pause", "nosuch"}, `NAME: no queue named "nosuch"`},
		{[]string{"queue", "resume", "nosuch"}, `NAME: no queue named "nosuch"`},
		{[]string{"queue", "rm", "nosuch"}, `NAME: no queue named "nosuch"`},
		{[]string{"queue", "rm", "default"}, "the default queue cannot be removed"},
	} {
		_, errOut := cmd(2, c.args...)
		if !strings.Contains(errOut, c.says) {
			t.Errorf("%v: %q does not say %q", c.args, errOut, c.says)
		}
	}
	qs := ls()
	if len(qs) != 3 || qs[0].Name != "batch" || qs[1].Name != "default" || qs[2].Name != "judge" {
		t.Fatalf("queues after refusals: %+v", qs)
	}
	if j := qs[2]; !j.Private || j.Priority != 5 || j.Submitters[0] != "alice" || j.Nodes[0] != "node" || j.Paused {
		t.Errorf("judge: %+v", j)
	}

	cmd(0, "queue", "pause", "judge")
	if !ls()[2].Paused {
		t.Error("judge not paused")
	}
	out, _ := cmd(0, "queue", "ls")
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "OLDEST") || !strings.Contains(out, "judge") {
		t.Errorf("queue ls: %q", out)
	}
	cmd(0, "queue", "resume", "judge")
	if ls()[2].Paused {
		t.Error("judge still paused")
	}
	cmd(0, "queue", "rm", "batch")
	if qs := ls(); len(qs) != 2 {
		t.Errorf("after rm: %+v", qs)
	}
}
