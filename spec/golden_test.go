package spec

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/loose/*.want.json from the current output")

// canonical parses a task or result file (by its name) and encodes it again.
func canonical(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	var out []byte
	var err error
	if strings.HasPrefix(filepath.Base(name), "result") {
		var r *Result
		if r, err = ParseResult(data, name); err == nil {
			out, err = r.Encode()
		}
	} else {
		var task *Task
		if task, err = ParseTask(data, name); err == nil {
			out, err = task.Encode()
		}
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

// The files in testdata/golden are written exactly as Kolejka's
// json.dump(sort_keys=True, indent=2, ensure_ascii=False) writes them (they
// were produced by CPython 3.11's json module). Reading and writing them
// again must give the same bytes.
func TestGoldenRoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.json")
	if err != nil || len(files) < 5 {
		t.Fatalf("golden files: %v, %v", files, err)
	}
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if got := canonical(t, name, data); !bytes.Equal(got, data) {
				t.Errorf("not byte-identical after a round trip:\ngot:\n%s\nwant:\n%s", got, data)
			}
		})
	}
}

// Loosely written inputs (string file specs, "64M", numbers for strings)
// must give their canonical form in the .want.json next to them, which is
// itself a fixed point. Run with -update to rewrite the .want.json files
// after checking the difference.
func TestLooseCanonical(t *testing.T) {
	files, err := filepath.Glob("testdata/loose/*.json")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range files {
		if strings.HasSuffix(name, ".want.json") {
			continue
		}
		n++
		t.Run(filepath.Base(name), func(t *testing.T) {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			got := canonical(t, name, data)
			wantFile := strings.TrimSuffix(name, ".json") + ".want.json"
			if *update {
				if err := os.WriteFile(wantFile, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("canonical form differs from %s:\ngot:\n%s\nwant:\n%s", wantFile, got, want)
			}
			if again := canonical(t, wantFile, want); !bytes.Equal(again, want) {
				t.Errorf("%s is not a fixed point:\n%s", wantFile, again)
			}
		})
	}
	if n < 2 {
		t.Fatalf("found %d loose inputs", n)
	}
}

func i64(v int64) *int64                 { return &v }
func dur(d time.Duration) *time.Duration { return &d }
func flag_(b bool) *bool                 { return &b }

// The values behind testdata/loose/task_kolejka.want.json, asserted one by
// one so that the .want file is not the only judge.
func TestParseTaskLoose(t *testing.T) {
	data, err := os.ReadFile("testdata/loose/task_kolejka.json")
	if err != nil {
		t.Fatal(err)
	}
	task, err := ParseTask(data, TaskFile)
	if err != nil {
		t.Fatal(err)
	}
	wantArgs := []string{"sh", "-c", "echo $N", "42", "1.5", "1000.0", "0", "12345678901234567890"}
	if !reflect.DeepEqual(task.Args, wantArgs) {
		t.Errorf("args = %q; want %q", task.Args, wantArgs)
	}
	wantEnv := map[string]string{"N": "5", "F": "1.5", "E": "1000.0", "Z": "0", "NEG": "-7", "TINY": "1e-07", "S": "x"}
	if !reflect.DeepEqual(task.Environment, wantEnv) {
		t.Errorf("environment = %q; want %q", task.Environment, wantEnv)
	}
	wantLimits := Limits{
		CPUs:             i64(4),
		Memory:           i64(64 << 20),
		Swap:             i64(0),
		Pids:             i64(100),
		Storage:          i64(1000), // 1000.5 rounds to even
		Image:            i64(1536 << 20),
		Workspace:        i64(64 << 20),
		Time:             dur(500 * time.Millisecond),
		Network:          flag_(true),
		GPUs:             i64(2),
		GPUMemory:        i64(1000 << 10),
		PerfInstructions: i64(1_500_000_000),
		PerfCycles:       i64(2_000_000_000),
		CgroupDepth:      i64(3),
	}
	if !reflect.DeepEqual(task.Limits, wantLimits) {
		t.Errorf("limits = %v; want %v", task.Limits, wantLimits)
	}
	wantFiles := map[string]File{
		"input.txt": {Path: "input.txt"},
		"data/in":   {Path: "tests/in1"},
		"judge.py":  {Path: "judge.py"},
	}
	if !reflect.DeepEqual(task.Files, wantFiles) {
		t.Errorf("files = %+v; want %+v", task.Files, wantFiles)
	}
	wantCollect := []Collect{{Glob: "out/**", Strip: 2, Prefix: "results"}, {Glob: "*.txt"}}
	if !reflect.DeepEqual(task.Collect, wantCollect) {
		t.Errorf("collect = %+v; want %+v", task.Collect, wantCollect)
	}
	if task.Exclusive == nil || *task.Exclusive || task.Stdin != "input.txt" || task.Stdout != "" || task.ID != "" || task.Image != "alpine" {
		t.Errorf("scalars wrong: %+v", task)
	}
	if err := task.Validate(Local); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// Kolejka's older result: GPU keys total_memory/memory_usage, no perf, and
// stats that need Kolejka's normalisation.
func TestParseResultLoose(t *testing.T) {
	data, err := os.ReadFile("testdata/loose/result_kolejka.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseResult(data, ResultFile)
	if err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	want := Stats{
		// usage = max(0.5, sum 0.7, user+system 0.65+0.3).
		CPU: CPUStats{Usage: dur(950 * ms), User: dur(650 * ms), System: dur(300 * ms)},
		CPUs: map[string]CPUStats{
			"0": {Usage: dur(200 * ms), User: dur(200 * ms)},
			"3": {Usage: dur(500 * ms), User: dur(450 * ms), System: dur(50 * ms)},
		},
		Memory: MemoryStats{Usage: i64(1 << 20), MaxUsage: i64(1 << 20), Swap: i64(2048), MaxSwap: i64(2048), Failures: i64(3)},
		Pids:   PidsStats{Usage: i64(5), MaxUsage: i64(5)},
		Time:   dur(1500 * ms),
		GPUs: map[string]GPUStats{"0": {Name: "Tesla T4", ID: "tesla t4", MemoryTotal: i64(15 << 30),
			MaxMemoryUsage: i64(1 << 20), MaxTemperature: i64(-3), MaxUtilization: i64(0)}},
	}
	if !reflect.DeepEqual(r.Stats, want) {
		t.Errorf("stats =\n%+v\nwant\n%+v", r.Stats, want)
	}
	if r.Result == nil || *r.Result != 1 || r.Status != "" || r.ID != "x1" || r.Stdout != "stdout" {
		t.Errorf("scalars wrong: %+v", r)
	}
	if err := r.Validate(Local); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
