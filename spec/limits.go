package spec

// This file owns the limits object: its keys, how each is read and written,
// and setting one limit from a string (CLI flags, INI configuration).

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// limitKind is how a limit's value is spelled.
type limitKind uint8

const (
	kindCount  limitKind = iota // whole number, written as a number
	kindSize                    // bytes, written "<bytes>b"
	kindTime                    // written "<seconds>s"
	kindBool                    // network
	kindBigInt                  // whole number with SI suffixes, written as a number
)

func (k limitKind) String() string {
	return [...]string{"count", "size", "time", "boolean", "big integer"}[k]
}

// limitRole is how a limit takes part in scheduling (see Fit).
type limitRole uint8

const (
	roleConsumable limitRole = iota // a share of the node's resources the task holds while it runs
	roleMaximum                     // a per-task maximum the node may cap
	roleOffset                      // a placement chosen by the node
	roleNetwork                     // network access: false wins
)

// limitField describes one key of the limits object. Exactly one of num, dur
// and flag is set.
type limitField struct {
	key  string
	kind limitKind
	role limitRole
	num  func(*Limits) **int64
	dur  func(*Limits) **time.Duration
	flag func(*Limits) **bool
}

// limitFields lists the limits in the contract's order. It builds the table
// afresh on each call so that no package state exists to be changed.
func limitFields() []limitField {
	count := func(key string, role limitRole, f func(*Limits) **int64) limitField {
		return limitField{key: key, kind: kindCount, role: role, num: f}
	}
	size := func(key string, role limitRole, f func(*Limits) **int64) limitField {
		return limitField{key: key, kind: kindSize, role: role, num: f}
	}
	big := func(key string, f func(*Limits) **int64) limitField {
		return limitField{key: key, kind: kindBigInt, role: roleMaximum, num: f}
	}
	return []limitField{
		count("cpus", roleConsumable, func(l *Limits) **int64 { return &l.CPUs }),
		count("cpus_offset", roleOffset, func(l *Limits) **int64 { return &l.CPUsOffset }),
		size("memory", roleConsumable, func(l *Limits) **int64 { return &l.Memory }),
		size("swap", roleConsumable, func(l *Limits) **int64 { return &l.Swap }),
		count("pids", roleConsumable, func(l *Limits) **int64 { return &l.Pids }),
		size("storage", roleConsumable, func(l *Limits) **int64 { return &l.Storage }),
		size("image", roleMaximum, func(l *Limits) **int64 { return &l.Image }),
		size("workspace", roleConsumable, func(l *Limits) **int64 { return &l.Workspace }),
		{key: "time", kind: kindTime, role: roleMaximum, dur: func(l *Limits) **time.Duration { return &l.Time }},
		{key: "network", kind: kindBool, role: roleNetwork, flag: func(l *Limits) **bool { return &l.Network }},
		count("gpus", roleConsumable, func(l *Limits) **int64 { return &l.GPUs }),
		count("gpus_offset", roleOffset, func(l *Limits) **int64 { return &l.GPUsOffset }),
		size("gpu_memory", roleMaximum, func(l *Limits) **int64 { return &l.GPUMemory }),
		big("perf_instructions", func(l *Limits) **int64 { return &l.PerfInstructions }),
		big("perf_cycles", func(l *Limits) **int64 { return &l.PerfCycles }),
		count("cgroup_depth", roleMaximum, func(l *Limits) **int64 { return &l.CgroupDepth }),
		count("cgroup_descendants", roleMaximum, func(l *Limits) **int64 { return &l.CgroupDescendants }),
	}
}

// get returns a numeric limit (nanoseconds for time); ok is false when it is
// absent or is the network flag.
func (f limitField) get(l *Limits) (v int64, ok bool) {
	switch {
	case f.num != nil:
		if p := *f.num(l); p != nil {
			return *p, true
		}
	case f.dur != nil:
		if p := *f.dur(l); p != nil {
			return int64(*p), true
		}
	}
	return 0, false
}

// present reports whether the limit is set, of whatever kind.
func (f limitField) present(l *Limits) bool {
	if f.flag != nil {
		return *f.flag(l) != nil
	}
	_, ok := f.get(l)
	return ok
}

// set stores a numeric limit in a fresh pointer.
func (f limitField) set(l *Limits, v int64) {
	switch {
	case f.num != nil:
		*f.num(l) = &v
	case f.dur != nil:
		d := time.Duration(v)
		*f.dur(l) = &d
	}
}

// copyFrom copies the field from src into l, without sharing the pointer.
func (f limitField) copyFrom(l, src *Limits) {
	switch {
	case f.flag != nil:
		*f.flag(l) = nil
		if p := *f.flag(src); p != nil {
			b := *p
			*f.flag(l) = &b
		}
	default:
		f.clear(l)
		if v, ok := f.get(src); ok {
			f.set(l, v)
		}
	}
}

func (f limitField) clear(l *Limits) {
	switch {
	case f.num != nil:
		*f.num(l) = nil
	case f.dur != nil:
		*f.dur(l) = nil
	case f.flag != nil:
		*f.flag(l) = nil
	}
}

// format spells a set value as it is written in JSON (nil when absent).
func (f limitField) format(l *Limits) any {
	if f.flag != nil {
		if p := *f.flag(l); p != nil {
			return *p
		}
		return nil
	}
	v, ok := f.get(l)
	if !ok {
		return nil
	}
	switch f.kind {
	case kindSize:
		return FormatSize(v)
	case kindTime:
		return FormatTime(time.Duration(v))
	}
	return v
}

