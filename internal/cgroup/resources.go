package cgroup

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Resources are the limits a group enforces. A nil pointer or empty string
// means "not limited": the group inherits its parent's limit. Create and
// Update both make the group's limits exactly r: a field left nil lifts a
// limit set before (Devices excepted, see below).
type Resources struct {
	// Memory is the most memory in bytes the group may use (page cache
	// included): v1 memory.limit_in_bytes, v2 memory.max. The kernel rounds
	// it down to whole pages.
	Memory *int64
	// Swap is how many bytes of swap the group may use on top of Memory.
	// v1 has no swap limit of its own, only memory.memsw.limit_in_bytes,
	// the limit of memory plus swap, so there Swap requires Memory and the
	// memsw files (kernels without swap accounting lack them); v2 writes
	// Swap to memory.swap.max. Nil leaves swap unlimited.
	Swap *int64
	// Pids is the most processes and threads the group may hold at once
	// (pids.max): fork and clone fail with EAGAIN beyond it.
	Pids *int64
	// CPUs is a cpuset list such as "0-1,3" (cpuset.cpus). On v1 a new
	// cpuset group starts with empty cpus and mems and cannot hold a
	// process until both are set, so they are copied from the parent; the
	// empty string means "the parent's CPUs".
	CPUs string
	// Devices are device access rules, applied in order on top of the
	// inherited ones (v1 devices.allow/devices.deny; v2 an eBPF program
	// attached through containerd/cgroups). Rules are edits, not a value:
	// Update appends them, and nil changes nothing.
	Devices []specs.LinuxDeviceCgroup
}

// validate checks r's values regardless of the host.
func (r *Resources) validate() error {
	if r.Memory != nil && *r.Memory <= 0 {
		return fmt.Errorf("memory limit %d: must be positive: %w", *r.Memory, ErrInvalid)
	}
	if r.Swap != nil && *r.Swap < 0 {
		return fmt.Errorf("swap limit %d: must not be negative: %w", *r.Swap, ErrInvalid)
	}
	if r.Memory != nil && r.Swap != nil && *r.Swap > 1<<62-*r.Memory {
		return fmt.Errorf("memory limit %d plus swap limit %d: too large: %w", *r.Memory, *r.Swap, ErrInvalid)
	}
	if r.Pids != nil && *r.Pids <= 0 {
		return fmt.Errorf("pids limit %d: must be positive: %w", *r.Pids, ErrInvalid)
	}
	if r.CPUs != "" {
		if _, err := parseCPUList(r.CPUs); err != nil {
			return fmt.Errorf("cpus %q: %v: %w", r.CPUs, err, ErrInvalid)
		}
	}
	for i, d := range r.Devices {
		switch d.Type {
		case "", "a", "b", "c":
		default:
			return fmt.Errorf("device rule %d: type %q: want a, b or c: %w", i, d.Type, ErrInvalid)
		}
		if d.Access == "" || strings.Trim(d.Access, "rwm") != "" {
			return fmt.Errorf("device rule %d: access %q: want letters of rwm: %w", i, d.Access, ErrInvalid)
		}
	}
	return nil
}

// parseCPUList parses the kernel's list format ("0-3,5,7-8") into sorted,
// distinct CPU numbers.
func parseCPUList(s string) ([]int, error) {
	set := map[int]bool{}
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("bad cpu %q", lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("bad cpu range %q", part)
			}
		}
		if b-a > 1<<16 {
			return nil, fmt.Errorf("cpu range %q too large", part)
		}
		for c := a; c <= b; c++ {
			set[c] = true
		}
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("no cpu")
	}
	out := make([]int, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Ints(out)
	return out, nil
}

// FormatCPUList formats CPU numbers, in order, in the kernel's list format
// ("0-3,6"); nil gives "" (no cpuset limit).
func FormatCPUList(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}

// cpusOutside returns the CPUs of want that are not in have, both in list
// format; have must parse.
func cpusOutside(want, have string) ([]int, error) {
	w, err := parseCPUList(want)
	if err != nil {
		return nil, err
	}
	h, err := parseCPUList(have)
	if err != nil {
		return nil, err
	}
	in := map[int]bool{}
	for _, c := range h {
		in[c] = true
	}
	var out []int
	for _, c := range w {
		if !in[c] {
			out = append(out, c)
		}
	}
	return out, nil
}

// unsupported formats a refusal of one limit.
func unsupported(limit, why string, args ...any) error {
	return fmt.Errorf("unable to enforce %s limit: %s: %w", limit, fmt.Sprintf(why, args...), ErrUnsupported)
}
