package spec

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func quantitySeeds() []string {
	return []string{"64M", "1.5G", "64MB", "0", "64MiB", "1e3k", " 5 k", "-1", "nan", "1_0", "500m", "2M", "1.5H", "1h",
		"10", "1µ", "5μ", "1500n", "1.5k", "9p", "1kkkkkkkkkkkkkkkkkk", "1e999999999", ".5", "5.", "0x10", "+0", "9223372036854775807b"}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range quantitySeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), strconv.Quote(s)+" is not a size: ") {
				t.Fatalf("error %q does not quote the input", err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		if back, err := ParseSize(FormatSize(n)); err != nil || back != n {
			t.Fatalf("ParseSize(FormatSize(%d)) = %d, %v", n, back, err)
		}
	})
}

func FuzzParseTime(f *testing.F) {
	for _, s := range quantitySeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseTime(s)
		if err != nil {
			return
		}
		if d < 0 || d%time.Microsecond != 0 {
			t.Fatalf("ParseTime(%q) = %d ns", s, d)
		}
		back, err := ParseTime(FormatTime(d))
		if err != nil {
			t.Fatalf("ParseTime(FormatTime(%v)) failed: %v", d, err)
		}
		if diff := (back - d).Abs(); d < (1<<53)*time.Microsecond && diff != 0 || diff > 2*time.Microsecond {
			t.Fatalf("ParseTime(FormatTime(%v)) = %v", d, back)
		}
		if again, _ := ParseTime(FormatTime(back)); again != back {
			t.Fatalf("FormatTime is not a fixed point at %v", back)
		}
	})
}

func FuzzParseBigInt(f *testing.F) {
	for _, s := range quantitySeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBigInt(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseBigInt(%q) = %d", s, n)
		}
		if back, err := ParseBigInt(strconv.FormatInt(n, 10)); err != nil || back != n {
			t.Fatalf("ParseBigInt(%d) = %d, %v", n, back, err)
		}
	})
}

func FuzzParseBool(f *testing.F) {
	for _, s := range []string{"true", "FALSE", " yes ", "No", "1", "0", "maybe", "", "on", "trué"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBool(s)
		word := strings.ToLower(strings.TrimSpace(s))
		accepted := map[string]bool{"true": true, "yes": true, "1": true, "false": false, "no": false, "0": false}
		want, known := accepted[word]
		if known != (err == nil) || (known && b != want) {
			t.Fatalf("ParseBool(%q) = %v, %v", s, b, err)
		}
	})
}

// seedFiles adds the golden and loose files matching pattern to the corpus.
func seedFiles(f *testing.F, patterns ...string) {
	n := 0
	for _, p := range patterns {
		files, _ := filepath.Glob(p)
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
			n++
		}
	}
	if n == 0 {
		f.Fatalf("no seed files for %q", patterns)
	}
}

// checkParseError requires a parse error to be made of *Errors naming the file.
func checkParseError(t *testing.T, err error) {
	var pe *Error
	if !errors.As(err, &pe) || pe.File != "fuzz.json" {
		t.Fatalf("error %v (%T) is not an *Error of fuzz.json", err, err)
	}
}

func FuzzParseTask(f *testing.F) {
	seedFiles(f, "testdata/golden/task*.json", "testdata/loose/task*.json")
	f.Add([]byte(goodTask))
	f.Add([]byte(`{"args": [1, 2.50, -0, 1e400], "environment": {"a": 1E-7, "b": "\u2028"}, "collect": [{"glob": "x", "strip": "3", "prefix": "//a//"}],
		"limits": {"time": 1e-7, "memory": 0.5, "perf_cycles": 1.5e3, "network": "No", "cgroup_depth": 2.0}, "exclusive": "YES"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		task, err := ParseTask(data, "fuzz.json")
		if err != nil {
			checkParseError(t, err)
			return
		}
		_ = task.Validate(Local)
		_ = task.Validate(Server)
		first, err := task.Encode()
		if err != nil {
			t.Fatalf("a parsed task does not encode: %v", err)
		}
		again, err := ParseTask(first, "fuzz.json")
		if err != nil {
			t.Fatalf("the encoded task does not parse: %v\n%s", err, first)
		}
		if !reflect.DeepEqual(task, again) {
			t.Fatalf("the task changed through Encode:\n%+v\n%+v", task, again)
		}
		second, err := again.Encode()
		if err != nil || !bytes.Equal(first, second) {
			t.Fatalf("Encode is not a fixed point (%v):\n%s\n%s", err, first, second)
		}
	})
}

func FuzzParseResult(f *testing.F) {
	seedFiles(f, "testdata/golden/result*.json", "testdata/loose/result*.json")
	f.Add([]byte(`{"stats": {"cpu": {"user": "1e-06s", "system": 0.5}, "cpus": {"0": {"usage": "2m"}, "12": {}},
		"memory": {"usage": 1.5, "swap": "1k"}, "pids": {"usage": "3"}, "perf": {"cycles": "2k"},
		"gpus": {"a": {"total_memory": 5, "memory_usage": "1M", "max_temperature": "-4"}}}, "result": -1, "status": "SE"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseResult(data, "fuzz.json")
		if err != nil {
			checkParseError(t, err)
			return
		}
		_ = r.Validate(Local)
		_ = r.Validate(Server)
		first, err := r.Encode()
		if err != nil {
			t.Fatalf("a parsed result does not encode: %v", err)
		}
		again, err := ParseResult(first, "fuzz.json")
		if err != nil {
			t.Fatalf("the encoded result does not parse: %v\n%s", err, first)
		}
		if !reflect.DeepEqual(r, again) {
			t.Fatalf("the result changed through Encode:\n%+v\n%+v", r, again)
		}
		second, err := again.Encode()
		if err != nil || !bytes.Equal(first, second) {
			t.Fatalf("Encode is not a fixed point (%v):\n%s\n%s", err, first, second)
		}
	})
}
