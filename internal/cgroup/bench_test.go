package cgroup

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Benchmarks against the real host cgroups, each with a baseline of the bare
// file operations measured in the same run:
//
//	go test -run '^$' -bench . ./cgroup/

// BenchmarkLifecycle: create a group with memory and pids limits, read its
// usage, delete it; the baseline does mkdir, the two limit writes, one read
// and rmdir by hand.
func BenchmarkLifecycle(b *testing.B) {
	h := requirePrivileged(b)
	root := testRoot(b, h)
	r := &Resources{Memory: ptr(64 * MiB), Pids: ptr(64)}
	b.Run("package", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			g, err := h.Create(root+"/g"+strconv.Itoa(i), r)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := g.Usage(); err != nil {
				b.Fatal(err)
			}
			if err := g.Delete(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline", func(b *testing.B) {
		if _, err := h.Create(root, nil); err != nil {
			b.Fatal(err)
		}
		memory, pids := "memory.max", "pids.max"
		if h.Mode() == Legacy {
			memory = "memory.limit_in_bytes"
		}
		for i := 0; b.Loop(); i++ {
			p := root + "/b" + strconv.Itoa(i)
			dirs := h.dirs(p)
			for _, d := range dirs {
				if err := os.Mkdir(d, 0o755); err != nil {
					b.Fatal(err)
				}
			}
			if err := writeFile(fileIn(h, "memory", p, memory), "67108864"); err != nil {
				b.Fatal(err)
			}
			if err := writeFile(fileIn(h, "pids", p, pids), "64"); err != nil {
				b.Fatal(err)
			}
			if _, err := os.ReadFile(fileIn(h, "pids", p, "pids.current")); err != nil {
				b.Fatal(err)
			}
			for _, d := range dirs {
				if err := syscall.Rmdir(d); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkUsage: one full Usage read (what a watch loop does every few
// milliseconds); the baseline reads the CPU counter alone.
func BenchmarkUsage(b *testing.B) {
	h := requirePrivileged(b)
	g, err := h.Create(testRoot(b, h)+"/g", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("package", func(b *testing.B) {
		for b.Loop() {
			if _, err := g.Usage(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline", func(b *testing.B) {
		file := filepath.Join(h.mount, g.Path(), "cpu.stat")
		if h.Mode() == Legacy {
			file = fileIn(h, "cpuacct", g.Path(), "cpuacct.usage")
		}
		for b.Loop() {
			if _, err := os.ReadFile(file); err != nil {
				b.Fatal(err)
			}
		}
	})
}
