package spec

// This file owns the limit arithmetic the server, foreman and worker share:
// capping a task by configurations (Merge), and deciding whether a task fits
// what a node has left and what it takes there (Fit, Consume, Release).

// Merge returns the field-wise minimum of l and every cap, ignoring absent
// values: a limit set anywhere is kept, the smallest wins. For network,
// false wins. Offsets take the minimum too, as Kolejka does. gpus is a
// limit like any other (Kolejka lets an absent gpus win, which drops every
// GPU request on a server without a GPU cap). The result shares no pointer
// with l or the caps.
func (l Limits) Merge(caps ...Limits) Limits {
	out := l.Clone()
	fields := limitFields()
	for i := range caps {
		c := &caps[i]
		for _, f := range fields {
			if f.flag != nil {
				cp := *f.flag(c)
				if cp == nil {
					continue
				}
				if op := *f.flag(&out); op == nil || !*cp {
					b := *cp
					*f.flag(&out) = &b
				}
				continue
			}
			cv, ok := f.get(c)
			if !ok {
				continue
			}
			if ov, ok := f.get(&out); !ok || cv < ov {
				f.set(&out, cv)
			}
		}
	}
	return out
}

// Fit reports whether a task asking for task can run on a node that has free
// left, and the limits it runs with there.
//
// Consumables (cpus, memory, swap, pids, storage, workspace, gpus) are held
// by the task while it runs. For each one free declares: a value the task
// gives must be at most free's; a value the task omits becomes defaults'
// value if defaults declares one (which must be at most free's), else all
// that is free, which must then be more than zero (swap may be zero: no
// swap). gpus is the exception: an omitted gpus without a default is 0, as
// in Kolejka, so that a task that asks for no GPU does not hold them all.
// (Kolejka refuses every task that omits a limit the node declares; we
// schedule it.) Consumables free does not declare keep the task's value.
//
// Per-task maxima (time, image, gpu_memory, perf_instructions, perf_cycles,
// cgroup_depth, cgroup_descendants) follow the same rule when free declares
// them, but are not used up.
//
// If free.Network is false, a task asking for network does not fit and a
// task that omits it gets false. Offsets are left as the task has them.
//
// The limits returned share no pointer with the arguments; when the task
// does not fit they are zero.
func Fit(task, free, defaults Limits) (Limits, bool) {
	out := task.Clone()
	for _, f := range limitFields() {
		switch f.role {
		case roleConsumable, roleMaximum:
			have, declared := f.get(&free)
			if !declared {
				continue
			}
			want, given := f.get(&task)
			if !given {
				if d, ok := f.get(&defaults); ok {
					want = d
				} else if f.key == "gpus" {
					want = 0
				} else {
					want = have
					if have <= 0 && f.role == roleConsumable && f.key != "swap" {
						return Limits{}, false // nothing left to give
					}
				}
			}
			if want > have {
				return Limits{}, false
			}
			f.set(&out, want)
		case roleNetwork:
			if free.Network != nil && !*free.Network {
				if task.Network != nil && *task.Network {
					return Limits{}, false
				}
				off := false
				out.Network = &off
			}
		}
	}
	return out, true
}

// Or returns l with each limit it lacks taken from defaults, a copy that
// shares no pointer with either. Placements (cpus_offset, gpus_offset) are
// the node's to choose and are never filled.
func (l Limits) Or(defaults Limits) Limits {
	out := l.Clone()
	for _, f := range limitFields() {
		if f.role != roleOffset && !f.present(&out) {
			f.copyFrom(&out, &defaults)
		}
	}
	return out
}

// CapMaxima returns l with each per-task maximum (time, image, gpu_memory,
// perf counters, cgroup nesting) lowered to caps' where caps declares a
// lower one; consumables, placements and network are left as they are.
func (l Limits) CapMaxima(caps Limits) Limits {
	out := l.Clone()
	for _, f := range limitFields() {
		if f.role != roleMaximum {
			continue
		}
		v, ok := f.get(&out)
		c, capped := f.get(&caps)
		if ok && capped && c < v {
			f.set(&out, c)
		}
	}
	return out
}

// Consume takes the consumables of eff (the limits Fit returned for a task)
// from free, when the task starts. Only fields free declares change.
func (free *Limits) Consume(eff Limits) { free.shift(eff, -1) }

// Release gives back what Consume took, when the task ends.
func (free *Limits) Release(eff Limits) { free.shift(eff, +1) }

func (free *Limits) shift(eff Limits, sign int64) {
	for _, f := range limitFields() {
		if f.role != roleConsumable {
			continue
		}
		have, declared := f.get(free)
		used, given := f.get(&eff)
		if declared && given {
			f.set(free, have+sign*used)
		}
	}
}
