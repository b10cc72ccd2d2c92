package cgroup

import (
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kolejka-go/kolejka/internal/clock"
)

// peakPeriod is how often a peakSampler reads a group's memory. A read
// costs a few microseconds, so sampling costs nothing a task would notice.
const peakPeriod = 5 * time.Millisecond

// peakSampler keeps the most memory and swap a v2 group has used where the
// kernel does not: memory.peak is Linux 5.19+, memory.swap.peak 6.5+. It
// reads memory.current and memory.swap.current every peakPeriod from the
// group's creation until Delete (or until the group is gone), and Usage
// reports the largest values seen. A spike that comes and goes between two
// reads is missed, so such a peak is a lower bound; a task that holds its
// memory for longer than a period is measured as the kernel would.
type peakSampler struct {
	dir          string
	memory, swap atomic.Int64
	wantMemory   bool // memory.peak is missing
	wantSwap     bool // memory.swap.peak is missing, memory.swap.current is not
	stop         chan struct{}
	once         sync.Once
}

// startPeakSampler starts sampling the v2 group at dir if the kernel lacks
// a peak counter the group's controllers would otherwise give, else
// returns nil.
func startPeakSampler(dir string) *peakSampler {
	if !exists(filepath.Join(dir, "memory.current")) {
		return nil // no memory controller: no counters to stand in for
	}
	s := &peakSampler{
		dir:        dir,
		wantMemory: !exists(filepath.Join(dir, "memory.peak")),
		wantSwap:   !exists(filepath.Join(dir, "memory.swap.peak")) && exists(filepath.Join(dir, "memory.swap.current")),
		stop:       make(chan struct{}),
	}
	if !s.wantMemory && !s.wantSwap {
		return nil
	}
	s.sample()
	go s.run()
	return s
}

// run samples every peakPeriod until stopped or the group is gone.
func (s *peakSampler) run() { clock.Every(s.stop, peakPeriod, s.sample) }

// sample reads the current figures into the peaks; false once the group
// is gone.
func (s *peakSampler) sample() bool {
	raise := func(peak *atomic.Int64, file string) bool {
		v, err := readInt(filepath.Join(s.dir, file))
		if err != nil {
			return !isMissing(err)
		}
		for {
			old := peak.Load()
			if v <= old || peak.CompareAndSwap(old, v) {
				return true
			}
		}
	}
	ok := true
	if s.wantMemory {
		ok = raise(&s.memory, "memory.current")
	}
	if s.wantSwap {
		ok = raise(&s.swap, "memory.swap.current") && ok
	}
	return ok
}

// apply takes a last sample and puts the peaks into u, where the kernel
// had none.
func (s *peakSampler) apply(u *Usage) {
	s.sample()
	if s.wantMemory {
		u.MemoryPeak = max(u.MemoryPeak, s.memory.Load())
	}
	if s.wantSwap {
		u.SwapPeak = max(u.SwapPeak, s.swap.Load())
	}
}

// close stops the sampling.
func (s *peakSampler) close() {
	s.once.Do(func() { close(s.stop) })
}
