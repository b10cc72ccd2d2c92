package spec

// This file owns the "stats" object of a result: reading it (with Kolejka's
// older GPU key spellings and its consistency rules), and writing it.

import (
	"math"
	"time"
)

// The keys of the stats objects, sorted (they are listed in unknown-key
// messages).

func statsKeys() []string  { return []string{"cpu", "cpus", "gpus", "memory", "perf", "pids", "time"} }
func cpuKeys() []string    { return []string{"system", "usage", "user"} }
func memoryKeys() []string { return []string{"failures", "max_swap", "max_usage", "swap", "usage"} }
func pidsKeys() []string   { return []string{"failures", "max_usage", "usage"} }
func perfKeys() []string   { return []string{"cycles", "instructions"} }

// gpuKeys includes Kolejka's older spellings total_memory (for memory_total)
// and memory_usage (for max_memory_usage), which are read but not written.
func gpuKeys() []string {
	return []string{"id", "max_memory_usage", "max_temperature", "max_utilization", "memory_total", "memory_usage", "name", "total_memory"}
}

// stats reads a stats object.
func (d *decoder) stats(n *node, path string) Stats {
	m := d.fields(n, path, statsKeys()...)
	s := Stats{
		CPU:    d.cpu(m.at("cpu")),
		CPUs:   map[string]CPUStats{},
		Memory: d.memory(m.at("memory")),
		Pids:   d.pids(m.at("pids")),
		Time:   d.duration(m.at("time")),
		Perf:   d.perf(m.at("perf")),
		GPUs:   map[string]GPUStats{},
	}
	cpusPath := fieldPath(path, "cpus")
	keys, vals := d.entries(m.get("cpus"), cpusPath)
	for i, k := range keys {
		p := entryPath(cpusPath, k)
		if !isCoreIndex(k) {
			d.add(p, "not a core index (a whole number like \"0\")")
			continue
		}
		s.CPUs[k] = d.cpu(vals[i], p)
	}
	gpusPath := fieldPath(path, "gpus")
	keys, vals = d.entries(m.get("gpus"), gpusPath)
	for i, k := range keys {
		s.GPUs[k] = d.gpu(vals[i], entryPath(gpusPath, k))
	}
	s.Normalize()
	return s
}

func isCoreIndex(k string) bool {
	if k == "" || (len(k) > 1 && k[0] == '0') {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isDigit(k[i]) {
			return false
		}
	}
	return true
}

func (d *decoder) cpu(n *node, path string) CPUStats {
	m := d.fields(n, path, cpuKeys()...)
	return CPUStats{
		Usage:  d.duration(m.at("usage")),
		User:   d.duration(m.at("user")),
		System: d.duration(m.at("system")),
	}
}

func (d *decoder) memory(n *node, path string) MemoryStats {
	m := d.fields(n, path, memoryKeys()...)
	return MemoryStats{
		Usage:    d.size(m.at("usage")),
		MaxUsage: d.size(m.at("max_usage")),
		Swap:     d.size(m.at("swap")),
		MaxSwap:  d.size(m.at("max_swap")),
		Failures: d.count(m.at("failures")),
	}
}

func (d *decoder) pids(n *node, path string) PidsStats {
	m := d.fields(n, path, pidsKeys()...)
	return PidsStats{
		Usage:    d.count(m.at("usage")),
		MaxUsage: d.count(m.at("max_usage")),
		Failures: d.count(m.at("failures")),
	}
}

func (d *decoder) perf(n *node, path string) PerfStats {
	m := d.fields(n, path, perfKeys()...)
	return PerfStats{
		Instructions: d.bigInt(m.at("instructions")),
		Cycles:       d.bigInt(m.at("cycles")),
	}
}

func (d *decoder) gpu(n *node, path string) GPUStats {
	m := d.fields(n, path, gpuKeys()...)
	// either reads key, or its older spelling; both at once is a problem.
	either := func(key, old string) *node {
		if !absent(m.get(key)) && !absent(m.get(old)) {
			d.add(fieldPath(path, old), "given together with %q, which it is an older name of", key)
		}
		if !absent(m.get(key)) {
			return m.get(key)
		}
		return m.get(old)
	}
	g := GPUStats{
		Name:           d.str(m.at("name")),
		ID:             d.str(m.at("id")),
		MaxTemperature: d.signed(m.at("max_temperature")),
		MaxUtilization: d.count(m.at("max_utilization")),
	}
	total, usage := either("memory_total", "total_memory"), either("max_memory_usage", "memory_usage")
	g.MemoryTotal = d.size(total, fieldPath(path, "memory_total"))
	g.MaxMemoryUsage = d.size(usage, fieldPath(path, "max_memory_usage"))
	return g
}

