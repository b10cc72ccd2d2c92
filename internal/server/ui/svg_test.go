package ui

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/store"
)

// The chart puts each minute's ends in its bucket, stacked by outcome,
// scaled to the fullest bucket, and leaves out what ended before the span.
func TestFinishedChart(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 30, 20, 0, time.UTC)
	ms := []store.MinuteCount{
		{Minute: now.Add(-2 * time.Hour).Truncate(time.Minute), State: store.Done, Status: "OK", N: 50}, // before the hour
		{Minute: now.Add(-10 * time.Minute).Truncate(time.Minute), State: store.Done, Status: "OK", N: 3},
		{Minute: now.Add(-10 * time.Minute).Truncate(time.Minute), State: store.Done, Status: "TLE", N: 1},
		{Minute: now.Truncate(time.Minute), State: store.Cancelled, N: 2},
	}
	c := finishedChart(ms, now, time.Hour, time.Minute)
	if c.Total != 6 || c.Max != 4 || len(c.Bars) != 3 {
		t.Fatalf("total %d max %d bars %d, want 6, 4, 3: %+v", c.Total, c.Max, len(c.Bars), c.Bars)
	}
	ok, fail, cancelled := c.Bars[0], c.Bars[1], c.Bars[2]
	if ok.Class != "end-ok" || fail.Class != "end-fail" || cancelled.Class != "end-cancelled" {
		t.Fatalf("classes %s %s %s", ok.Class, fail.Class, cancelled.Class)
	}
	if ok.X != fail.X || fail.Y+fail.H != ok.Y || ok.H != 3*fail.H || ok.Y+ok.H != chartTop+chartH {
		t.Fatalf("the 10-minutes-ago bar is not OK 3 under not-OK 1: %+v %+v", ok, fail)
	}
	if cancelled.X <= ok.X || cancelled.H != chartH/2 {
		t.Fatalf("the last minute's bar: %+v", cancelled)
	}
	day := finishedChart(ms, now, 24*time.Hour, 15*time.Minute)
	if day.Total != 56 {
		t.Fatalf("the day's total %d, want 56", day.Total)
	}
}

// A run's steps sit in the column of their longest chain of dependencies,
// and each dependency is an edge of its kind.
func TestRunGraph(t *testing.T) {
	run := api.WorkflowInfo{Steps: []api.WorkflowStep{
		{Name: "a", State: "ok"},
		{Name: "b", State: "submitted", After: []string{"a"}},
		{Name: "c", State: "waiting", After: []string{"a", "b"}},
		{Name: "d", State: "skipped", AfterFailed: []string{"a"}, AfterAny: []string{"c"}},
	}}
	g := runGraph(run)
	col := map[string]int{}
	for _, n := range g.Nodes {
		col[n.Name] = (n.X - margin) / (nodeW + colGap)
	}
	if col["a"] != 0 || col["b"] != 1 || col["c"] != 2 || col["d"] != 3 {
		t.Fatalf("columns %v", col)
	}
	kinds := map[string]int{}
	for _, e := range g.Edges {
		kinds[e.Kind]++
		if e.X2 <= e.X1 {
			t.Errorf("an edge points back: %+v", e)
		}
	}
	if kinds["after"] != 3 || kinds["after_failed"] != 1 || kinds["after_any"] != 1 {
		t.Fatalf("edges %v", kinds)
	}
	if g.W != 2*margin+4*nodeW+3*colGap || g.H != 2*margin+nodeH {
		t.Fatalf("size %dx%d", g.W, g.H)
	}
}

// A result's stats are listed by dotted path; what was not measured is
// left out.
func TestFlattenStats(t *testing.T) {
	var stats any
	if err := json.Unmarshal([]byte(`{"cpu": {"usage": "1.5s", "user": "1.0s"}, "cpus": {"0": {"usage": "1.5s"}}, "gpus": {},
		"memory": {"max_usage": 1048576}, "time": "2.0s"}`), &stats); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(flatten("", stats, nil))
	want := "[{cpu.usage 1.5s} {cpu.user 1.0s} {cpus.0.usage 1.5s} {memory.max_usage 1048576} {time 2.0s}]"
	if got != want {
		t.Fatalf("flatten: %s, want %s", got, want)
	}
}
