package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
)

// devGrid is a `kolejka-server dev` process and what its banner says.
type devGrid struct {
	t      *testing.T
	bin    string
	tmp    string // its TMPDIR: the grid's folder goes there
	p      *gridtest.Proc
	out    string // its stdout
	banner map[string]string
}

// startDevGrid starts `kolejka-server dev` with the test image and waits
// for its banner.
func startDevGrid(t *testing.T) *devGrid {
	t.Helper()
	bin := bins(t)
	g := &devGrid{t: t, bin: bin, tmp: t.TempDir(), banner: map[string]string{}}
	g.out = filepath.Join(t.TempDir(), "stdout")
	logFile := filepath.Join(t.TempDir(), "log")
	out, err := os.Create(g.out)
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "kolejka-server"), "dev", "--testimage", testenv.TestImage(t))
	cmd.Stdout, cmd.Stderr = out, log
	cmd.Env = append(gridtest.ChildEnv(), "TMPDIR="+g.tmp)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out.Close()
	log.Close()
	// A Proc over the log, for Logged and Wait.
	g.p = gridtest.Adopt(cmd, "kolejka-server dev", logFile)
	t.Cleanup(func() {
		if g.p.Running() {
			g.p.Kill9()
		}
		g.sweep()
		if t.Failed() {
			data, _ := os.ReadFile(g.out)
			t.Logf("stdout:\n%s\nlog:\n%s", data, gridtest.Tail(logFile))
		}
	})
	gridtest.WaitFor(t, "the grid's banner", 2*time.Minute, func() bool {
		if !g.p.Running() {
			t.Fatalf("kolejka-server dev ended before its banner")
		}
		data, _ := os.ReadFile(g.out)
		return strings.Contains(string(data), "\nclient:")
	})
	data, _ := os.ReadFile(g.out)
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && !strings.Contains(k, " ") {
			g.banner[k] = strings.TrimSpace(v)
		}
	}
	for _, k := range []string{"server", "ui", "user", "token", "data", "cgroups", "client"} {
		if g.banner[k] == "" {
			t.Fatalf("the banner has no %q line:\n%s", k, data)
		}
	}
	if want := strings.TrimSuffix(g.banner["server"], "/") + "/ui/"; g.banner["ui"] != want {
		t.Errorf("ui: %q, want %q", g.banner["ui"], want)
	}
	if !strings.HasPrefix(g.banner["data"], g.tmp+"/") {
		t.Fatalf("data folder %q not in the grid's TMPDIR %s", g.banner["data"], g.tmp)
	}
	g.banner["data"], _, _ = strings.Cut(g.banner["data"], " ")
	g.banner["cgroups"], _, _ = strings.Cut(g.banner["cgroups"], " ")
	return g
}

// client runs kolejka-client with the grid's server and the token of its
// user, as the banner's client line sets them.
func (g *devGrid) client(ctx context.Context, args ...string) (string, string, int) {
	env := strings.Fields(strings.TrimPrefix(g.banner["client"], "export "))
	if len(env) != 2 || !strings.HasPrefix(env[0], "KOLEJKA_SERVER=") || env[1] != "KOLEJKA_TOKEN="+g.banner["token"] {
		g.t.Fatalf("client line %q: want export KOLEJKA_SERVER=… KOLEJKA_TOKEN=<the token>", g.banner["client"])
	}
	cmd := exec.CommandContext(ctx, filepath.Join(g.bin, "kolejka-client"), args...)
	cmd.Env = append(gridtest.ChildEnv(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		g.t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// cgroupDirs are the folders of the node's cgroup root now, in every
// hierarchy.
func (g *devGrid) cgroupDirs() []string {
	a, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", g.banner["cgroups"]))
	b, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", g.banner["cgroups"]))
	return append(a, b...)
}

// interrupt sends SIGINT and waits for the end: it must exit 0 in time.
func (g *devGrid) interrupt(within time.Duration) {
	g.t.Helper()
	g.p.Signal(syscall.SIGINT)
	code, ended := g.p.Wait(within)
	if !ended {
		g.t.Fatalf("kolejka-server dev still runs %v after SIGINT", within)
	}
	if code != 0 {
		g.t.Fatalf("kolejka-server dev exited %d after SIGINT, want 0", code)
	}
}

// sweep removes what a grid killed or failing to stop left, so that a
// failed test leaves no container behind on the machine: its node and the
// processes in its cgroups are killed, its mounts detached, its cgroups removed (its
// folder goes with the test's TempDir).
func (g *devGrid) sweep() {
	if g.banner["cgroups"] == "" {
		return
	}
	// Its node first (a process group of its own, outside the cgroups):
	// its command line names the grid's folder.
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); strings.Contains(string(cmdline), g.banner["data"]+"/") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, root := range g.cgroupDirs() {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Name() == "cgroup.procs" {
				data, _ := os.ReadFile(p)
				for _, f := range strings.Fields(string(data)) {
					if pid, err := strconv.Atoi(f); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			return nil
		})
	}
	if mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(g.banner["data"])); err == nil {
		slices.SortFunc(mounts, func(a, b *mountinfo.Info) int { return len(b.Mountpoint) - len(a.Mountpoint) })
		for _, m := range mounts {
			_ = syscall.Unmount(m.Mountpoint, syscall.MNT_DETACH)
		}
	}
	gridtest.WaitFor(g.t, "the grid's killed processes to leave their cgroups", 10*time.Second, func() bool {
		for _, root := range g.cgroupDirs() {
			var dirs []string
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				_ = syscall.Rmdir(dirs[i])
			}
		}
		return len(g.cgroupDirs()) == 0
	})
}