// Normalize applies the consistency rules Kolejka applies whenever it loads
// stats: CPU usage is at least user+system (per core and in total), the
// total is at least the sum over cores, and each peak (memory, swap, pids) is
// at least the momentary reading. Reading a result normalises its stats.
func (s *Stats) Normalize() {
	s.CPU.normalize()
	var sum CPUStats
	for k, c := range s.CPUs {
		c.normalize()
		s.CPUs[k] = c
		sum.Usage = addDurations(sum.Usage, c.Usage)
		sum.User = addDurations(sum.User, c.User)
		sum.System = addDurations(sum.System, c.System)
		sum.normalize()
	}
	s.CPU.Usage = maxDuration(s.CPU.Usage, sum.Usage)
	s.CPU.User = maxDuration(s.CPU.User, sum.User)
	s.CPU.System = maxDuration(s.CPU.System, sum.System)
	s.CPU.normalize()
	s.Memory.MaxUsage = maxInt(s.Memory.MaxUsage, s.Memory.Usage)
	s.Memory.MaxSwap = maxInt(s.Memory.MaxSwap, s.Memory.Swap)
	s.Pids.MaxUsage = maxInt(s.Pids.MaxUsage, s.Pids.Usage)
}

// normalize makes Usage at least User+System (an absent part counts as
// absent, not zero, as in Kolejka's sum_none).
func (c *CPUStats) normalize() {
	c.Usage = maxDuration(c.Usage, addDurations(c.User, c.System))
}

// addDurations adds optional durations; nil if both are nil; saturating.
func addDurations(a, b *time.Duration) *time.Duration {
	switch {
	case a == nil && b == nil:
		return nil
	case a == nil:
		v := *b
		return &v
	case b == nil:
		v := *a
		return &v
	}
	// Saturate at the longest time ParseTime reads back, so that a sum
	// written out can be read again.
	const longest = time.Duration(math.MaxInt64/1000) * time.Microsecond
	v := *a + *b
	switch {
	case *b > 0 && (v < *a || v > longest):
		v = longest
	case *b < 0 && (v > *a || v < -longest):
		v = -longest
	}
	return &v
}

func maxDuration(a, b *time.Duration) *time.Duration {
	switch {
	case b == nil:
		return a
	case a == nil || *b > *a:
		v := *b
		return &v
	}
	return a
}

func maxInt(a, b *int64) *int64 {
	switch {
	case b == nil:
		return a
	case a == nil || *b > *a:
		v := *b
		return &v
	}
	return a
}

// canonical returns a deep copy of s as a reader would see it after writing:
// times rounded to microseconds, then normalised. Writing the canonical form
// makes what is written a fixed point of reading and writing.
func (s Stats) canonical() Stats {
	round := func(d *time.Duration) *time.Duration {
		if d == nil {
			return nil
		}
		v := time.Duration(roundMicroseconds(*d)) * time.Microsecond
		return &v
	}
	cpu := func(c CPUStats) CPUStats {
		return CPUStats{Usage: round(c.Usage), User: round(c.User), System: round(c.System)}
	}
	c := Stats{
		CPU:    cpu(s.CPU),
		CPUs:   make(map[string]CPUStats, len(s.CPUs)),
		Memory: MemoryStats{copyInt(s.Memory.Usage), copyInt(s.Memory.MaxUsage), copyInt(s.Memory.Swap), copyInt(s.Memory.MaxSwap), copyInt(s.Memory.Failures)},
		Pids:   PidsStats{copyInt(s.Pids.Usage), copyInt(s.Pids.MaxUsage), copyInt(s.Pids.Failures)},
		Time:   round(s.Time),
		Perf:   PerfStats{copyInt(s.Perf.Instructions), copyInt(s.Perf.Cycles)},
		GPUs:   make(map[string]GPUStats, len(s.GPUs)),
	}
	for k, v := range s.CPUs {
		c.CPUs[k] = cpu(v)
	}
	for k, g := range s.GPUs {
		c.GPUs[k] = GPUStats{g.Name, g.ID, copyInt(g.MemoryTotal), copyInt(g.MaxMemoryUsage), copyInt(g.MaxTemperature), copyInt(g.MaxUtilization)}
	}
	c.Normalize()
	return c
}