// parse reads the field from a string, as ParseLimit does.
func (f limitField) parse(l *Limits, value string) error {
	switch f.kind {
	case kindBool:
		b, err := ParseBool(value)
		if err != nil {
			return err
		}
		*f.flag(l) = &b
		return nil
	case kindTime:
		d, err := ParseTime(value)
		if err != nil {
			return err
		}
		f.set(l, int64(d))
		return nil
	}
	var v int64
	var err error
	switch f.kind {
	case kindSize:
		v, err = ParseSize(value)
	case kindBigInt:
		v, err = ParseBigInt(value)
	default:
		v, err = parseValue(value, "count", parseCount)
	}
	if err != nil {
		return err
	}
	f.set(l, v)
	return nil
}

// LimitKeys returns the keys of the limits object, in the contract's order.
func LimitKeys() []string {
	fields := limitFields()
	keys := make([]string, len(fields))
	for i, f := range fields {
		keys[i] = f.key
	}
	return keys
}

func sortedLimitKeys() []string {
	keys := LimitKeys()
	slices.Sort(keys)
	return keys
}

// ParseLimit sets the limit named key (a JSON key; dashes may stand for
// underscores, as in "gpu-memory") from its string spelling: sizes as
// ParseSize, times as ParseTime, network as ParseBool, perf_* as ParseBigInt,
// the rest as whole numbers. On error l is unchanged.
func ParseLimit(l *Limits, key, value string) error {
	name := strings.ReplaceAll(strings.TrimSpace(key), "-", "_")
	for _, f := range limitFields() {
		if f.key == name {
			if err := f.parse(l, value); err != nil {
				return &Error{Field: key, Problem: err.Error()}
			}
			return nil
		}
	}
	problem := fmt.Sprintf("unknown limit (known limits: %s)", strings.Join(LimitKeys(), ", "))
	if s := suggest(name, LimitKeys()); s != "" {
		problem = fmt.Sprintf("unknown limit (did you mean %q?)", s)
	}
	return &Error{Field: key, Problem: problem}
}

// ParseLimitList reads limits written "key=value,key=value", as
// kolejka.conf and command-line options give them (e.g. "cpus=1,memory=1G"),
// each value spelled as ParseLimit takes it.
func ParseLimitList(v string) (Limits, error) {
	var l Limits
	for _, kv := range strings.Split(v, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return Limits{}, fmt.Errorf("%q: expected key=value", kv)
		}
		if err := ParseLimit(&l, strings.TrimSpace(k), strings.TrimSpace(val)); err != nil {
			return Limits{}, err
		}
	}
	return l, nil
}

// ParseLimits reads a JSON limits object (as in a task, the server's
// settings or a dequeue request) strictly: unknown keys and bad values are
// *Errors naming file and key.
func ParseLimits(data []byte, file string) (Limits, error) {
	return decodeFile(data, file, func(d *decoder, n *node) Limits { return d.limits(n, "") })
}

// limits reads a limits object.
func (d *decoder) limits(n *node, path string) Limits {
	var l Limits
	m := d.fields(n, path, sortedLimitKeys()...)
	for _, f := range limitFields() {
		v, p := m.at(f.key)
		switch f.kind {
		case kindCount:
			*f.num(&l) = d.count(v, p)
		case kindSize:
			*f.num(&l) = d.size(v, p)
		case kindBigInt:
			*f.num(&l) = d.bigInt(v, p)
		case kindTime:
			*f.dur(&l) = d.duration(v, p)
		case kindBool:
			*f.flag(&l) = d.boolean(v, p)
		}
	}
	return l
}

// jsonValue is the limits object as written: absent limits left out.
func (l Limits) jsonValue() object {
	o := object{}
	for _, f := range limitFields() {
		if v := f.format(&l); v != nil {
			o[f.key] = v
		}
	}
	return o
}

// check reports negative limits, which no parser produces but code might.
func (l Limits) check(p *problems, path string) {
	for _, f := range limitFields() {
		if v, ok := f.get(&l); ok && v < 0 {
			p.add(fieldPath(path, f.key), "negative (%v)", f.format(&l))
		}
	}
}

// MarshalJSON writes the limits object in Kolejka's canonical form.
func (l Limits) MarshalJSON() ([]byte, error) {
	var p problems
	l.check(&p, "limits")
	if err := p.err(); err != nil {
		return nil, err
	}
	return encodeJSON(l.jsonValue())
}

// UnmarshalJSON reads a limits object as ParseLimits does.
func (l *Limits) UnmarshalJSON(data []byte) error {
	return unmarshalValue(data, "limits", ParseLimits, func(v Limits) { *l = v })
}

// IsZero reports whether no limit is set.
func (l Limits) IsZero() bool {
	for _, f := range limitFields() {
		if f.format(&l) != nil {
			return false
		}
	}
	return true
}

// Clone returns a copy of l that shares no pointer with it.
func (l Limits) Clone() Limits {
	var c Limits
	for _, f := range limitFields() {
		f.copyFrom(&c, &l)
	}
	return c
}

// String lists the set limits compactly for logs, e.g.
// "cpus=2 memory=64M time=10.0s network=false"; "none" when no limit is set.
func (l Limits) String() string {
	var parts []string
	for _, f := range limitFields() {
		v := f.format(&l)
		if v == nil {
			continue
		}
		if f.kind == kindSize {
			n, _ := f.get(&l)
			v = humanSize(n)
		}
		parts = append(parts, fmt.Sprintf("%s=%v", f.key, v))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// humanSize spells n in the largest binary unit that divides it exactly, in
// a form ParseSize reads back: "64M", "1536K", "1000b".
func humanSize(n int64) string {
	if n == 0 {
		return "0"
	}
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"P", 50}, {"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return FormatSize(n)
}