// assertNothingLeft checks that the grid's folder, its cgroups and its
// mounts are gone, and its TMPDIR is as empty as it began.
func (g *devGrid) assertNothingLeft() {
	g.t.Helper()
	if _, err := os.Stat(g.banner["data"]); !os.IsNotExist(err) {
		g.t.Errorf("the grid's folder %s is left (%v)", g.banner["data"], err)
	}
	if entries, _ := os.ReadDir(g.tmp); len(entries) > 0 {
		g.t.Errorf("left in the grid's TMPDIR: %v", entries)
	}
	if dirs := g.cgroupDirs(); len(dirs) > 0 {
		g.t.Errorf("the node's cgroups are left: %v", dirs)
	}
	if mounts, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(g.banner["data"])); len(mounts) > 0 {
		g.t.Errorf("%d mounts left below %s, e.g. %s", len(mounts), g.banner["data"], mounts[0].Mountpoint)
	}
}

// `kolejka-server dev` is a whole grid: testdata/tasks/hello, run through
// kolejka-client with the banner's client line, comes back OK from its
// node, in the node's own cgroup; SIGINT stops it all, exit 0, and
// nothing of it is left: folder, cgroups, mounts.
func TestDevGrid(t *testing.T) {
	g := startDevGrid(t)
	if _, err := os.Stat(filepath.Join(g.banner["data"], "server")); err != nil {
		t.Errorf("the server's data folder: %v", err)
	}
	res := filepath.Join(t.TempDir(), "result")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, errOut, code := g.client(ctx, "execute", filepath.Join(testenv.RepoRoot(t), "testdata", "tasks", "hello"), res)
	if code != 0 {
		t.Fatalf("kolejka-client execute: exit %d: %s", code, errOut)
	}
	r, err := spec.LoadResult(res)
	if err != nil {
		t.Fatal(err)
	}
	stdout, _ := os.ReadFile(filepath.Join(res, "stdout"))
	if r.Status != spec.StatusOK || !strings.HasPrefix(string(stdout), "Linux ") {
		t.Errorf("hello: status %s, stdout %q; want OK and uname's line", r.Status, stdout)
	}
	// The printed password signs the user in: task ls lists the task
	// just run (a header and its line).
	user, password, ok := strings.Cut(g.banner["user"], ", password ")
	name, _, _ := strings.Cut(user, " ")
	if !ok || name == "" || password == "" {
		t.Fatalf("user line %q: want NAME (roles), password PASSWORD", g.banner["user"])
	}
	out, errOut, code := gridtest.RunCommand(ctx, filepath.Join(g.bin, "kolejka-client"), "--server", g.banner["server"],
		"--username", name, "--password", password, "task", "ls")
	if code != 0 || strings.Count(out, "\n") < 2 {
		t.Errorf("task ls as %s with the printed password: exit %d, %q %s", name, code, out, errOut)
	}
	// The task ran below the node's own cgroup: its removal at the end is
	// what shows that no task process is left.
	if len(g.cgroupDirs()) == 0 {
		t.Errorf("no cgroup %s after a task ran", g.banner["cgroups"])
	}
	g.interrupt(30 * time.Second)
	g.assertNothingLeft()
}

// Ctrl-C drains the node; a second one stops its running task at once:
// the grid still exits 0 and leaves nothing, the task's processes
// included.
func TestDevGridSecondInterrupt(t *testing.T) {
	g := startDevGrid(t)
	// A command line no other test's task has, even one of an earlier
	// run of this test.
	marker := fmt.Sprintf("sleep 1234.%d", time.Now().UnixNano()%1e6)
	task := gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "`+marker+`"], "limits": {"time": "60s"}}`)
	out, errOut, code := g.client(context.Background(), "task", "put", task)
	if code != 0 {
		t.Fatalf("task put: exit %d: %s", code, errOut)
	}
	key := strings.TrimSpace(out)
	gridtest.WaitFor(t, "the task running", time.Minute, func() bool {
		return g.assignee(key) == "node" && processes(marker) > 0
	})
	g.p.Signal(syscall.SIGINT)
	if !g.p.Logged("draining", 20*time.Second) {
		t.Fatal("the node did not start draining")
	}
	if !g.p.Running() {
		t.Fatal("the grid ended without waiting for its running task")
	}
	start := time.Now()
	g.interrupt(30 * time.Second)
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the second SIGINT took %v to stop the grid", d)
	}
	if n := processes(marker); n > 0 {
		t.Errorf("%d processes of the task left", n)
	}
	g.assertNothingLeft()
}

// assignee is the node a task is assigned to ("" none), as the server
// tells the grid's user.
func (g *devGrid) assignee(key string) string {
	req, _ := http.NewRequest(http.MethodGet, g.banner["server"]+"task/task/"+key+"/", nil)
	req.Header.Set("Authorization", "Bearer "+g.banner["token"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		Assignee string `json:"assignee"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		g.t.Fatalf("task %s: %v", key, err)
	}
	return m.Assignee
}
