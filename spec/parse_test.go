package spec

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		// The contract's examples.
		{"64M", 67108864},
		{"1.5G", 1610612736},
		{"64MB", 67108864},
		{"0", 0},
		// Case, multiple suffixes, white space (Kolejka strips, and float()
		// strips again between number and unit).
		{"1kb", 1024},
		{"1KB", 1024},
		{"1bk", 1024},
		{"1kk", 1 << 20},
		{" 64m ", 67108864},
		{"\t64 M\n", 67108864},
		{"64", 64},
		{"64b", 64},
		{"1t", 1 << 40},
		{"1P", 1 << 50},
		{"7p", 7 << 50},
		// Number forms of Python's float().
		{"1e3k", 1024000},
		{"1E3", 1000},
		{".5k", 512},
		{"5.", 5},
		{"+5", 5},
		{"-0", 0},
		{"0.0009765625k", 1},
		{"1e-3", 0},
		{"00012", 12},
		// Rounding: to nearest, ties to even (Python round()).
		{"2.5", 2},
		{"3.5", 4},
		{"1.5", 2},
		{"0.5", 0},
		{"2.5000001", 3},
		{"0.4999", 0},
		{"1.0009765625k", 1025},
		// Exact for every int64, unlike a float.
		{"9007199254740993", 9007199254740993},
		{"9223372036854775807b", math.MaxInt64},
		{"8191.999999999999p", 9223372036854774682},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestParseSizeErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"64MiB", `"64MiB" is not a size: unknown unit "i" (use b, k, m, g, t, p)`},
		{"", `"" is not a size: empty`},
		{"   ", "empty"},
		{"k", "no number before the unit"},
		{"MB", "no number before the unit"},
		{"abc", "not a number"},
		{"-1", "negative"},
		{"-1k", "negative"},
		{"nan", "not a finite number"},
		{"inf", "not a finite number"},
		{"-Infinity", "not a finite number"},
		{"infb", "not a finite number"},
		{"1_000", `"_" is not allowed`},
		{"9223372036854775808", "too large"},
		{"8192p", "too large"},
		{"1e30", "too large"},
		{"1e999999999999999999", "too large"},
		{"1kkkkkkkkkkkkkkkkk", "more than 16 unit suffixes"},
		{"64x", `unknown unit "x"`},
		{"5k m", "malformed number"},
		{"6 4", "malformed number"},
		{"1..5", "malformed number"},
		{".", "not a number"},
		{"e5", `not a number`},
		{"1e", `unknown unit "e"`},
		{"٣", "not a number"},                   // Python's float() reads Arabic-Indic digits; we do not
		{"64\u212a", "unknown unit \"\u212a\""}, // the Kelvin sign is not a k
	} {
		_, err := ParseSize(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSize(%q) error = %v; want it to contain %q", tc.in, err, tc.want)
		}
	}
}

func TestParseTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"1s", time.Second},
		{"500m", 500 * time.Millisecond},
		{"2M", 2 * time.Minute},
		{"1.5H", 90 * time.Minute},
		{"10", 10 * time.Second},
		{"1W", 7 * 24 * time.Hour},
		{"1D", 24 * time.Hour},
		{"100ms", 100 * time.Millisecond},
		{"1e3m", time.Second},
		{"250µ", 250 * time.Microsecond},
		{"1500n", 2 * time.Microsecond}, // 1.5µs, tie to even
		{"2500n", 2 * time.Microsecond}, // 2.5µs, tie to even
		{"2501n", 3 * time.Microsecond},
		{"0.0000015", 2 * time.Microsecond},
		{"0.4µ", 0},
		{" 10s ", 10 * time.Second},
		{"10 s", 10 * time.Second},
		{"0.5Ms", 30 * time.Second}, // suffixes multiply: s × M
		{"2562047H", 2562047 * time.Hour},
		{"0", 0},
	} {
		got, err := ParseTime(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseTimeErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"1h", `unknown unit "h" (did you mean "H"? use W, D, H, M, s, m, µ, n; units are case-sensitive)`},
		{"1d", `unknown unit "d" (did you mean "D"?`},
		{"2S", `did you mean "s"?`},
		{"5μ", "U+03BC GREEK SMALL LETTER MU; microseconds are µ, U+00B5 MICRO SIGN"},
		{"5us", "microseconds are µ, U+00B5"},
		{"1x", `unknown unit "x" (use W, D, H, M, s, m, µ, n`},
		{"-1s", "negative"},
		{"nan", "not a number"}, // n is a unit; Kolejka fails on float("na") too
		{"inf", "not a finite number"},
		{"", "empty"},
		{"s", "no number before the unit"},
		{"2562048H", "too large"},
		{"1e300", "too large"},
	} {
		_, err := ParseTime(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTime(%q) error = %v; want it to contain %q", tc.in, err, tc.want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), `"`+tc.in+`" is not a time: `) {
			t.Errorf("ParseTime(%q) error = %v; want it to quote the input", tc.in, err)
		}
	}
}

