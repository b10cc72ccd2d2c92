package foreman

// This file owns the core allocator: which of the node's cores each running
// task is pinned to.

import (
	"fmt"
	"slices"
)

// Cores hands the node's cores out to tasks, each core to one task at a
// time, so that tasks running side by side never share a core (a judged
// program's timing must not depend on its neighbours). It is not safe for
// concurrent use: the foreman holds its lock around it.
type Cores struct {
	all  []int // the node's cores, ascending
	used map[int]bool
}

// NewCores makes an allocator over the given cores (in any order, no
// repeats).
func NewCores(cores []int) *Cores {
	all := slices.Clone(cores)
	slices.Sort(all)
	return &Cores{all: slices.Compact(all), used: make(map[int]bool)}
}

// Total is the number of cores managed.
func (c *Cores) Total() int { return len(c.all) }

// Free is the number of cores no task holds.
func (c *Cores) Free() int { return len(c.all) - len(c.used) }

// Take picks n free cores and marks them used. It prefers a run of
// consecutive cores (they share caches, and a task's threads then see a
// uniform machine), choosing the shortest free run that fits so that long
// runs stay whole for larger tasks; when no run is long enough it takes the
// lowest free cores. It fails, changing nothing, when fewer than n are free.
func (c *Cores) Take(n int) ([]int, error) {
	if n <= 0 {
		return nil, fmt.Errorf("unable to allocate %d cores: %w", n, ErrNoFit)
	}
	if n > c.Free() {
		return nil, fmt.Errorf("unable to allocate %d cores, %d of %d free: %w", n, c.Free(), len(c.all), ErrNoFit)
	}
	// Runs of free cores with consecutive numbers.
	best := -1 // index into c.all of the best run's start
	bestLen := 0
	for i := 0; i < len(c.all); {
		if c.used[c.all[i]] {
			i++
			continue
		}
		j := i + 1
		for j < len(c.all) && !c.used[c.all[j]] && c.all[j] == c.all[j-1]+1 {
			j++
		}
		if l := j - i; l >= n && (best < 0 || l < bestLen) {
			best, bestLen = i, l
		}
		i = j
	}
	var got []int
	if best >= 0 {
		got = slices.Clone(c.all[best : best+n])
	} else {
		for _, core := range c.all {
			if !c.used[core] {
				got = append(got, core)
				if len(got) == n {
					break
				}
			}
		}
	}
	for _, core := range got {
		c.used[core] = true
	}
	return got, nil
}

// Put gives cores back.
func (c *Cores) Put(cores []int) {
	for _, core := range cores {
		delete(c.used, core)
	}
}
