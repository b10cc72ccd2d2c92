package spec

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// limits builds Limits from "key=value" pairs with ParseLimit.
func limits(t *testing.T, pairs ...string) Limits {
	t.Helper()
	var l Limits
	for _, p := range pairs {
		k, v, _ := strings.Cut(p, "=")
		if err := ParseLimit(&l, k, v); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    []string
		caps [][]string
		want []string
	}{
		{"no caps", []string{"memory=1G"}, nil, []string{"memory=1G"}},
		{"smaller wins", []string{"memory=1G", "time=10s"}, [][]string{{"memory=512M", "time=20s"}}, []string{"memory=512M", "time=10s"}},
		{"absent never wins", []string{"memory=1G"}, [][]string{{"cpus=2"}}, []string{"memory=1G", "cpus=2"}},
		{"absent on the task side", nil, [][]string{{"memory=1G", "pids=10"}}, []string{"memory=1G", "pids=10"}},
		{"many caps", []string{"pids=100"}, [][]string{{"pids=50"}, {"pids=70"}, {}, {"pids=60"}}, []string{"pids=50"}},
		// Unlike Kolejka, where an absent gpus wins either way.
		{"gpus kept against a cap without gpus", []string{"gpus=2"}, [][]string{{"memory=1G"}}, []string{"gpus=2", "memory=1G"}},
		{"gpus capped", []string{"gpus=2"}, [][]string{{"gpus=1"}}, []string{"gpus=1"}},
		{"gpus from the cap", nil, [][]string{{"gpus=1"}}, []string{"gpus=1"}},
		{"network false wins", []string{"network=true"}, [][]string{{"network=false"}}, []string{"network=false"}},
		{"network false wins from the task", []string{"network=false"}, [][]string{{"network=true"}}, []string{"network=false"}},
		{"network true kept", []string{"network=true"}, [][]string{{"network=true"}, {}}, []string{"network=true"}},
		{"network from the cap", nil, [][]string{{"network=true"}}, []string{"network=true"}},
		{"offsets take the minimum", []string{"cpus_offset=4"}, [][]string{{"cpus_offset=2", "gpus_offset=1"}}, []string{"cpus_offset=2", "gpus_offset=1"}},
		{"every kind", []string{"swap=0", "perf_instructions=2g", "cgroup_depth=3", "image=2G", "gpu_memory=8G"},
			[][]string{{"swap=1M", "perf_instructions=1g", "cgroup_depth=5", "image=1G", "gpu_memory=16G", "cgroup_descendants=9"}},
			[]string{"swap=0", "perf_instructions=1g", "cgroup_depth=3", "image=1G", "gpu_memory=8G", "cgroup_descendants=9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var caps []Limits
			for _, c := range tc.caps {
				caps = append(caps, limits(t, c...))
			}
			got := limits(t, tc.l...).Merge(caps...)
			if want := limits(t, tc.want...); !reflect.DeepEqual(got, want) {
				t.Errorf("got %v; want %v", got, want)
			}
		})
	}
}

// Merge's result shares no pointer with its inputs.
func TestMergeCopies(t *testing.T) {
	l := limits(t, "memory=1G", "network=true")
	c := limits(t, "memory=2G", "time=1s", "network=false")
	m := l.Merge(c)
	*m.Memory, *m.Time, *m.Network = 1, 2, true
	if *l.Memory != 1<<30 || *c.Time != time.Second || *c.Network || !*l.Network {
		t.Errorf("Merge aliases its inputs: %v, %v", l, c)
	}
	n := l.Merge()
	*n.Memory = 5
	if *l.Memory != 1<<30 {
		t.Errorf("Merge() aliases its receiver")
	}
}