func TestParseBigInt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"1000", 1000},
		{"1k", 1000},
		{"1K", 1000},
		{"1.5k", 1500},
		{"2m", 2_000_000},
		{"2g", 2_000_000_000},
		{"3T", 3_000_000_000_000},
		{"9p", 9_000_000_000_000_000},
		{"1kk", 1_000_000},
		{"1e9", 1_000_000_000},
		{"0.001k", 1},
		{" 7 ", 7},
		{"0", 0},
	} {
		got, err := ParseBigInt(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseBigInt(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"1.5", "not a whole number"},
		{"1.0001k", "not a whole number"},
		{"1e-9", "not a whole number"},
		{"-1k", "negative"},
		{"1b", `unknown unit "b" (use k, m, g, t, p: powers of 1000)`},
		{"10000p", "too large"},
		{"", "empty"},
	} {
		_, err := ParseBigInt(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseBigInt(%q) error = %v; want it to contain %q", tc.in, err, tc.want)
		}
	}
}

func TestParseBool(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"true", true}, {"TRUE", true}, {"True", true}, {"yes", true}, {"Yes", true}, {"1", true}, {" true\n", true},
		{"false", false}, {"FALSE", false}, {"no", false}, {"NO", false}, {"0", false}, {"\tno ", false},
	} {
		got, err := ParseBool(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseBool(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	// Stricter than Kolejka, which reads every other string as true.
	for _, in := range []string{"maybe", "", "on", "off", "2", "t", "y", "truee", "nope"} {
		if _, err := ParseBool(in); err == nil || !strings.Contains(err.Error(), "not a boolean") {
			t.Errorf("ParseBool(%q) error = %v; want \"not a boolean\"", in, err)
		}
	}
}

func TestParseCount(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		problem string
	}{
		{"4", 4, ""},
		{" +4 ", 4, ""},
		{"0", 0, ""},
		{"-0", 0, ""},
		{"-1", 0, "negative"},
		{"4.0", 0, "not a whole number"}, // Python's int() refuses it too
		{"1e3", 0, "not a whole number"},
		{"1_000", 0, "not a whole number"},
		{"four", 0, "not a whole number"},
		{"", 0, "empty"},
		{"9223372036854775808", 0, "too large"},
	} {
		got, problem := parseCount(tc.in)
		if got != tc.want || problem != tc.problem {
			t.Errorf("parseCount(%q) = %d, %q; want %d, %q", tc.in, got, problem, tc.want, tc.problem)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want string
	}{{0, "0b"}, {1, "1b"}, {67108864, "67108864b"}, {math.MaxInt64, "9223372036854775807b"}} {
		if got := FormatSize(tc.in); got != tc.want {
			t.Errorf("FormatSize(%d) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

// The wants are Python 3's str(timedelta(microseconds=N).total_seconds())+"s",
// checked against CPython 3.11.
func TestFormatTime(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{10 * time.Second, "10.0s"},
		{500 * time.Millisecond, "0.5s"},
		{time.Microsecond, "1e-06s"},
		{10 * time.Microsecond, "1e-05s"},
		{15 * time.Microsecond, "1.5e-05s"},
		{95 * time.Microsecond, "9.5e-05s"},
		{100 * time.Microsecond, "0.0001s"},
		{99999 * time.Microsecond, "0.099999s"},
		{1234567 * time.Second, "1234567.0s"},
		{123456789 * time.Microsecond, "123.456789s"},
		{1000001 * time.Microsecond, "1.000001s"},
		{3000001 * time.Microsecond, "3.000001s"},
		{1500 * time.Millisecond, "1.5s"},
		{1000000000 * time.Second, "1000000000.0s"},
		{0, "0.0s"},
		{-500 * time.Millisecond, "-0.5s"},
		{12345678901234567 * time.Nanosecond, "12345678.901235s"},
		{time.Duration(9223372036854775) * time.Microsecond, "9223372036.854774s"},
		{time.Duration(math.MaxInt64), "9223372036.854776s"},
		// Sub-microsecond durations round to microseconds, ties to even.
		{1499 * time.Nanosecond, "1e-06s"},
		{1500 * time.Nanosecond, "2e-06s"},
		{2500 * time.Nanosecond, "2e-06s"},
		{499 * time.Nanosecond, "0.0s"},
	} {
		if got := FormatTime(tc.in); got != tc.want {
			t.Errorf("FormatTime(%v) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

// Python's repr of floats we are sure of (CPython 3.11).
func TestPythonFloatRepr(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{1e16, "1e+16"},
		{1.5e16, "1.5e+16"},
		{1e22, "1e+22"},
		{123456789012345678.0, "1.2345678901234568e+17"},
		{9999999999999998, "9999999999999998.0"},
		{1e-5, "1e-05"},
		{0.0001, "0.0001"},
		{0.1, "0.1"},
		{1.0 / 3, "0.3333333333333333"},
		{1000, "1000.0"},
		{1.5, "1.5"},
		{5e-324, "5e-324"},
		{1.7976931348623157e308, "1.7976931348623157e+308"},
		{math.Copysign(0, -1), "-0.0"},
		{-2.5e-7, "-2.5e-07"},
		{math.Inf(1), "inf"},
		{math.NaN(), "nan"},
	} {
		if got := pythonFloatRepr(tc.in); got != tc.want {
			t.Errorf("pythonFloatRepr(%v) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

// What Kolejka's str() makes of JSON numbers (environment values, args).
func TestPythonNumberString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"5", "5"},
		{"-7", "-7"},
		{"-0", "0"},
		{"12345678901234567890", "12345678901234567890"},
		{"1.50", "1.5"},
		{"1e3", "1000.0"},
		{"1E+3", "1000.0"},
		{"-0.0", "-0.0"},
		{"1e-7", "1e-07"},
		{"1e-400", "0.0"},
		{"0.1", "0.1"},
	} {
		got, ok := pythonNumberString(tc.in)
		if !ok || got != tc.want {
			t.Errorf("pythonNumberString(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
	if got, ok := pythonNumberString("1e400"); ok {
		t.Errorf("pythonNumberString(1e400) = %q; want out of range", got)
	}
}

// Format then Parse gives back the value, for sizes exactly and for times
// at microsecond resolution.
func TestFormatParseRoundTrip(t *testing.T) {
	sizes := []int64{0, 1, 2, 1023, 1024, 67108864, 1<<53 + 1, math.MaxInt64 - 1, math.MaxInt64}
	for _, n := range sizes {
		got, err := ParseSize(FormatSize(n))
		if err != nil || got != n {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", n, got, err)
		}
	}
	times := []time.Duration{0, time.Microsecond, 15 * time.Microsecond, 95 * time.Microsecond, 100 * time.Microsecond,
		time.Second, 10*time.Second + 500*time.Millisecond, 1234567891 * time.Microsecond, 24 * time.Hour,
		(1<<53 + 1) * time.Microsecond, time.Duration(math.MaxInt64/1000) * time.Microsecond}
	for _, d := range times {
		got, err := ParseTime(FormatTime(d))
		if err != nil {
			t.Errorf("ParseTime(FormatTime(%v)) failed: %v", d, err)
			continue
		}
		// Seconds as a float64 keep ~16 significant digits: exact to the
		// microsecond below 2^53 µs, within a few µs at the top of the range.
		diff := got - d
		if d < (1<<53)*time.Microsecond && diff != 0 || diff.Abs() > 2*time.Microsecond {
			t.Errorf("ParseTime(FormatTime(%v)) = %v", d, got)
		}
	}
}

func TestParseLimitList(t *testing.T) {
	l, err := ParseLimitList(" cpus=2, memory = 1G ,,time=10s ")
	if err != nil {
		t.Fatal(err)
	}
	if *l.CPUs != 2 || *l.Memory != 1<<30 || *l.Time != 10*time.Second || l.Pids != nil {
		t.Errorf("got %s", l.String())
	}
	for in, want := range map[string]string{
		"cpus":          `"cpus": expected key=value`,
		"memroy=1G":     `did you mean "memory"?`,
		"memory=1 GiB":  "memory",
		"cpus=1,pids=x": "pids",
	} {
		if _, err := ParseLimitList(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseLimitList(%q) = %v, want an error with %q", in, err, want)
		}
	}
}

func TestParseTaskExtended(t *testing.T) {
	data := []byte(`{"image": "i", "args": ["a"], "params": {"n": {}}}`)
	if _, err := ParseTask(data, "t.json"); err == nil || !strings.Contains(err.Error(), "params: unknown key") {
		t.Fatalf("ParseTask: want params refused as unknown, got %v", err)
	}
	task, err := ParseTaskExtended(data, "t.json", "params")
	if err != nil {
		t.Fatalf("ParseTaskExtended: %v", err)
	}
	if task.Image != "i" || len(task.Args) != 1 {
		t.Fatalf("task read wrongly: %+v", task)
	}
	// Other unknown keys and repeated extra keys stay problems.
	for _, bad := range []string{
		`{"image": "i", "args": ["a"], "parms": {}}`,
		`{"image": "i", "args": ["a"], "params": {}, "params": {}}`,
	} {
		if _, err := ParseTaskExtended([]byte(bad), "t.json", "params"); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// Problems reports as the package's own parsers do: one error alone, many
// joined, and past the cap a count instead of the rest.
func TestProblemsCap(t *testing.T) {
	if err := NewProblems("f.json").Err(); err != nil {
		t.Fatalf("no problems: %v", err)
	}
	one := NewProblems("f.json")
	one.Add("args", "bad %d", 1)
	var e *Error
	if err := one.Err(); !errors.As(err, &e) || err.Error() != "f.json: args: bad 1" {
		t.Fatalf("one problem: %v", err)
	}
	many := NewProblems("f.json")
	for i := range 60 {
		many.Add(fmt.Sprintf("k%d", i), "bad")
	}
	many.AddError(&Error{File: "f.json", Field: "x", Problem: "late"})
	msg := many.Err().Error()
	if n := strings.Count(msg, ": bad"); n != 50 {
		t.Errorf("%d problems reported, want the cap of 50", n)
	}
	if !strings.Contains(msg, "and 11 more problems") || strings.Contains(msg, "late") {
		t.Errorf("past the cap: %q", msg)
	}
}
