package worker

import (
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// hostCores lists the cores this process may run on, in order.
func hostCores() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("unable to read the cores available: %w", err)
	}
	var cores []int
	for i := 0; i < len(set)*64; i++ {
		if set.IsSet(i) {
			cores = append(cores, i)
		}
	}
	return cores, nil
}

// pickCores pins a task asking for n cores to n of the available ones,
// starting at the offset-th (the node sets offsets so that tasks running
// side by side get disjoint cores). A request that does not fit is refused,
// never silently shrunk.
func pickCores(avail []int, n, offset int64) ([]int, error) {
	if n <= 0 {
		return nil, fmt.Errorf("limits.cpus must be at least 1, not %d: %w", n, ErrUnsupported)
	}
	if offset < 0 || offset+n > int64(len(avail)) {
		return nil, fmt.Errorf("limits.cpus %d from offset %d needs more than the %d cores here: %w",
			n, offset, len(avail), ErrUnsupported)
	}
	return avail[offset : offset+n], nil
}

// checkCores accepts an explicit core list: cores of this machine, no
// repeats, as many as the cpus limit asks (when there is one).
func checkCores(avail, cores []int, cpus *int64) error {
	if len(cores) == 0 {
		return fmt.Errorf("an empty core list: %w", ErrUnsupported)
	}
	if cpus != nil && int64(len(cores)) != *cpus {
		return fmt.Errorf("limits.cpus is %d but %d cores were given: %w", *cpus, len(cores), ErrUnsupported)
	}
	seen := map[int]bool{}
	for _, c := range cores {
		if seen[c] || !slices.Contains(avail, c) {
			return fmt.Errorf("core %d is not available here (or given twice): %w", c, ErrUnsupported)
		}
		seen[c] = true
	}
	return nil
}