func TestFit(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		task, free, defaults []string
		fits                 bool
		want                 []string
	}{
		{"fits", []string{"cpus=2", "memory=1G"}, []string{"cpus=4", "memory=8G"}, nil, true, []string{"cpus=2", "memory=1G"}},
		{"too many cpus", []string{"cpus=8"}, []string{"cpus=4"}, nil, false, nil},
		{"too much memory", []string{"memory=9G"}, []string{"memory=8G"}, nil, false, nil},
		{"exactly all", []string{"memory=8G", "pids=100"}, []string{"memory=8G", "pids=100"}, nil, true, []string{"memory=8G", "pids=100"}},
		// Unlike Kolejka, which refuses a task that omits a limit the node declares.
		{"omitted gets all that is free", []string{"cpus=1"}, []string{"cpus=4", "memory=8G"}, nil, true, []string{"cpus=1", "memory=8G"}},
		{"omitted gets the default", nil, []string{"cpus=4", "memory=8G"}, []string{"memory=1G", "cpus=1"}, true, []string{"cpus=1", "memory=1G"}},
		{"default larger than free", nil, []string{"memory=512M"}, []string{"memory=1G"}, false, nil},
		{"omitted and nothing left", nil, []string{"memory=0"}, nil, false, nil},
		{"omitted swap and none left", nil, []string{"swap=0"}, nil, true, []string{"swap=0"}},
		{"omitted gpus is none", nil, []string{"gpus=4"}, nil, true, []string{"gpus=0"}},
		{"omitted gpus gets the default", nil, []string{"gpus=4"}, []string{"gpus=1"}, true, []string{"gpus=1"}},
		{"gpus asked", []string{"gpus=2"}, []string{"gpus=4"}, nil, true, []string{"gpus=2"}},
		{"gpus too many", []string{"gpus=2"}, []string{"gpus=1"}, nil, false, nil},
		{"undeclared consumable kept", []string{"storage=1G"}, []string{"cpus=4"}, []string{"memory=1G"}, true, []string{"storage=1G", "cpus=4"}},
		{"undeclared stays absent", nil, []string{"cpus=4"}, []string{"pids=10"}, true, []string{"cpus=4"}},
		{"time within the node's maximum", []string{"time=10s"}, []string{"time=1M"}, nil, true, []string{"time=10s"}},
		{"time over the node's maximum", []string{"time=2M"}, []string{"time=1M"}, nil, false, nil},
		{"omitted time gets the default", nil, []string{"time=1M"}, []string{"time=10s"}, true, []string{"time=10s"}},
		{"omitted time gets the node's maximum", nil, []string{"time=1M"}, nil, true, []string{"time=1M"}},
		{"perf over the maximum", []string{"perf_cycles=2g"}, []string{"perf_cycles=1g"}, nil, false, nil},
		{"cgroup depth", []string{"cgroup_depth=2"}, []string{"cgroup_depth=4", "cgroup_descendants=10"}, nil, true, []string{"cgroup_depth=2", "cgroup_descendants=10"}},
		{"network asked on a closed node", []string{"network=true"}, []string{"network=false"}, nil, false, nil},
		{"network omitted on a closed node", nil, []string{"network=false"}, nil, true, []string{"network=false"}},
		{"network refused on an open node", []string{"network=false"}, []string{"network=true"}, nil, true, []string{"network=false"}},
		{"network asked on an open node", []string{"network=true"}, []string{"network=true"}, nil, true, []string{"network=true"}},
		{"offsets untouched", []string{"cpus_offset=3"}, []string{"cpus_offset=0", "cpus=4"}, []string{"cpus_offset=1"}, true, []string{"cpus_offset=3", "cpus=4"}},
		{"overcommitted node", []string{"memory=1M"}, nil, nil, false, nil}, // free memory set to -1 below
		{"nothing declared", []string{"memory=1M"}, nil, nil, true, []string{"memory=1M"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task, free, defaults := limits(t, tc.task...), limits(t, tc.free...), limits(t, tc.defaults...)
			if tc.name == "overcommitted node" {
				neg := int64(-1)
				free.Memory = &neg
			}
			got, fits := Fit(task, free, defaults)
			if fits != tc.fits {
				t.Fatalf("fits = %v; want %v (got %v)", fits, tc.fits, got)
			}
			want := limits(t, tc.want...)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %v; want %v", got, want)
			}
		})
	}
}

