package hardening_test

// The suite's entry: TestMain dispatches the helper processes the tests
// start (this binary re-executed), runs the tests, and writes the table
// when KOLEJKA_HARDENING_TABLE names a file. caseOf ties one test to one row.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
	"github.com/kolejka-go/kolejka/tests/hardening"
	"github.com/kolejka-go/kolejka/worker/runc"
)

// tableEnv names the file the run writes its table into (docs/hardening.md
// under `make hardening`).
const tableEnv = "KOLEJKA_HARDENING_TABLE"

// regenerate is how the document is made again, as its header says.
const regenerate = "make hardening    # as root, with Docker; it runs:\n" +
	"KOLEJKA_HARDENING_TABLE=docs/hardening.md GOFLAGS=-tags=seccomp,urfave_cli_no_docs go test -count=1 -v -timeout 30m ./hardening/"

// suite is this run's table.
var suite hardening.Table

func TestMain(m *testing.M) {
	runc.MaybeInit() // the in-process runc runtime's containers start here
	testenv.RunHelpers(testenv.Helpers{"caller": runCaller})
	start := time.Now()
	code := m.Run()
	if path := os.Getenv(tableEnv); path != "" {
		if err := suite.WriteFile(path, runHeader(time.Since(start))); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			code = 1
		} else {
			fmt.Fprintln(os.Stderr, "hardening table written to", path)
		}
		if err := suite.Complete(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			code = 1
		}
	}
	gridtest.Cleanup()
	pgtest.Stop()
	s3test.Stop()
	os.Exit(code)
}

// caseOf registers the row t checks and records, when t ends, whether it
// passed. Every assertion of t (and of its subtests) decides the row.
func caseOf(t *testing.T, c hardening.Category, id, name, expect string) *hardening.Row {
	t.Helper()
	r, err := suite.Add(c, id, name, expect, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	t.Cleanup(func() {
		st := hardening.Pass
		switch {
		case t.Skipped():
			st = hardening.Skip
		case t.Failed():
			st = hardening.Fail
		}
		r.Finish(st, time.Since(start))
	})
	return r
}

// runHeader describes this run for the document.
func runHeader(took time.Duration) hardening.Header {
	h := hardening.Header{Command: regenerate, Date: time.Now(), Duration: took, Strict: testenv.Strict()}
	root := repoRoot()
	if out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		h.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
			h.Commit += " with uncommitted changes"
		}
	} else {
		h.Commit = "unknown (not a git checkout)"
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	mode := "no cgroups"
	if hier, err := cgroup.Host(); err == nil {
		mode = map[cgroup.Mode]string{cgroup.Legacy: "cgroup v1", cgroup.Unified: "cgroup v2"}[hier.Mode()]
	}
	h.Host = fmt.Sprintf("Linux %s, %s, %d cores, %s", unix.ByteSliceToString(uts.Release[:]), mode, runtime.NumCPU(), runtime.Version())
	return h
}

// repoRoot is the module's root (go test runs in hardening/).
func repoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}
