package foreman

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/spec"
)

func lim(t testing.TB, pairs ...string) spec.Limits {
	t.Helper()
	var l spec.Limits
	for i := 0; i < len(pairs); i += 2 {
		if err := spec.ParseLimit(&l, pairs[i], pairs[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func taskWith(l spec.Limits, exclusive bool) *spec.Task {
	t := &spec.Task{ID: "t", Image: "x", Args: []string{"true"}, Limits: l}
	if exclusive {
		t.Exclusive = &exclusive
	}
	return t
}

// What a dequeue asks for is the capacity less what running tasks hold;
// per-task maxima stay; a task that omits a limit gets the node's default.
func TestLedgerFreeAccounting(t *testing.T) {
	capacity := lim(t, "cpus", "4", "memory", "8G", "time", "60s", "pids", "1000")
	l := newLedger(capacity, lim(t, "cpus", "1"), []int{0, 1, 2, 3}, 3)

	free, n, ok := l.request()
	if !ok || n != 3 || free.String() != capacity.String() {
		t.Fatalf("idle node asks for %d tasks with %s (ok %v)", n, free, ok)
	}
	a, err := l.admit(taskWith(lim(t, "cpus", "2", "memory", "3G", "pids", "100"), false))
	if err != nil {
		t.Fatal(err)
	}
	if got := a.limits.String(); got != lim(t, "cpus", "2", "memory", "3G", "pids", "100", "time", "60s").String() {
		t.Errorf("grant limits %s", got)
	}
	// No cpus: the node's default, one core; no memory or pids (no default
	// for them): all that is free.
	b, err := l.admit(taskWith(lim(t, "time", "5s"), false))
	if err != nil {
		t.Fatal(err)
	}
	if *b.limits.CPUs != 1 || *b.limits.Memory != 5<<30 || *b.limits.Pids != 900 || *b.limits.Time != 5*time.Second {
		t.Errorf("defaults: %s", b.limits)
	}
	if len(a.cores) != 2 || len(b.cores) != 1 || slices.ContainsFunc(a.cores, func(c int) bool { return slices.Contains(b.cores, c) }) {
		t.Errorf("cores %v and %v must be disjoint and as many as asked", a.cores, b.cores)
	}
	if want := lim(t, "cpus", "1", "memory", "0", "time", "60s", "pids", "0").String(); l.free.String() != want {
		t.Errorf("free %s, want %s", l.free, want)
	}
	// A slot and a core are free, but no memory or pids: no task can
	// fit, so the node asks for none (a long poll would wait in vain).
	if free, n, ok = l.request(); ok {
		t.Errorf("with no memory left the node asks for %d tasks with %s", n, free)
	}
	// Memory is all taken: a task asking for any waits.
	if _, err := l.admit(taskWith(lim(t, "memory", "1M"), false)); !errors.Is(err, errWait) {
		t.Errorf("task over free memory: %v, want errWait", err)
	}
	// More than the node has at all can never start.
	if _, err := l.admit(taskWith(lim(t, "cpus", "5"), false)); !errors.Is(err, ErrNoFit) {
		t.Errorf("task over capacity: %v, want ErrNoFit", err)
	}
	if _, err := l.admit(taskWith(lim(t, "time", "2M"), false)); !errors.Is(err, ErrNoFit) {
		t.Errorf("task over the per-task time: %v, want ErrNoFit", err)
	}
	l.release(b)
	l.release(a)
	free, n, _ = l.request()
	if free.String() != capacity.String() || n != 3 || l.cores.Free() != 4 {
		t.Errorf("after release: %s, %d slots, %d cores", free, n, l.cores.Free())
	}
}

// An exclusive task starts only on an idle node; while it runs the node
// asks for nothing and starts nothing.
func TestLedgerExclusive(t *testing.T) {
	l := newLedger(lim(t, "cpus", "2", "memory", "1G"), lim(t, "cpus", "1", "memory", "100M"), []int{0, 1}, 4)
	a, err := l.admit(taskWith(spec.Limits{}, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.admit(taskWith(spec.Limits{}, true)); !errors.Is(err, errWait) {
		t.Fatalf("exclusive task beside a running one: %v, want errWait", err)
	}
	l.release(a)
	x, err := l.admit(taskWith(spec.Limits{}, true))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := l.request(); ok {
		t.Error("the node asks for work while an exclusive task runs")
	}
	if _, err := l.admit(taskWith(spec.Limits{}, false)); !errors.Is(err, errWait) {
		t.Errorf("task beside an exclusive one: %v, want errWait", err)
	}
	l.release(x)
	if _, n, ok := l.request(); !ok || n != 4 {
		t.Errorf("after the exclusive task: %d slots (ok %v)", n, ok)
	}
}

func TestLedgerSlots(t *testing.T) {
	l := newLedger(lim(t, "cpus", "8"), lim(t, "cpus", "1"), []int{0, 1, 2, 3, 4, 5, 6, 7}, 2)
	for range 2 {
		if _, err := l.admit(taskWith(spec.Limits{}, false)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, ok := l.request(); ok {
		t.Error("the node asks for work with every slot busy")
	}
	if _, err := l.admit(taskWith(spec.Limits{}, false)); !errors.Is(err, errWait) {
		t.Errorf("third task on two slots: %v", err)
	}
}

// Random admissions and releases never over-commit: free plus what running
// tasks hold is always the capacity, and free cpus are free cores.
func TestLedgerNeverOvercommits(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	capacity := lim(t, "cpus", "6", "memory", "6G", "pids", "600")
	l := newLedger(capacity, lim(t, "cpus", "1", "memory", "256M", "pids", "10"), []int{0, 1, 2, 3, 4, 5}, 5)
	var held []grant
	for step := range 3000 {
		if len(held) > 0 && r.IntN(3) == 0 {
			i := r.IntN(len(held))
			l.release(held[i])
			held = slices.Delete(held, i, i+1)
		} else {
			var tl spec.Limits
			if r.IntN(2) == 0 {
				tl = lim(t, "cpus", []string{"1", "2", "3"}[r.IntN(3)])
			}
			if r.IntN(2) == 0 {
				tl.Memory = lim(t, "memory", []string{"512M", "1G", "2G"}[r.IntN(3)]).Memory
			}
			g, err := l.admit(taskWith(tl, r.IntN(10) == 0))
			if err == nil {
				held = append(held, g)
			} else if !errors.Is(err, errWait) {
				t.Fatalf("step %d: %v", step, err)
			}
		}
		var cpus, mem, pids int64
		for _, g := range held {
			cpus += *g.limits.CPUs
			mem += *g.limits.Memory
			pids += *g.limits.Pids
		}
		if cpus+*l.free.CPUs != 6 || mem+*l.free.Memory != 6<<30 || pids+*l.free.Pids != 600 {
			t.Fatalf("step %d: held cpus %d memory %d pids %d, free %s", step, cpus, mem, pids, l.free)
		}
		if *l.free.CPUs < 0 || *l.free.Memory < 0 || int(*l.free.CPUs) != l.cores.Free() {
			t.Fatalf("step %d: free %s, %d free cores", step, l.free, l.cores.Free())
		}
		if l.running != len(held) || l.running > 5 {
			t.Fatalf("step %d: %d running, %d held", step, l.running, len(held))
		}
	}
}

// A node offering no memory or no processes could take no task: it is
// refused at configuration, naming the resource, rather than left to wait
// for work forever (it asks for nothing: ledger.exhausted).
func TestCheckCapacity(t *testing.T) {
	for _, c := range []struct {
		capacity spec.Limits
		says     string // "" = accepted
	}{
		{lim(t, "memory", "1G", "pids", "100"), ""},
		{spec.Limits{}, ""},
		{lim(t, "memory", "0"), "the node offers memory 0"},
		{lim(t, "memory", "1G", "pids", "0"), "the node offers pids 0"},
	} {
		err := checkCapacity(c.capacity)
		if c.says == "" {
			if err != nil {
				t.Errorf("%s: %v", c.capacity, err)
			}
			continue
		}
		if !errors.Is(err, ErrConfig) || err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v; want a configuration error saying %q", c.capacity, err, c.says)
		}
	}
}
