package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"path"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/measure"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// Tests of the pure parts: no root, no cgroups.

func TestPickCores(t *testing.T) {
	avail := []int{0, 2, 3, 5}
	if got, err := pickCores(avail, 2, 1); err != nil || !reflect.DeepEqual(got, []int{2, 3}) {
		t.Errorf("pickCores(2, 1) = %v, %v", got, err)
	}
	for _, c := range [][2]int64{{5, 0}, {2, 3}, {1, -1}, {0, 0}} {
		if _, err := pickCores(avail, c[0], c[1]); !errors.Is(err, observer.ErrUnsupported) {
			t.Errorf("pickCores(%d, %d) = %v, want observer.ErrUnsupported", c[0], c[1], err)
		}
	}
}

func TestOverlayAndResources(t *testing.T) {
	old := spec.Limits{Memory: i64(100), Pids: i64(5), Time: dur(time.Second)}
	got := overlay(old, spec.Limits{Pids: i64(7), CPUs: i64(1)})
	if *got.Memory != 100 || *got.Pids != 7 || *got.CPUs != 1 || *got.Time != time.Second {
		t.Errorf("overlay = %v", got)
	}
	*got.Memory = 1
	if *old.Memory != 100 {
		t.Error("overlay shares pointers with its input")
	}
	r := resources(spec.Limits{Memory: i64(100)}, []int{1, 2}, true)
	if r.Swap == nil || *r.Swap != 0 || r.CPUs != "1-2" {
		t.Errorf("memory without swap on a host that accounts swap: %+v, want swap 0", r)
	}
	if r := resources(spec.Limits{Memory: i64(100)}, nil, false); r.Swap != nil {
		t.Errorf("without swap accounting swap must stay unset: %+v", r)
	}
	if r := resources(spec.Limits{Memory: i64(100), Swap: i64(50)}, nil, true); *r.Swap != 50 {
		t.Errorf("an explicit swap limit: %+v", r)
	}
	if err := CheckEnforceable(spec.Limits{GPUs: i64(0), Network: boolp(true)}); err != nil {
		t.Errorf("gpus 0 and network true restrict nothing: %v", err)
	}
}

func boolp(b bool) *bool { return &b }

func TestNames(t *testing.T) {
	id := newID()
	if !isSessionID(id) || !isSessionName(groupPrefix+id) || isSessionName(procsLeaf) || isSessionName(groupPrefix+strings.ToUpper(id)) {
		t.Errorf("session names: %s", id)
	}
	if a, b := newSecret(), newSecret(); len(a) != 64 || a == b {
		t.Error("secrets")
	}
	for _, c := range []struct {
		p, base string
		in      bool
	}{{"/a/b", "/a", true}, {"/a", "/a", true}, {"/ab", "/a", false}, {"/x", "/", true}, {"/a", "/a/b", false}} {
		if within(c.p, c.base) != c.in {
			t.Errorf("within(%s, %s) != %v", c.p, c.base, c.in)
		}
	}
	if logicalGroup("/a/"+procsLeaf) != "/a" || logicalGroup("/a/b") != "/a/b" {
		t.Error("logicalGroup")
	}
	var who ident
	who.hash = hashSecret("right")
	if !who.matches("right") || who.matches("wrong") || who.matches("") {
		t.Error("matches")
	}
}

