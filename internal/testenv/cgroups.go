package testenv

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// How a host lays its cgroups out (CgroupLayout).
const (
	Unified = "unified" // cgroup v2 only, at /sys/fs/cgroup
	Hybrid  = "hybrid"  // v1 controllers, and a cgroup2 tree at /sys/fs/cgroup/unified
	Legacy  = "legacy"  // cgroup v1 only
)

// layoutEnv names the layout a strict run is meant to test on: CI sets it
// for each run (the host's, and the cgroup v2 kernel's in qemu), so that a
// test of that layout that would skip fails instead.
const layoutEnv = "KOLEJKA_CGROUP_LAYOUT"

// CgroupLayout is the layout of this host's cgroups at /sys/fs/cgroup:
// Unified, Hybrid or Legacy; "" where nothing is mounted there.
func CgroupLayout() string {
	var fs unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &fs); err != nil {
		return ""
	}
	if fs.Type == unix.CGROUP2_SUPER_MAGIC {
		return Unified
	}
	if err := unix.Statfs("/sys/fs/cgroup/unified", &fs); err == nil && fs.Type == unix.CGROUP2_SUPER_MAGIC {
		return Hybrid
	}
	if fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.CGROUP_SUPER_MAGIC {
		return Legacy
	}
	return ""
}

// RequireCgroupLayout needs this host's cgroups laid out as layout. On a
// host laid out otherwise the test skips, rightly: CI runs the tree on a
// hybrid host and again on a cgroup v2 kernel, and each layout's tests run
// on the run that has it. Strict mode fails it instead only where
// KOLEJKA_CGROUP_LAYOUT says this run is the one for layout: then the
// machine is not what CI takes it for, and the test would run nowhere.
func RequireCgroupLayout(t testing.TB, layout string) {
	t.Helper()
	got := CgroupLayout()
	if got == layout {
		return
	}
	if Strict() && os.Getenv(layoutEnv) == layout {
		t.Fatalf("required by KOLEJKA_REQUIRE_PRIVILEGED=1 and %s=%s but missing: cgroups laid out %s, the host's are %q", layoutEnv, layout, layout, got)
	}
	t.Skipf("skipped: needs cgroups laid out %s, the host's are %q (CI runs it where %s=%s)", layout, got, layoutEnv, layout)
}
