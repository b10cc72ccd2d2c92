package hardening_test

// The harness: the binaries of this tree, a runc image store and the Docker
// engine's copy of the test image, processes with their logs, grids of
// real processes (kolejka-server, kolejka-foreman nodes), and the probes
// that prove "nothing changed" and "nothing left": folder digests, the
// server's rows and blob files, scans of /proc for a run's processes.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/moby/sys/mountinfo"

	kclient "github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker/docker"
	"github.com/kolejka-go/kolejka/worker/image"
	"github.com/kolejka-go/kolejka/worker/runc"
)

// outputLimit is the output cap of the workers and foremen here: small, so
// that an output flood ends at once, at exactly this many bytes.
const outputLimit = 1 << 20

// markEnv is the variable every task of the suite carries in its
// environment, set to a value unique to the run: the task's processes, and
// whatever they start, carry it, so a scan of /proc finds any of them left.
const markEnv = "KOLEJKA_HARDENING_MARK"

var (
	dockerOnce sync.Once
	dockerErr  error
)

// bins returns the folder with every command, after checking that the
// machine can run them (root, cgroups, the test image).
func bins(t testing.TB) string {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.TestImage(t)
	return testenv.Binaries(t)
}

// runcRuntime is a runc runtime over the shared store, keeping its
// container state in stateDir (which the health checks look into).
func runcRuntime(t testing.TB, stateDir string) *runc.Runtime {
	t.Helper()
	testenv.RequireRoot(t)
	if !runc.SeccompBuilt {
		testenv.Missing(t, "the runc runtime's seccomp filter: test with -tags seccomp (make sets it)")
	}
	st, err := image.Open(gridtest.Images(t))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := runc.New(stateDir, st)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// dockerRuntime connects to the engine and loads the test image into it
// (a `docker save` tar: no registry is reachable), once per run.
func dockerRuntime(t testing.TB) *docker.Runtime {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireDocker(t)
	img := testenv.TestImage(t)
	rt, err := docker.New(docker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	dockerOnce.Do(func() {
		f, err := os.Open(filepath.Join(img, "docker-save.tar"))
		if err != nil {
			dockerErr = err
			return
		}
		defer f.Close()
		dockerErr = docker.LoadArchive(context.Background(), rt.Client(), f)
	})
	if dockerErr != nil {
		t.Fatalf("loading the test image into Docker: %v", dockerErr)
	}
	return rt
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// grid is a gridtest.Grid (server, users alice, a and b, foremen) with
// this suite's helpers.
type grid struct{ *gridtest.Grid }

// newGrid makes the users and starts a server on addr ("" picks a loopback
// port) with extra serve flags; data, if not "", is its data folder.
func newGrid(t testing.TB, addr, data string, serverArgs ...string) *grid {
	t.Helper()
	return &grid{gridtest.NewGrid(t, bins(t), gridtest.GridOptions{Addr: addr, Data: data, ServerArgs: serverArgs, OutputLimit: outputLimit})}
}

// startForeman starts node name (see gridtest.Grid.StartForeman) with only
// its own tag; wrap, if given, goes in front of the command (e.g. nsenter
// into a network namespace).
func (g *grid) startForeman(name string, wrap ...string) *gridtest.Node {
	g.T.Helper()
	return g.StartForeman(name, wrap, "auto_tags = no")
}

// assignee is the node holding the task now ("" when none).
func (g *grid) assignee(key string) string {
	a, _ := g.TaskInfo(key)["assignee"].(string)
	return a
}

// result waits for a task's result and downloads it into a new folder.
func (g *grid) result(key string, within time.Duration) (string, *spec.Result, error) {
	dir := filepath.Join(g.T.TempDir(), "result")
	res, err := g.Alice.ResultGet(context.Background(), key, dir, within)
	return dir, res, err
}

// waitResult is result for servers whose max_wait is shorter than d: it
// asks again until d has passed.
func (g *grid) waitResult(key string, d time.Duration) (string, *spec.Result, error) {
	deadline := time.Now().Add(d)
	for {
		dir, res, err := g.result(key, time.Until(deadline))
		if err == nil || !errors.Is(err, kclient.ErrNotFound) || time.Now().After(deadline) {
			return dir, res, err
		}
	}
}

// executeNext runs a fresh trivial task through the grid with
// kolejka-client execute: the check that the grid works after a fault.
func (g *grid) executeNext(t testing.TB, within time.Duration) (*spec.Result, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	mark := randomHex(8)
	dir := gridtest.WriteTask(t, fmt.Sprintf(`{"image": %q, "args": ["sh", "-c", "echo next task"], "limits": {"time": "20s"}, "stdout": "out",
		"environment": {%q: %q}}`, gridtest.TestImage, markEnv, mark))
	resultDir := filepath.Join(t.TempDir(), "result")
	began := time.Now()
	_, errOut, code := g.KolejkaClient(ctx, "execute", dir, resultDir)
	took := time.Since(began)
	if code != 0 {
		return nil, took, fmt.Errorf("kolejka-client execute: exit %d: %s", code, strings.TrimSpace(errOut))
	}
	res, err := spec.LoadResult(resultDir)
	if err != nil {
		return nil, took, err
	}
	if out, _ := os.ReadFile(filepath.Join(resultDir, "out")); res.Status != spec.StatusOK || string(out) != "next task\n" {
		return res, took, fmt.Errorf("the next task: %s, out %q", res.Status, out)
	}
	return res, took, nil
}

// ---- task folders ----

// markedCopy copies the task folder src into a new folder, adding the run's
// mark to the task's environment.
func markedCopy(t testing.TB, src, mark string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dst, spec.TaskFile))
	if err != nil {
		t.Fatal(err)
	}
	var task map[string]any
	if err := json.Unmarshal(data, &task); err != nil {
		t.Fatal(err)
	}
	env, _ := task["environment"].(map[string]any)
	if env == nil {
		env = map[string]any{}
	}
	env[markEnv] = mark
	task["environment"] = env
	data, _ = json.MarshalIndent(task, "", "  ")
	if err := os.WriteFile(filepath.Join(dst, spec.TaskFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// treeDigest sums a folder tree: every entry's path, type, mode, size and
// content (or link target). Equal digests: nothing in it changed.
func treeDigest(t testing.TB, root string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%v\x00%d\x00%d\x00", rel, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			io.WriteString(h, target)
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		io.WriteString(h, "\n")
		return nil
	})
	if err != nil {
		t.Fatalf("digest of %s: %v", root, err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// ---- the server's state, from its data folder ----

// serverState is what "nothing changed" compares on a server: every row of
// every table, the blob files in place and the upload temp files.
type serverState struct {
	digest string            // of every row of every table
	rows   map[string]int    // per table
	tables map[string]string // each table's digest: what names a change
	blobs  []string          // blob files in place (their hashes)
	temp   []string          // upload temp files
}

func (s serverState) String() string {
	var parts []string
	for _, tb := range []string{"tasks", "results", "refs", "blobs", "sessions"} {
		parts = append(parts, fmt.Sprintf("%s=%d", tb, s.rows[tb]))
	}
	return fmt.Sprintf("db %s (%s), %d blob files, %d temp files", s.digest, strings.Join(parts, " "), len(s.blobs), len(s.temp))
}

// changed names the tables whose rows differ between s and o.
func (s serverState) changed(o serverState) []string {
	var out []string
	for name, d := range s.tables {
		if o.tables[name] != d {
			out = append(out, name)
		}
	}
	for name := range o.tables {
		if _, ok := s.tables[name]; !ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (s serverState) equal(o serverState) bool {
	return s.digest == o.digest && strings.Join(s.blobs, ",") == strings.Join(o.blobs, ",") && strings.Join(s.temp, ",") == strings.Join(o.temp, ",")
}

// stateOf reads a server's data folder (read-only, beside the server).
func stateOf(t testing.TB, data string) serverState {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(data, server.DatabaseFile)+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := serverState{rows: map[string]int{}, tables: map[string]string{}}
	tables, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		t.Fatalf("reading the server's tables: %v", err)
	}
	var names []string
	for tables.Next() {
		var n string
		tables.Scan(&n)
		names = append(names, n)
	}
	tables.Close()
	h := sha256.New()
	for _, name := range names {
		query := `SELECT * FROM "` + name + `"`
		if name == "nodes" {
			// What a node's request tells of the node (that it exists,
			// when it was last heard, what it had free) is noted for every
			// request it makes, refused or not; which nodes are drained is
			// state a request may change.
			query = `SELECT user_id FROM nodes WHERE drained = 1`
		}
		rows, err := db.Query(query)
		if err != nil {
			t.Fatalf("reading %s: %v", name, err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("%q", vals))
		}
		rows.Close()
		sort.Strings(lines)
		st.rows[name] = len(lines)
		fmt.Fprintf(h, "%s\n%s\n", name, strings.Join(lines, "\n"))
		sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
		st.tables[name] = hex.EncodeToString(sum[:8])
	}
	st.digest = hex.EncodeToString(h.Sum(nil))[:16]
	root := filepath.Join(data, server.BlobsDir)
	// A part it cannot read would hide a change: the test stops there.
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // not made yet, or removed by the server meanwhile
		}
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "tmp" {
			entries, _ := os.ReadDir(p)
			for _, e := range entries {
				st.temp = append(st.temp, e.Name())
			}
			return filepath.SkipDir
		}
		if !d.IsDir() {
			st.blobs = append(st.blobs, d.Name())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the server's blobs: %v", err)
	}
	sort.Strings(st.blobs)
	return st
}

// ---- what a run may leave behind ----

// markedProcs lists live processes whose environment carries the mark.
func markedProcs(mark string) []int {
	needle := []byte(markEnv + "=" + mark + "\x00")
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(append(env, 0), needle) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cgroupProcs lists live processes in a cgroup whose path contains s, in
// any hierarchy.
func cgroupProcs(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err == nil && strings.Contains(string(data), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cgroupDirs lists the folders named path in every mounted cgroup
// hierarchy that exist.
func cgroupDirs(path string) []string {
	var out []string
	mounts, _ := mountinfo.GetMounts(func(i *mountinfo.Info) (bool, bool) {
		return i.FSType != "cgroup" && i.FSType != "cgroup2", false
	})
	for _, m := range mounts {
		d := filepath.Join(m.Mountpoint, path)
		if _, err := os.Stat(d); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// cgroupsBelow lists the cgroup folders below path in every hierarchy.
func cgroupsBelow(path string) []string {
	var out []string
	for _, d := range cgroupDirs(path) {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() && p != d {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// mountsBelow counts the mounts at or below dir.
func mountsBelow(dir string) int {
	mounts, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	return len(mounts)
}

// entries lists a folder's names (none if it is missing).
func entries(dir string) []string {
	list, _ := os.ReadDir(dir)
	var out []string
	for _, e := range list {
		out = append(out, e.Name())
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// short quotes a message for the table, cut to n bytes.
func short(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strconv.Quote(s)
}
