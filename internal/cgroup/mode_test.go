package cgroup

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// This development machine: v1 controllers, a named systemd hierarchy and
// an empty cgroup2 at /sys/fs/cgroup/unified.
const hybridMountinfo = `22 1 0:20 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

// A systemd host on pure cgroup v1 (CentOS 7 style): cpu and cpuacct
// co-mounted, net_cls,net_prio too, no pids in old kernels' lists.
const coMountedMountinfo = `25 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
26 25 0:22 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
30 25 0:26 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,net_cls,net_prio
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpuset
33 25 0:29 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,freezer
34 25 0:30 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,devices
35 25 0:31 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,blkio
36 25 0:32 / /sys/fs/cgroup/perf_event rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,perf_event
`

// A systemd host on cgroup v2.
const unifiedMountinfo = `24 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`

// A v1 container (no cgroup namespace): the host's /docker/abc sub-trees
// are mounted at /sys/fs/cgroup/<controller>.
const containerMountinfo = `600 590 0:40 /docker/abc /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:17 - cgroup cgroup rw,memory
601 590 0:41 /docker/abc /sys/fs/cgroup/pids ro,nosuid,nodev,noexec,relatime master:18 - cgroup cgroup rw,pids
`

func TestParseMountinfo(t *testing.T) {
	for _, c := range []struct {
		name, text  string
		mode        Mode
		controllers map[string]string
	}{
		{"hybrid", hybridMountinfo, Legacy, map[string]string{
			"cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct", "cpuset": "/sys/fs/cgroup/cpuset",
			"memory": "/sys/fs/cgroup/memory", "devices": "/sys/fs/cgroup/devices", "freezer": "/sys/fs/cgroup/freezer",
			"pids": "/sys/fs/cgroup/pids",
		}},
		{"v1 co-mounted", coMountedMountinfo, Legacy, map[string]string{
			"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct", "cpuset": "/sys/fs/cgroup/cpuset",
			"memory": "/sys/fs/cgroup/memory", "devices": "/sys/fs/cgroup/devices", "freezer": "/sys/fs/cgroup/freezer",
		}},
		{"v2", unifiedMountinfo, Unified, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, err := parseMountinfo(strings.NewReader(c.text))
			if err != nil {
				t.Fatal(err)
			}
			if h.Mode() != c.mode {
				t.Errorf("mode %v, want %v", h.Mode(), c.mode)
			}
			if c.mode == Unified {
				if h.mount != "/sys/fs/cgroup" {
					t.Errorf("v2 mount %q", h.mount)
				}
				return
			}
			if !reflect.DeepEqual(h.controllers, c.controllers) {
				t.Errorf("controllers %v\nwant %v", h.controllers, c.controllers)
			}
		})
	}
	h, err := parseMountinfo(strings.NewReader(coMountedMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	if got := h.dirs("/k"); len(got) != 5 {
		t.Errorf("co-mounted hierarchy has %d group folders %v, want 5 (cpu,cpuacct once)", len(got), got)
	}
	if _, err := parseMountinfo(strings.NewReader("22 1 0:20 / /proc rw - proc proc rw\n")); !errors.Is(err, ErrUnsupported) {
		t.Errorf("no cgroup mounts: %v, want ErrUnsupported", err)
	}
	if Legacy.String() != "legacy" || Unified.String() != "unified" || Mode(7).String() != "Mode(7)" {
		t.Errorf("Mode strings: %v %v %v", Legacy, Unified, Mode(7))
	}
}

func TestPathOfParsing(t *testing.T) {
	legacy, unified, err := parseProcCgroup(strings.NewReader(`9:name=systemd:/
4:memory:/process_api/146af98c
2:cpu,cpuacct:/kolejka/a:b
0::/
`))
	if err != nil {
		t.Fatal(err)
	}
	if legacy["memory"] != "/process_api/146af98c" || legacy["cpu"] != "/kolejka/a:b" || legacy["cpuacct"] != "/kolejka/a:b" || unified != "/" {
		t.Errorf("parsed %v and %q", legacy, unified)
	}
	if _, _, err := parseProcCgroup(strings.NewReader("garbage\n")); err == nil {
		t.Errorf("garbage parsed")
	}

	h, err := parseMountinfo(strings.NewReader(containerMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	if h.roots["memory"] != "/docker/abc" {
		t.Fatalf("memory mount root %q", h.roots["memory"])
	}
	for in, want := range map[string]string{"/docker/abc/kolejka/x": "/kolejka/x", "/docker/abc": "/", "/other": "/other"} {
		if got := relativeTo(h.roots["memory"], in); got != want {
			t.Errorf("relativeTo(%q) = %q, want %q", in, got, want)
		}
	}
}
