// Package testenv gates tests on what the machine offers (root, cgroups,
// the test image, a Docker engine). Where something is missing a test
// skips with the reason; under KOLEJKA_REQUIRE_PRIVILEGED=1, as CI runs,
// the same test fails instead, so nothing CI should run is skipped there.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Strict reports whether missing prerequisites fail tests (CI).
func Strict() bool { return os.Getenv("KOLEJKA_REQUIRE_PRIVILEGED") == "1" }

// Missing skips t, or fails it in strict mode.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf("required by KOLEJKA_REQUIRE_PRIVILEGED=1 but missing: "+format, args...)
	}
	t.Skipf("skipped: "+format, args...)
}

// RequireRootUser needs uid 0 and nothing more (file owners, chroot).
func RequireRootUser(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root")
	}
}

// RequireRoot needs uid 0 and a cgroup file system (containers, cgroups,
// mounts).
func RequireRoot(t testing.TB) {
	t.Helper()
	RequireRootUser(t)
	if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
		Missing(t, "needs a cgroup file system at /sys/fs/cgroup")
	}
}

// RepoRoot is the module's root folder.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// TestImage returns the folder made by `make testimage` (rootfs/,
// rootfs.tar, docker-save.tar, oci/): $KOLEJKA_TESTIMAGE, else build/testimage.
func TestImage(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("KOLEJKA_TESTIMAGE")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "build", "testimage")
	}
	if _, err := os.Stat(filepath.Join(dir, "rootfs.tar")); err != nil {
		Missing(t, "the test image %s (run `make testimage`)", dir)
	}
	return dir
}

var (
	initOnce sync.Once
	initPath string
	initErr  error
)

// InitBinary returns a static kolejka-init: $KOLEJKA_BIN/kolejka-init if
// the Makefile built it, else one built once per test binary.
func InitBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("KOLEJKA_BIN"); bin != "" {
		p := filepath.Join(bin, "kolejka-init")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	root := RepoRoot(t)
	initOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kolejka-init-")
		if err != nil {
			initErr = err
			return
		}
		initPath = filepath.Join(dir, "kolejka-init")
		cmd := exec.Command("go", "build", "-o", initPath, "./cmd/kolejka-init")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			initErr = &buildError{out: string(out), err: err}
		}
	})
	if initErr != nil {
		t.Fatalf("building kolejka-init: %v", initErr)
	}
	return initPath
}

// Commands are the commands of this tree, as `make build` makes them.
var Commands = []string{"kolejka-server", "kolejka-client", "kolejka-foreman", "kolejka-worker", "kolejka-runc-init", "kolejka-observer", "kolejka-init"}

// staticCommands are the commands built static, as `make build` builds
// them: they run inside task containers whatever their image.
var staticCommands = map[string]bool{"kolejka-init": true, "kolejka-observer": true}

var (
	binOnce  sync.Once
	binDir   string
	binBuilt bool // binDir is ours to remove
	binErr   error
)

// Binaries returns a folder holding every command (kolejka-worker finds
// kolejka-init beside it): $KOLEJKA_BIN when it holds them all, as the
// Makefile builds them, else built once per test binary from this tree,
// kolejka-init static as `make build` makes it. Cleanup removes a built one.
func Binaries(t testing.TB) string {
	t.Helper()
	root := RepoRoot(t)
	binOnce.Do(func() { binDir, binBuilt, binErr = buildCommands(root) })
	if binErr != nil {
		t.Fatalf("building the commands: %v", binErr)
	}
	return binDir
}

func buildCommands(root string) (string, bool, error) {
	if dir := os.Getenv("KOLEJKA_BIN"); dir != "" {
		all := true
		for _, c := range Commands {
			if _, err := os.Stat(filepath.Join(dir, c)); err != nil {
				all = false
			}
		}
		if all {
			return dir, false, nil
		}
	}
	dir, err := os.MkdirTemp("", "kolejka-test-bin-")
	if err != nil {
		return "", false, err
	}
	args := []string{"build", "-o", dir + "/"}
	static := []string{"build", "-trimpath", "-ldflags=-s -w -extldflags=-static", "-o", dir + "/"}
	for _, c := range Commands {
		if staticCommands[c] {
			static = append(static, "./cmd/"+c)
		} else {
			args = append(args, "./cmd/"+c)
		}
	}
	steps := []*exec.Cmd{exec.Command("go", args...), exec.Command("go", static...)}
	steps[1].Env = append(os.Environ(), "CGO_ENABLED=0")
	for _, cmd := range steps {
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return "", false, fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
		}
	}
	return dir, true, nil
}

// Cleanup removes what Binaries and InitBinary built; a TestMain calls it
// after the tests.
func Cleanup() {
	if binBuilt {
		os.RemoveAll(binDir)
	}
	if initPath != "" {
		os.RemoveAll(filepath.Dir(initPath))
	}
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// RequireDocker needs a Docker engine answering `docker info`.
func RequireDocker(t testing.TB) {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err != nil {
		Missing(t, "needs a Docker engine (docker info: %v)", err)
	}
}
