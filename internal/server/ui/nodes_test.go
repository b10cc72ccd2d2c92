package ui

import (
	"fmt"
	"testing"

	"github.com/kolejka-go/kolejka/api"
)

// The overview's node panel counts every node by health and lists the
// worst first (by name within a health), at most overviewNodes.
func TestCountHealth(t *testing.T) {
	var nodes []api.Node
	for i := range 15 {
		h := api.HealthOK
		switch {
		case i == 14:
			h = api.HealthCrit
		case i%5 == 0:
			h = api.HealthWarn
		}
		nodes = append(nodes, api.Node{Name: fmt.Sprintf("n%02d", i), Health: h, Drained: i == 3})
	}
	c := countHealth(nodes)
	if c.OK != 11 || c.Warn != 3 || c.Crit != 1 || c.Drained != 1 || c.More != 3 || len(c.List) != overviewNodes {
		t.Fatalf("counts %+v", c)
	}
	var got []string
	for _, n := range c.List[:5] {
		got = append(got, n.Name+" "+n.Health)
	}
	if want := "[n14 crit n00 warn n05 warn n10 warn n01 ok]"; fmt.Sprint(got) != want {
		t.Errorf("the list starts %v, want %s", got, want)
	}
	if nodes[0].Name != "n00" || nodes[14].Name != "n14" {
		t.Errorf("countHealth reordered its argument")
	}
}
