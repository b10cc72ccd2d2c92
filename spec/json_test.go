package spec

import (
	"encoding/json"
	"strings"
	"testing"
)

// The want is CPython 3.11's
// json.dumps(v, sort_keys=True, indent=2, ensure_ascii=False).
func TestEncodeJSONLikePython(t *testing.T) {
	v := object{
		"b": "\u2028 <&> \x7f \x00\x1f\b\f\n\r\t\"\\ żółw 😀",
		"a": []any{},
		"c": object{},
		"d": []any{int64(1), object{"x": true}},
	}
	want := "{\n" +
		"  \"a\": [],\n" +
		"  \"b\": \"\u2028 <&> \x7f \\u0000\\u001f\\b\\f\\n\\r\\t\\\"\\\\ żółw 😀\",\n" +
		"  \"c\": {},\n" +
		"  \"d\": [\n" +
		"    1,\n" +
		"    {\n" +
		"      \"x\": true\n" +
		"    }\n" +
		"  ]\n" +
		"}"
	got, err := encodeJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// Python sorts keys by code point; so does Go's byte order on UTF-8 (UTF-16
// order would put U+FFFF after the emoji).
func TestEncodeJSONKeyOrder(t *testing.T) {
	got, err := encodeJSON(object{"é": 1, "z": 2, "Z": 3, "a": 4, "😀": 5, "\uffff": 6, "a0": 7, "a_": 8, "aA": 9})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, line := range strings.Split(string(got), "\n") {
		if k, _, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			keys = append(keys, k)
		}
	}
	want := `"Z" "a" "a0" "aA" "a_" "z" "é" "` + "\uffff" + `" "😀"`
	if strings.Join(keys, " ") != want {
		t.Errorf("key order %s; want %s", strings.Join(keys, " "), want)
	}
}

func TestEncodeJSONRefusesInvalidUTF8(t *testing.T) {
	if _, err := encodeJSON(object{"a": "\xff"}); err == nil {
		t.Error("no error for invalid UTF-8")
	}
}

func TestParseJSONErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"{\n  \"a\": 1\n  \"b\": 2\n}", "f.json: malformed JSON at line 3, column 3 (byte 13): invalid character '\"' after object key:value pair"},
		{`{"a": 1,}`, "line 1, column 9 (byte 8)"},
		{`{"a": tru}`, "line 1, column 10 (byte 9): invalid character '}' in literal true"},
		{"{\"ż\": x}", "line 1, column 7 (byte 7)"}, // columns count characters, not bytes
		{`{"a": 1`, "unexpected end of input"},
		{`{"a": 1} x`, "invalid character 'x'"},
		{`{"a": 1} {}`, "line 1, column 10 (byte 9): invalid character '{' after top-level value"},
		{"{\n\"a\": [1,\n]}", "line 3, column 1 (byte 11): invalid character ']'"},
		{" \n\t", "the file is empty"},
		{"\ufeff{}", "byte order mark"}, // Python's json.load refuses a BOM too
		{`{"a": NaN}`, "invalid character 'N'"},
		{"{\"a\": \"\xc3\x28\"}", "line 1, column 8 (byte 7): invalid UTF-8"},
		{strings.Repeat("[", 100) + strings.Repeat("]", 100), "nested more than 64 levels deep"},
	} {
		_, err := parseJSON([]byte(tc.in), "f.json")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseJSON(%q) error = %v; want it to contain %q", tc.in, err, tc.want)
		}
	}
}

func TestParseJSONKeepsLiteralsAndDuplicates(t *testing.T) {
	n, err := parseJSON([]byte(`{"a": 1.50, "b": [1e3, -0], "a": 2}`), "f")
	if err != nil {
		t.Fatal(err)
	}
	if len(n.keys) != 2 || n.vals[0].str != "2" || n.vals[1].items[0].str != "1e3" || n.vals[1].items[1].str != "-0" {
		t.Errorf("parsed %+v", n)
	}
	if len(n.dups) != 1 || n.dups[0] != "a" {
		t.Errorf("dups = %q", n.dups)
	}
}

// The exact message of the contract's example.
func TestUnknownKeyMessage(t *testing.T) {
	_, err := ParseTask([]byte(`{"limits": {"memmory": "1G"}}`), "kolejka_task.json")
	want := `kolejka_task.json: limits.memmory: unknown key (did you mean "memory"?)`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v; want %s", err, want)
	}
	_, err = ParseTask([]byte(`{"limits": {"memory": "64MiB"}}`), "kolejka_task.json")
	want = `kolejka_task.json: limits.memory: "64MiB" is not a size: unknown unit "i" (use b, k, m, g, t, p)`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v; want %s", err, want)
	}
}

func TestSuggest(t *testing.T) {
	keys := LimitKeys()
	for _, tc := range []struct{ in, want string }{
		{"memmory", "memory"},
		{"memroy", "memory"}, // a transposition is two edits
		{"cpu", "cpus"},
		{"gpu_mem", ""},
		{"perf_instruction", "perf_instructions"},
		{"xyz", ""},
		{"t", ""}, // too short to guess
	} {
		if got := suggest(tc.in, keys); got != tc.want {
			t.Errorf("suggest(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

// Tasks, results, limits and stats work inside encoding/json documents, as
// in HTTP answers and requests.
func TestEncodingJSONInterop(t *testing.T) {
	type answer struct {
		Status string  `json:"status"`
		Task   *Task   `json:"task"`
		Result *Result `json:"result,omitempty"`
		Limits Limits  `json:"limits"`
		Stats  Stats   `json:"stats"`
	}
	in := `{"status": "OK", "task": {"image": "a", "args": ["x"], "limits": {"memory": "1k"}},
	        "limits": {"time": "2s", "network": "no"}, "stats": {"pids": {"max_usage": 3}}}`
	var a answer
	if err := json.Unmarshal([]byte(in), &a); err != nil {
		t.Fatal(err)
	}
	if a.Task == nil || a.Task.Image != "a" || *a.Task.Limits.Memory != 1024 || *a.Limits.Network || *a.Stats.Pids.MaxUsage != 3 {
		t.Fatalf("decoded %+v", a)
	}
	out, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"status":"OK","task":{"args":["x"],"collect":[],"environment":{},"files":{},"image":"a","limits":{"memory":"1024b"},"requires":[]},` +
		`"limits":{"network":false,"time":"2.0s"},"stats":{"cpu":{},"cpus":{},"gpus":{},"memory":{},"perf":{},"pids":{"max_usage":3}}}`
	if string(out) != want {
		t.Errorf("marshalled\n%s\nwant\n%s", out, want)
	}
	var bad answer
	err = json.Unmarshal([]byte(`{"task": {"image": "a", "limits": {"memmory": 1}}}`), &bad)
	if err == nil || !strings.Contains(err.Error(), `limits.memmory: unknown key (did you mean "memory"?)`) {
		t.Errorf("unmarshal of a bad task: %v", err)
	}
}