func copyInt(p *int64) *int64 {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// jsonValue is the stats object as written: cpu, cpus, memory, pids, perf
// and gpus always (possibly empty), time when measured. s must be canonical.
func (s Stats) jsonValue() object {
	times := func(c CPUStats) object {
		o := object{}
		putTime(o, "usage", c.Usage)
		putTime(o, "user", c.User)
		putTime(o, "system", c.System)
		return o
	}
	cpus := object{}
	for k, c := range s.CPUs {
		cpus[k] = times(c)
	}
	memory := object{}
	putSize(memory, "usage", s.Memory.Usage)
	putSize(memory, "max_usage", s.Memory.MaxUsage)
	putSize(memory, "swap", s.Memory.Swap)
	putSize(memory, "max_swap", s.Memory.MaxSwap)
	putInt(memory, "failures", s.Memory.Failures)
	pids := object{}
	putInt(pids, "usage", s.Pids.Usage)
	putInt(pids, "max_usage", s.Pids.MaxUsage)
	putInt(pids, "failures", s.Pids.Failures)
	perf := object{}
	putInt(perf, "instructions", s.Perf.Instructions)
	putInt(perf, "cycles", s.Perf.Cycles)
	gpus := object{}
	for k, g := range s.GPUs {
		o := object{}
		if g.Name != "" {
			o["name"] = g.Name
		}
		if g.ID != "" {
			o["id"] = g.ID
		}
		putSize(o, "memory_total", g.MemoryTotal)
		putSize(o, "max_memory_usage", g.MaxMemoryUsage)
		putInt(o, "max_temperature", g.MaxTemperature)
		putInt(o, "max_utilization", g.MaxUtilization)
		gpus[k] = o
	}
	o := object{"cpu": times(s.CPU), "cpus": cpus, "memory": memory, "pids": pids, "perf": perf, "gpus": gpus}
	putTime(o, "time", s.Time)
	return o
}

// check reports values no reader would accept back: negative measurements
// and cpus keys that are not core indexes.
func (s Stats) check(p *problems, path string) {
	neg := func(field string, v *int64) {
		if v != nil && *v < 0 {
			p.add(fieldPath(path, field), "negative (%d)", *v)
		}
	}
	negTime := func(field string, v *time.Duration) {
		if v != nil && *v < 0 {
			p.add(fieldPath(path, field), "negative (%s)", FormatTime(*v))
		}
	}
	cpu := func(prefix string, c CPUStats) {
		negTime(prefix+".usage", c.Usage)
		negTime(prefix+".user", c.User)
		negTime(prefix+".system", c.System)
	}
	cpu("cpu", s.CPU)
	for _, k := range sortedKeys(s.CPUs) {
		if !isCoreIndex(k) {
			p.add(entryPath(fieldPath(path, "cpus"), k), "not a core index (a whole number like \"0\")")
		}
		cpu(entryPath("cpus", k), s.CPUs[k])
	}
	neg("memory.usage", s.Memory.Usage)
	neg("memory.max_usage", s.Memory.MaxUsage)
	neg("memory.swap", s.Memory.Swap)
	neg("memory.max_swap", s.Memory.MaxSwap)
	neg("memory.failures", s.Memory.Failures)
	neg("pids.usage", s.Pids.Usage)
	neg("pids.max_usage", s.Pids.MaxUsage)
	neg("pids.failures", s.Pids.Failures)
	negTime("time", s.Time)
	neg("perf.instructions", s.Perf.Instructions)
	neg("perf.cycles", s.Perf.Cycles)
	for _, k := range sortedKeys(s.GPUs) {
		g, prefix := s.GPUs[k], entryPath("gpus", k)
		neg(prefix+".memory_total", g.MemoryTotal)
		neg(prefix+".max_memory_usage", g.MaxMemoryUsage)
		neg(prefix+".max_utilization", g.MaxUtilization)
	}
}

// ParseStats reads a JSON stats object (as the observer's stats command
// answers it) strictly, and normalises it as Kolejka does.
func ParseStats(data []byte, file string) (Stats, error) {
	return decodeFile(data, file, func(d *decoder, n *node) Stats { return d.stats(n, "") })
}

// MarshalJSON writes the stats object in Kolejka's canonical form.
func (s Stats) MarshalJSON() ([]byte, error) {
	var p problems
	s.check(&p, "stats")
	if err := p.err(); err != nil {
		return nil, err
	}
	return encodeJSON(s.canonical().jsonValue())
}

// UnmarshalJSON reads a stats object as ParseStats does.
func (s *Stats) UnmarshalJSON(data []byte) error {
	return unmarshalValue(data, "stats", ParseStats, func(v Stats) { *s = v })
}

func putTime(o object, key string, v *time.Duration) {
	if v != nil {
		o[key] = FormatTime(*v)
	}
}

func putSize(o object, key string, v *int64) {
	if v != nil {
		o[key] = FormatSize(*v)
	}
}

func putInt(o object, key string, v *int64) {
	if v != nil {
		o[key] = *v
	}
}