func TestParseParams(t *testing.T) {
	p, err := parseParams([]byte(`{"session_id": "ab", "secret": "cd", "status": "ok", "limits": {"memory": "1M", "time": 2.5}, "pid": 7, "path": "/x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if *p.SessionID != "ab" || p.Secret != "cd" || *p.Limits.Memory != 1<<20 || *p.Limits.Time != 2500*time.Millisecond || *p.Pid != 7 || *p.Path != "/x" {
		t.Errorf("parsed %+v", p)
	}
	if p, err := parseParams([]byte(`{"session_id": null, "limits": null}`)); err != nil || p.SessionID != nil || p.Limits != nil {
		t.Errorf("nulls are absent: %+v, %v", p, err)
	}
	for _, bad := range []string{`{`, `[]`, `null`, `"x"`, `{} 1`, `{"session_id": 1}`, `{"secret": {}}`, `{"pid": 1.5}`, `{"pid": -1}`, `{"limits": []}`, `{"limits": {"cpus": "x"}}`} {
		if _, err := parseParams([]byte(bad)); !errors.Is(err, observer.ErrBadRequest) {
			t.Errorf("parseParams(%s) = %v, want observer.ErrBadRequest", bad, err)
		}
	}
}

// readOne parses one request from data the way a connection does.
func readOne(data []byte) (*request, error) {
	cr := &connReader{r: bytes.NewReader(data)}
	br := bufio.NewReaderSize(cr, 4096)
	cr.remain = 2048
	if _, err := br.Peek(1); err != nil {
		return nil, err
	}
	return readRequest(br, cr, 2048, 1024, func() error { return nil })
}

func TestReadRequest(t *testing.T) {
	req, err := readOne([]byte("\r\nPOST attach HTTP/1.1\r\nHost: /var/run/kolejka/observer/socket:None\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\n{}"))
	if err != nil {
		t.Fatal(err)
	}
	if req.command != "attach" || string(req.body) != "{}" || !req.keepAlive {
		t.Errorf("read %+v", req)
	}
	var he *httpError
	if _, err := readOne([]byte("GET / HTTP/1.1\r\nX: " + strings.Repeat("y", 3000) + "\r\n\r\n")); !errors.As(err, &he) || he.status != 431 {
		t.Errorf("a 3000-byte header under a 2048 budget: %v", err)
	}
}

// FuzzReadRequest: whatever a peer sends, the parser answers a request, a
// refusal or an error, never a panic, and never a body over the limit.
func FuzzReadRequest(f *testing.F) {
	for _, seed := range []string{
		"POST /open HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
		"POST attach HTTP/1.1\r\nHost: /s:None\r\nAccept-Encoding: identity\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}",
		"GET / HTTP/1.0\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n{\"a\":",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := readOne(data)
		if err == nil {
			if int64(len(req.body)) > 1024 {
				t.Fatalf("a body of %d bytes passed the 1024 limit", len(req.body))
			}
			_, _ = parseParams(req.body)
		}
	})
}

func TestStatsBody(t *testing.T) {
	for _, st := range []spec.Stats{{}, measure.StatsOf(&cgroup.Usage{CPU: time.Second, PerCPU: []time.Duration{time.Second}}, nil)} {
		b, err := statsBody(st)
		if err != nil {
			t.Fatal(err)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(b, &fields); err != nil || string(fields["status"]) != `"ok"` {
			t.Fatalf("statsBody = %s, %v", b, err)
		}
		delete(fields, "status")
		rest, _ := json.Marshal(fields)
		back, err := spec.ParseStats(rest, "stats")
		if err != nil {
			t.Fatal(err)
		}
		want, _ := st.MarshalJSON()
		got, _ := back.MarshalJSON()
		if !bytes.Equal(want, got) {
			t.Errorf("round trip: %s, want %s", got, want)
		}
	}
}

// TestNestingAllows: cgroup_depth counts the sessions between, not the
// cgroups; cgroup_descendants counts every open session below at any
// depth; a closing or expired session takes no new ones; sessions elsewhere
// do not count.
func TestNestingAllows(t *testing.T) {
	sess := func(p string, l spec.Limits) *session {
		return &session{ident: ident{id: path.Base(p), path: p}, limits: l}
	}
	top := sess("/task", spec.Limits{CgroupDepth: i64(2), CgroupDescendants: i64(3)})
	mid := sess("/task/judge/kolejka_observer_a", spec.Limits{})
	byPath := map[string]*session{top.path: top, mid.path: mid, "/other": sess("/other", spec.Limits{CgroupDepth: i64(0)})}
	for _, c := range []struct {
		parent string
		want   error
	}{
		{"/task", nil},                    // depth 1 below top
		{"/task/judge", nil},              // still depth 1: the cgroup between is no session
		{mid.path + "/deeper", nil},       // depth 2
		{"/elsewhere", nil},               // below no session
		{"/other", observer.ErrForbidden}, // depth 0 allows none
	} {
		if err := nestingAllows(byPath, c.parent); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("a session in %s: %v, want %v", c.parent, err, c.want)
		}
	}
	deep := sess(mid.path+"/kolejka_observer_b", spec.Limits{})
	byPath[deep.path] = deep
	if err := nestingAllows(byPath, deep.path); !errors.Is(err, observer.ErrForbidden) || !strings.Contains(err.Error(), "cgroup_depth") {
		t.Errorf("depth 3 below a cgroup_depth 2 session: %v", err)
	}
	byPath["/task/kolejka_observer_c"] = sess("/task/kolejka_observer_c", spec.Limits{})
	if err := nestingAllows(byPath, "/task"); !errors.Is(err, observer.ErrForbidden) || !strings.Contains(err.Error(), "has 3") {
		t.Errorf("a fourth descendant of a cgroup_descendants 3 session: %v", err)
	}
	mid.closing = true
	if err := nestingAllows(map[string]*session{mid.path: mid}, mid.path); !errors.Is(err, observer.ErrNotFound) {
		t.Errorf("inside a closing session: %v", err)
	}
	mid.closing, mid.expired = false, true
	if err := nestingAllows(map[string]*session{mid.path: mid}, mid.path+"/x"); !errors.Is(err, observer.ErrNotFound) {
		t.Errorf("inside an expired session: %v", err)
	}
}

// TestClosedSessions: final stats stay readable for keep, at most max of
// them (the oldest go first), and the dropped ones are told so their
// records go too.
func TestClosedSessions(t *testing.T) {
	t0 := time.Unix(1000, 0)
	cs := newClosedSessions(time.Minute, 2)
	closed := func(id string, at time.Time) *closedSession {
		return &closedSession{ident: ident{id: id}, closedAt: at}
	}
	if dropped := cs.add(closed("b", t0.Add(time.Second))); len(dropped) != 0 {
		t.Errorf("dropped %v below max", dropped)
	}
	cs.add(closed("a", t0))
	if dropped := cs.add(closed("c", t0.Add(2*time.Second))); !reflect.DeepEqual(dropped, []string{"a"}) {
		t.Errorf("past max dropped %v, want the oldest, a", dropped)
	}
	if cs.get("b", t0.Add(time.Minute)) == nil || cs.get("a", t0) != nil {
		t.Error("get: b is kept a minute after its close, a was dropped")
	}
	if cs.get("b", t0.Add(time.Minute+2*time.Second)) != nil || cs.kept("b") == nil {
		t.Error("past keep get no longer answers, kept still does until expire")
	}
	if dropped := cs.expire(t0.Add(time.Minute + 1500*time.Millisecond)); !reflect.DeepEqual(dropped, []string{"b"}) || cs.kept("c") == nil {
		t.Errorf("expire dropped %v, want b only", dropped)
	}
}
