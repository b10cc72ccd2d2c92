package daemon

import (
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/spec"
)

// Benchmarks against the host's real cgroups, each with a baseline of the
// bare cgroup operations measured in the same run:
//
//	go test -run '^$' -bench . -benchtime 200x ./internal/observer/daemon/

// BenchmarkSession: a process attaches to a new session and closes it (the
// registry moves it back out, measures, removes the cgroup), in-process,
// in-process with a state folder (the daemon's setting), and through the
// daemon's socket with the Go client from the caller's process. The
// baseline does the same with the cgroup package alone: Create, Add, Add
// back, Delete.
func BenchmarkSession(b *testing.B) {
	h := requireHost(b)
	e := newEnv(b, h, Options{})
	p := e.caller()
	b.Run("baseline", func(b *testing.B) {
		home, err := h.Load(e.callers)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; b.Loop(); i++ {
			g, err := h.Create(path.Join(e.callers, "bench"+strconv.Itoa(i)), nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := g.Add(p.pid); err != nil {
				b.Fatal(err)
			}
			if err := home.Add(p.pid); err != nil {
				b.Fatal(err)
			}
			if err := g.Delete(); err != nil {
				b.Fatal(err)
			}
		}
	})
	registry := func(r *Registry) func(b *testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				s, err := r.AttachNew(p.pid)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.Close(p.pid, s.ID, s.Secret); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("registry", registry(e.r))
	// The daemon keeps its state on /run, a tmpfs: so does this.
	state := b.TempDir()
	if dir, err := os.MkdirTemp("/dev/shm", "observer-bench-"); err == nil {
		state = dir
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	withState := newEnv(b, h, Options{StateDir: state})
	b.Run("registry-state", registry(withState.r))
	socket := withState.serve(ServerOptions{})
	b.Run("wire", func(b *testing.B) {
		q := withState.caller()
		b.ResetTimer()
		if got := q.do("benchwire %s session %d", socket, b.N); !strings.HasPrefix(got, "took ") {
			b.Fatal(got)
		}
	})
}

// BenchmarkStats: the stats of a session with a process in it, through the
// registry (secret and caller checks, usage, conversion), and through the
// daemon's socket; the baselines are the cgroup package's Usage and plain
// reads of the counters' files.
func BenchmarkStats(b *testing.B) {
	h := requireHost(b)
	e := newEnv(b, h, Options{})
	p := e.caller()
	s, err := e.r.AttachNew(p.pid)
	if err != nil {
		b.Fatal(err)
	}
	g, err := h.Load(s.Path)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("registry", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.r.Stats(p.pid, s.ID, s.Secret); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("usage", func(b *testing.B) {
		for b.Loop() {
			if _, err := g.Usage(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("files", func(b *testing.B) {
		files := counterFiles(h, s.Path)
		for b.Loop() {
			for _, f := range files {
				if _, err := os.ReadFile(f); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	socket := e.serve(ServerOptions{})
	for _, what := range []string{"stats", "get"} {
		// wire-get, a GET / on the same kept-alive connection, is the
		// floor of one request over the socket between two processes.
		b.Run("wire-"+what, func(b *testing.B) {
			q := e.caller()
			b.ResetTimer()
			if got := q.do("benchwire %s %s %d", socket, what, b.N); !strings.HasPrefix(got, "took ") {
				b.Fatal(got)
			}
		})
	}
}

// counterFiles are the files behind Kolejka's stats: CPU, memory peak and
// failures, pids peak and failures.
func counterFiles(h *cgroup.Hierarchy, p string) []string {
	if h.Mode() == cgroup.Unified {
		mounts := "/sys/fs/cgroup"
		return []string{filepath.Join(mounts, p, "cpu.stat"), filepath.Join(mounts, p, "memory.peak"),
			filepath.Join(mounts, p, "memory.events"), filepath.Join(mounts, p, "pids.peak"), filepath.Join(mounts, p, "pids.events")}
	}
	v1 := func(c, f string) string { return filepath.Join("/sys/fs/cgroup", c, p, f) }
	return []string{v1("cpuacct", "cpuacct.usage"), v1("cpuacct", "cpuacct.usage_percpu"), v1("memory", "memory.max_usage_in_bytes"),
		v1("memory", "memory.failcnt"), v1("pids", "pids.peak"), v1("pids", "pids.events")}
}

// BenchmarkTimeLimit measures how late a time limit kills: a spinner
// attaches to a session limited to 100ms; late-ms is the time from the
// deadline until the spinner is gone (as its parent sees its exit), on
// average and at worst. The contract asks for at most 50 ms. The baseline
// is the floor of this machine: a bare timer sending SIGKILL to the
// spinner's pid, measured the same way.
func BenchmarkTimeLimit(b *testing.B) {
	h := requireHost(b)
	e := newEnv(b, h, Options{})
	measure := func(b *testing.B, arm func(p *helper) time.Time) {
		var total, worst time.Duration
		for i := 0; i < b.N; i++ {
			p := e.caller()
			deadline := arm(p)
			p.send("spinforever")
			p.Wait()
			late := time.Since(deadline)
			total += late
			worst = max(worst, late)
		}
		b.ReportMetric(float64(total)/float64(b.N)/1e6, "late-ms")
		b.ReportMetric(float64(worst)/1e6, "worst-late-ms")
	}
	b.Run("session", func(b *testing.B) {
		measure(b, func(p *helper) time.Time {
			s, err := e.r.AttachNew(p.pid)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _, _ = e.r.Close(os.Getpid(), s.ID, s.Secret) })
			if err := e.r.SetLimits(p.pid, s.ID, s.Secret, spec.Limits{Time: dur(100 * time.Millisecond)}); err != nil {
				b.Fatal(err)
			}
			e.r.mu.Lock()
			defer e.r.mu.Unlock()
			return e.r.live[s.ID].deadline
		})
	})
	b.Run("baseline", func(b *testing.B) {
		measure(b, func(p *helper) time.Time {
			deadline := time.Now().Add(100 * time.Millisecond)
			time.AfterFunc(100*time.Millisecond, func() { _ = syscall.Kill(p.pid, syscall.SIGKILL) })
			return deadline
		})
	})
}
