package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/api"
)

// The body of POST /type/<name>/task/ is read strictly, its errors naming
// the key; what the client writes reads back the same.
func TestParseTypeTask(t *testing.T) {
	for body, want := range map[string]string{
		`{"param": {"n": "1"}}`:                             "param",
		`{"limits": {"memory": "lots"}}`:                    "memory",
		`{"version": -1}`:                                   "version",
		`{"files": {"src": {"name": "main.c"}}}`:            `files["src"].reference: missing`,
		`{"files": {"src": {"reference": "r", "x": true}}}`: `"x"`,
		`{"params": {"n": 5}}`:                              "params",
		`{} {}`:                                             "unexpected data",
	} {
		if _, err := api.ParseTypeTask([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %s", body, err, want)
		}
	}
	mem := int64(32 << 20)
	in := api.TypeTask{Files: map[string]api.TypeFile{"src": {Name: "main.c", Reference: "0123456789abcdef0123456789abcdef"}},
		Params: map[string]string{"n": "5"}, Queue: "fast", Version: 2}
	in.Limits.Memory = &mem
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := api.ParseTypeTask(data)
	if err != nil || out.Files["src"] != in.Files["src"] || out.Params["n"] != "5" || out.Queue != "fast" || out.Version != 2 ||
		out.Limits.Memory == nil || *out.Limits.Memory != mem {
		t.Errorf("%s read back as %+v (%v)", data, out, err)
	}
	if empty, err := api.ParseTypeTask(nil); err != nil || len(empty.Params) != 0 {
		t.Errorf("an empty body: %+v %v", empty, err)
	}
}
