package ui

// This file lays out the UI's two drawings, rendered as inline SVG by the
// templates: the chart of tasks finished per interval, stacked by how
// they ended, and a workflow run's graph of steps.

import (
	"sort"
	"strconv"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/store"
)

// chart is a stacked bar chart of ends per interval.
type chart struct {
	W, H   int
	Bars   []bar
	Max    int
	Total  int
	Legend []legend
	From   string
	To     string
}

type bar struct {
	X, Y, W, H int
	Class      string
	Title      string
}

type legend struct {
	Class, Label string
	N            int
}

// Chart geometry, in SVG units.
const (
	chartW   = 720
	chartH   = 160
	chartTop = 10
)

// outcome names how a task ended, as the chart colours it: the result's
// status (OK and the rest) or cancelled.
func outcome(m store.MinuteCount) (class, label string) {
	switch {
	case m.State == store.Cancelled:
		return "end-cancelled", "cancelled"
	case m.Status == "OK":
		return "end-ok", "OK"
	case m.Status == "":
		return "end-other", "no status"
	}
	return "end-fail", "not OK"
}

// finishedChart draws the ends of the span before now in buckets of step.
func finishedChart(ms []store.MinuteCount, now time.Time, span, step time.Duration) chart {
	n := int(span / step)
	start := now.Add(-span).Truncate(step)
	type cell map[string]int
	cells := make([]cell, n+1)
	labels := map[string]string{}
	totals := map[string]int{}
	c := chart{W: chartW, H: chartH + chartTop + 20, From: start.UTC().Format("Jan 2 15:04"), To: now.UTC().Format("15:04 UTC")}
	for _, m := range ms {
		i := int(m.Minute.Sub(start) / step)
		if i < 0 || i > n {
			continue
		}
		class, label := outcome(m)
		if cells[i] == nil {
			cells[i] = cell{}
		}
		cells[i][class] += m.N
		labels[class] = label
		totals[class] += m.N
		c.Total += m.N
	}
	for _, cl := range cells {
		sum := 0
		for _, v := range cl {
			sum += v
		}
		c.Max = max(c.Max, sum)
	}
	order := []string{"end-ok", "end-fail", "end-other", "end-cancelled"}
	bw := max(chartW/(n+1), 1)
	for i, cl := range cells {
		if cl == nil || c.Max == 0 {
			continue
		}
		y := chartTop + chartH
		at := start.Add(time.Duration(i) * step).UTC().Format("15:04")
		for _, class := range order {
			v := cl[class]
			if v == 0 {
				continue
			}
			h := max(v*chartH/c.Max, 1)
			y -= h
			c.Bars = append(c.Bars, bar{X: i * bw, Y: y, W: max(bw-1, 1), H: h, Class: class,
				Title: at + ": " + strconv.Itoa(v) + " " + labels[class]})
		}
	}
	for _, class := range order {
		if totals[class] > 0 {
			c.Legend = append(c.Legend, legend{Class: class, Label: labels[class], N: totals[class]})
		}
	}
	return c
}

// graph is a run's steps laid out in columns by depth.
type graph struct {
	W, H  int
	Nodes []node
	Edges []edge
}

type node struct {
	Name, State, Label string
	X, Y, W, H         int
	Instances          string // "3/5 ok" for a step with items
}

type edge struct {
	X1, Y1, X2, Y2 int
	Kind           string // after, after_any, after_failed
}

// Graph geometry.
const (
	nodeW  = 170
	nodeH  = 44
	colGap = 60
	rowGap = 20
	margin = 10
)

// runGraph places each step in the column of its longest chain of
// dependencies, in the run's order within a column.
func runGraph(run api.WorkflowInfo) graph {
	idx := map[string]int{}
	for i, st := range run.Steps {
		idx[st.Name] = i
	}
	depth := make([]int, len(run.Steps))
	var depthOf func(i int, seen map[int]bool) int
	depthOf = func(i int, seen map[int]bool) int {
		if seen[i] {
			return 0 // a cycle is refused at put; never loop here
		}
		seen[i] = true
		d := 0
		st := run.Steps[i]
		for _, deps := range [][]string{st.After, st.AfterAny, st.AfterFailed} {
			for _, dep := range deps {
				if j, ok := idx[dep]; ok {
					d = max(d, depthOf(j, seen)+1)
				}
			}
		}
		delete(seen, i)
		return d
	}
	cols := map[int][]int{}
	maxDepth, maxRows := 0, 0
	for i := range run.Steps {
		depth[i] = depthOf(i, map[int]bool{})
		cols[depth[i]] = append(cols[depth[i]], i)
		maxDepth = max(maxDepth, depth[i])
	}
	g := graph{}
	pos := make([][2]int, len(run.Steps))
	for d := 0; d <= maxDepth; d++ {
		sort.Ints(cols[d])
		maxRows = max(maxRows, len(cols[d]))
		for row, i := range cols[d] {
			x := margin + d*(nodeW+colGap)
			y := margin + row*(nodeH+rowGap)
			pos[i] = [2]int{x, y}
			st := run.Steps[i]
			n := node{Name: st.Name, State: st.State, Label: st.Name, X: x, Y: y, W: nodeW, H: nodeH}
			if len(st.Instances) > 1 {
				done := 0
				for _, in := range st.Instances {
					if in.State == "ok" {
						done++
					}
				}
				n.Instances = strconv.Itoa(done) + "/" + strconv.Itoa(len(st.Instances)) + " ok"
			}
			g.Nodes = append(g.Nodes, n)
		}
	}
	for i, st := range run.Steps {
		for _, k := range []struct {
			kind string
			deps []string
		}{{"after", st.After}, {"after_any", st.AfterAny}, {"after_failed", st.AfterFailed}} {
			for _, dep := range k.deps {
				j, ok := idx[dep]
				if !ok {
					continue
				}
				g.Edges = append(g.Edges, edge{X1: pos[j][0] + nodeW, Y1: pos[j][1] + nodeH/2, X2: pos[i][0], Y2: pos[i][1] + nodeH/2, Kind: k.kind})
			}
		}
	}
	g.W = 2*margin + (maxDepth+1)*nodeW + maxDepth*colGap
	g.H = 2*margin + maxRows*nodeH + max(maxRows-1, 0)*rowGap
	return g
}
