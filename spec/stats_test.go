package spec

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// Sums of huge CPU times saturate at a time that can be written and read.
func TestStatsSumSaturates(t *testing.T) {
	in := `{"stats": {"cpu": {"user": "9223372036.854774s", "system": "9223372036.854774s"},
	  "cpus": {"0": {"user": "9223372036.854774s"}, "1": {"user": "9223372036.854774s"}}}}`
	r, err := ParseResult([]byte(in), ResultFile)
	if err != nil {
		t.Fatal(err)
	}
	data, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseResult(data, ResultFile); err != nil {
		t.Fatalf("written stats do not read back: %v\n%s", err, data)
	}
	if !strings.Contains(string(data), `"usage": "9223372036.854774s"`) {
		t.Errorf("usage not saturated:\n%s", data)
	}
}

// Normalize is Kolejka's load-time consistency: usage >= user+system per
// core and in total, total >= the sum over cores, peaks >= readings.
func TestNormalize(t *testing.T) {
	ms := time.Millisecond
	s := Stats{
		CPU: CPUStats{User: dur(100 * ms)},
		CPUs: map[string]CPUStats{
			"0": {User: dur(300 * ms), System: dur(100 * ms)},
			"1": {Usage: dur(200 * ms)},
		},
		Memory: MemoryStats{Usage: i64(10), MaxUsage: i64(5), Swap: i64(3)},
		Pids:   PidsStats{Usage: i64(4)},
	}
	s.Normalize()
	want := Stats{
		CPU: CPUStats{Usage: dur(600 * ms), User: dur(300 * ms), System: dur(100 * ms)},
		CPUs: map[string]CPUStats{
			"0": {Usage: dur(400 * ms), User: dur(300 * ms), System: dur(100 * ms)},
			"1": {Usage: dur(200 * ms)},
		},
		Memory: MemoryStats{Usage: i64(10), MaxUsage: i64(10), Swap: i64(3), MaxSwap: i64(3)},
		Pids:   PidsStats{Usage: i64(4), MaxUsage: i64(4)},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got\n%+v\nwant\n%+v", s, want)
	}
}

// Writing stats rounds times to microseconds and normalises after rounding,
// without touching the caller's values, so what is written reads back as
// written.
func TestStatsEncodeCanonical(t *testing.T) {
	ns := time.Nanosecond
	r := &Result{Stats: Stats{
		CPU:  CPUStats{Usage: dur(1200 * ns), User: dur(600 * ns), System: dur(600 * ns)},
		GPUs: map[string]GPUStats{"0": {Name: "T4", MemoryTotal: i64(1 << 30)}},
	}}
	data, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"usage": "2e-06s"`, `"user": "1e-06s"`, `"system": "1e-06s"`, `"memory_total": "1073741824b"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("missing %s in\n%s", want, data)
		}
	}
	if *r.Stats.CPU.Usage != 1200*ns {
		t.Errorf("Encode changed the caller's stats: %v", *r.Stats.CPU.Usage)
	}
	back, err := ParseResult(data, ResultFile)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.Encode()
	if string(again) != string(data) {
		t.Errorf("not a fixed point:\n%s\n%s", data, again)
	}
}

func TestParseStats(t *testing.T) {
	s, err := ParseStats([]byte(`{"memory": {"max_usage": "1M"}, "time": 0.25}`), "observer")
	if err != nil || *s.Memory.MaxUsage != 1<<20 || *s.Time != 250*time.Millisecond {
		t.Fatalf("ParseStats = %+v, %v", s, err)
	}
	_, err = ParseStats([]byte(`{"memory": {"max_usage": "1M"}, "tiem": 1}`), "observer")
	assertProblem(t, err, "observer", "tiem", `did you mean "time"?`)
	_, err = ParseStats([]byte(`[]`), "observer")
	assertProblem(t, err, "observer", "", "expected a JSON object")
}
