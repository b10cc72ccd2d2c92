// Package cgroup owns one Linux control group as a *Group: create it with
// limits, move a process into it, read its usage precisely, freeze and thaw
// it, kill everything inside it (sub-groups included) and delete it.
//
// The lifecycle, as the worker and the observer use it:
//
//	h, err := cgroup.Host()                       // detect v1 or v2 once, keep h
//	g, err := h.Create("/kolejka/<id>/task", &r)  // parents created, limits applied
//	err = g.Add(pid)                              // a gated child, before it runs the task
//	u, err := g.Usage()                           // any time, as often as needed
//	err = g.Kill()                                // time limit, output limit, or teardown
//	err = g.Delete()                              // always: kills leftovers, removes sub-groups
//
// Both cgroup versions are supported and chosen at run time, never assumed:
// cgroup v1 ("legacy", including hybrid hosts where an empty cgroup2 is
// mounted at /sys/fs/cgroup/unified) and cgroup v2 ("unified", what systemd
// hosts run today). A group has the same absolute path in every hierarchy it
// lives in, e.g. /kolejka/abc/task is /sys/fs/cgroup/memory/kolejka/abc/task
// and /sys/fs/cgroup/pids/kolejka/abc/task on v1, and
// /sys/fs/cgroup/kolejka/abc/task on v2.
//
// Creation (folders in every hierarchy, v1 cpuset inheritance, device
// rules) and process moves go through containerd/cgroups. The rest is done
// here, reading and writing control files directly, where the library falls
// short: it cannot lift a limit again and orders the v1 memory and memsw
// writes wrongly on update (setLimitsLegacy, setLimitsUnified); its CPU
// split is in 10 ms ticks and it lacks pids.peak (usage.go); its freeze
// waits without bound, and on v2 returns before the group is frozen; it has
// no v1 kill and no recursive delete (kill.go, group.go).
//
// For the observer, whose sessions nest below the groups their callers run
// in: Evacuate moves a group's own processes into a leaf sub-group (v2 gives
// controllers only to sub-groups of a group without processes),
// EffectiveCPUs tells the cores a group may use, Populated whether anything
// still runs in it, and Load accepts the root "/" so that a process can be
// moved back there (what would act on the whole host is refused on it).
//
// Tests: kernel_test.go runs against the host's real cgroups (root needed;
// skipped otherwise, unless KOLEJKA_REQUIRE_PRIVILEGED=1 makes that a
// failure); the v2 code path is tested against a fake cgroupfs tree
// (unified_test.go) and, on hybrid hosts, against the kernel's
// controller-less cgroup2 (hybrid_test.go); legacy_test.go has v1 fakes.
package cgroup