func TestFitCopies(t *testing.T) {
	task := limits(t, "memory=1G", "cpus_offset=2", "network=true")
	free := limits(t, "time=1M", "cpus=4")
	eff, ok := Fit(task, free, Limits{})
	if !ok {
		t.Fatal("does not fit")
	}
	*eff.Memory, *eff.CPUsOffset, *eff.Time, *eff.CPUs, *eff.Network = 0, 0, 0, 0, false
	if *task.Memory != 1<<30 || *task.CPUsOffset != 2 || *free.Time != time.Minute || *free.CPUs != 4 || !*task.Network {
		t.Errorf("Fit aliases its inputs: %v, %v", task, free)
	}
}

func TestConsumeRelease(t *testing.T) {
	free := limits(t, "cpus=8", "memory=16G", "swap=1G", "pids=1000", "storage=100G", "workspace=10G", "gpus=2", "time=1H", "network=true", "image=10G")
	orig := free.Clone()
	var tasks []Limits
	for _, ask := range [][]string{
		{"cpus=2", "memory=4G", "pids=100", "gpus=1", "time=10s"},
		{"cpus=4", "memory=8G", "swap=1G", "storage=10G", "workspace=1G", "pids=100"},
		{},
	} {
		eff, ok := Fit(limits(t, ask...), free, limits(t, "memory=1G", "cpus=1", "storage=1G", "workspace=1G", "swap=0"))
		if !ok {
			t.Fatalf("%v does not fit in %v", ask, free)
		}
		free.Consume(eff)
		tasks = append(tasks, eff)
	}
	want := limits(t, "cpus=1", "memory=3G", "swap=0", "pids=0", "storage=88G", "workspace=7G", "gpus=1", "time=1H", "network=true", "image=10G")
	// Omitted limits took the defaults, gpus none, and the third task all
	// the pids that were left.
	if !reflect.DeepEqual(free, want) {
		t.Errorf("after Consume: %v; want %v", free, want)
	}
	if _, ok := Fit(limits(t, "cpus=2"), free, Limits{}); ok {
		t.Error("a task asking for 2 cpus fits in 1")
	}
	if _, ok := Fit(Limits{}, free, Limits{}); ok {
		t.Error("a task fits where no pids are left")
	}
	for _, eff := range tasks {
		free.Release(eff)
	}
	if !reflect.DeepEqual(free, orig) {
		t.Errorf("after Release: %v; want %v", free, orig)
	}
}

// Only fields free declares change.
func TestConsumeOnlyDeclared(t *testing.T) {
	free := limits(t, "memory=1G")
	free.Consume(limits(t, "memory=256M", "cpus=2", "time=1s"))
	if want := limits(t, "memory=768M"); !reflect.DeepEqual(free, want) {
		t.Errorf("got %v; want %v", free, want)
	}
}

func TestParseLimit(t *testing.T) {
	var l Limits
	for _, kv := range [][2]string{
		{"cpus", "2"}, {"cpus_offset", "1"}, {"memory", "1G"}, {"swap", "0"}, {"pids", "64"}, {"storage", "2G"},
		{"image", "3G"}, {"workspace", "64M"}, {"time", "1.5M"}, {"network", "no"}, {"gpus", "1"},
		{"gpus-offset", "0"}, {"gpu-memory", "8G"}, {"perf-instructions", "1.5g"}, {"perf_cycles", "2k"},
		{"cgroup-depth", "3"}, {"cgroup_descendants", "7"},
	} {
		if err := ParseLimit(&l, kv[0], kv[1]); err != nil {
			t.Fatalf("ParseLimit(%q, %q): %v", kv[0], kv[1], err)
		}
	}
	want := "cpus=2 cpus_offset=1 memory=1G swap=0 pids=64 storage=2G image=3G workspace=64M time=90.0s network=false " +
		"gpus=1 gpus_offset=0 gpu_memory=8G perf_instructions=1500000000 perf_cycles=2000 cgroup_depth=3 cgroup_descendants=7"
	if got := l.String(); got != want {
		t.Errorf("String() = %q;\nwant %q", got, want)
	}
	before := l.Clone()
	for _, tc := range []struct{ key, value, want string }{
		{"memmory", "1G", `memmory: unknown limit (did you mean "memory"?)`},
		{"bogus", "1", "bogus: unknown limit (known limits: cpus, cpus_offset, memory,"},
		{"memory", "1GiB", `memory: "1GiB" is not a size: unknown unit "i"`},
		{"cpus", "1.5", `cpus: "1.5" is not a count: not a whole number`},
		{"cpus", "-1", "negative"},
		{"time", "1h", `unknown unit "h"`},
		{"network", "maybe", "not a boolean"},
		{"perf-cycles", "1.5", "not a whole number"},
	} {
		err := ParseLimit(&l, tc.key, tc.value)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseLimit(%q, %q) = %v; want %q", tc.key, tc.value, err, tc.want)
		}
	}
	if !reflect.DeepEqual(l, before) {
		t.Errorf("failed ParseLimit changed the limits: %v", l)
	}
}

