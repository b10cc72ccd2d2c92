package e2e

// The harness: binaries built once per test run, a runc image store with
// the test image, and grids of real processes — one kolejka-server on a
// loopback port over a data folder, kolejka-foreman nodes, and
// kolejka-client runs — with their logs shown when a test fails.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/worker/runc"
)

// OutputLimit is the foremen's output_limit: small, so that output_flood
// ends quickly at exactly this many bytes.
const OutputLimit = 1 << 20

func TestMain(m *testing.M) {
	runc.MaybeInit() // the benchmarks' in-process runc runtime starts its containers here
	code := m.Run()
	gridtest.Cleanup()
	os.Exit(code)
}

// bins returns the folder with every command, after checking that the
// machine can run a grid (root, cgroups, the test image).
func bins(t testing.TB) string {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.TestImage(t)
	return testenv.Binaries(t)
}

// grid is a gridtest.Grid (server, users alice, a and b, foremen) with
// this suite's helpers.
type grid struct{ *gridtest.Grid }

// newGrid starts a server with extra serve flags and makes its users.
func newGrid(t testing.TB, serverArgs ...string) *grid {
	t.Helper()
	return &grid{gridtest.NewGrid(t, bins(t), gridtest.GridOptions{ServerArgs: serverArgs, OutputLimit: OutputLimit})}
}

// pin is the taskset core list of the i-th node: its own core, as if each
// node were a machine; "" (no pinning) on a machine with too few cores or
// without taskset.
func pin(i int) string {
	if _, err := exec.LookPath("taskset"); err != nil {
		return ""
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return ""
	}
	var cores []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			cores = append(cores, c)
		}
	}
	if len(cores) < 2 || i >= len(cores) {
		return ""
	}
	return strconv.Itoa(cores[i])
}

// execute runs `kolejka-client execute` of the task folder into a new
// result folder; anything but success fails tb.
func (g *grid) execute(tb testing.TB, task string) {
	tb.Helper()
	if _, errOut, code := g.KolejkaClient(context.Background(), "execute", task, filepath.Join(tb.TempDir(), "r")); code != 0 {
		tb.Fatalf("execute %s: exit %d: %s", task, code, errOut)
	}
}

// startForeman starts node name (see gridtest.Grid.StartForeman); cores,
// if set, is the taskset list it is pinned to (its tasks then run on those
// cores only); extra adds [foreman] lines.
func (g *grid) startForeman(name, cores string, extra ...string) *gridtest.Node {
	g.T.Helper()
	var wrap []string
	if cores != "" {
		wrap = []string{"taskset", "-c", cores}
	}
	return g.StartForeman(name, wrap, extra...)
}

// result waits for a task's result and downloads it into a new folder.
func (g *grid) result(key string, within time.Duration) (string, error) {
	dir := filepath.Join(g.T.TempDir(), "result")
	_, err := g.Alice.ResultGet(context.Background(), key, dir, within)
	return dir, err
}

// processes counts live processes whose command line contains s.
func processes(s string) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(strings.ReplaceAll(string(data), "\x00", " "), s) {
			n++
		}
	}
	return n
}