func TestLimitsHelpers(t *testing.T) {
	if got := len(LimitKeys()); got != 17 {
		t.Errorf("%d limit keys; want 17", got)
	}
	if !(Limits{}).IsZero() || limits(t, "swap=0").IsZero() || limits(t, "network=false").IsZero() {
		t.Error("IsZero is wrong")
	}
	if got := (Limits{}).String(); got != "none" {
		t.Errorf("String of no limits = %q", got)
	}
	// Sizes in the largest unit that divides them: 1536K is 1.5M, not a
	// whole number of M; 1.5k is 1536 bytes.
	if got := limits(t, "memory=1000", "storage=1536K", "image=1.5k").String(); got != "memory=1000b storage=1536K image=1536b" {
		t.Errorf("String = %q", got)
	}
	// Every field is set, copied and formatted: a key missing from the
	// table would leave a field behind.
	all := limits(t, "cpus=1", "cpus_offset=1", "memory=1", "swap=1", "pids=1", "storage=1", "image=1", "workspace=1",
		"time=1", "network=true", "gpus=1", "gpus_offset=1", "gpu_memory=1", "perf_instructions=1", "perf_cycles=1",
		"cgroup_depth=1", "cgroup_descendants=1")
	v := reflect.ValueOf(all)
	for i := range v.NumField() {
		if v.Field(i).IsNil() {
			t.Errorf("field %s not set by ParseLimit", v.Type().Field(i).Name)
		}
	}
	c := all.Clone()
	cv := reflect.ValueOf(c)
	for i := range cv.NumField() {
		if cv.Field(i).Pointer() == v.Field(i).Pointer() {
			t.Errorf("Clone shares field %s", v.Type().Field(i).Name)
		}
	}
	if !reflect.DeepEqual(c, all) {
		t.Errorf("Clone differs: %v", c)
	}
}

func TestOr(t *testing.T) {
	task := limits(t, "memory=1G", "network=false")
	defaults := limits(t, "memory=2G", "cpus=1", "time=1H", "network=true", "cgroup_depth=3", "cpus_offset=2", "gpus_offset=1")
	got := task.Or(defaults)
	if want := limits(t, "memory=1G", "cpus=1", "time=1H", "network=false", "cgroup_depth=3"); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v; want %v (the task's own kept, the rest filled, placements never)", got, want)
	}
	*got.CPUs, *got.Time = 7, time.Minute
	if *defaults.CPUs != 1 || *defaults.Time != time.Hour {
		t.Errorf("Or aliases its defaults: %v", defaults)
	}
}

func TestCapMaxima(t *testing.T) {
	d := limits(t, "time=1H", "image=2G", "cgroup_depth=5", "memory=8G", "cpus_offset=3")
	got := d.CapMaxima(limits(t, "time=10M", "cgroup_depth=9", "memory=1G", "cpus_offset=1"))
	if want := limits(t, "time=10M", "image=2G", "cgroup_depth=5", "memory=8G", "cpus_offset=3"); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v; want %v (only lower maxima lower it; consumables and placements untouched)", got, want)
	}
	if *d.Time != time.Hour {
		t.Errorf("CapMaxima changed its receiver: %v", d)
	}
}
