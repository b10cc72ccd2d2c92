package ui

// This file owns the nodes' pages: the list with each node's health, last
// contact, limits, tags, queues and running tasks, a node's page, and
// drain. Who sees and drains what is the backend's (the API's) rule.

import (
	"net/http"
	"net/url"
	"slices"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/store"
)

// healthCounts counts nodes by health, for the overview, with its short
// list: the worst first, at most overviewNodes, More left out.
type healthCounts struct {
	OK, Warn, Crit, Drained int
	List                    []api.Node
	More                    int
}

// overviewNodes is how many nodes the overview lists.
const overviewNodes = 12

func healthRank(h string) int {
	switch h {
	case api.HealthCrit:
		return 0
	case api.HealthWarn:
		return 1
	}
	return 2
}

func countHealth(nodes []api.Node) healthCounts {
	c := healthCounts{List: slices.Clone(nodes)}
	// Stable: by name within a health, as the server lists them.
	slices.SortStableFunc(c.List, func(a, b api.Node) int { return healthRank(a.Health) - healthRank(b.Health) })
	if len(c.List) > overviewNodes {
		c.List, c.More = c.List[:overviewNodes], len(c.List)-overviewNodes
	}
	for _, n := range nodes {
		switch n.Health {
		case api.HealthOK:
			c.OK++
		case api.HealthWarn:
			c.Warn++
		default:
			c.Crit++
		}
		if n.Drained {
			c.Drained++
		}
	}
	return c
}

// drainArgs is what the drain form needs: the node, the CSRF token, and
// the page to go back to ("nodes" or "node").
type drainArgs struct {
	Node       api.Node
	CSRF, Back string
}

// nodeData is a node's page.
type nodeData struct {
	api.Node
	MayDrain bool
}

func (u *UI) node(r *http.Request, usr *store.User) (page, error) {
	n, may, err := u.b.Node(r.Context(), usr, r.PathValue("name"))
	return page{Title: "Node " + n.Name, Nav: "nodes", Data: nodeData{n, may}}, err
}

// nodeDrain drains or undrains a node and goes back where the form was
// (the list or the node's page, by the field back).
func (u *UI) nodeDrain(drained bool) func(*http.Request, *store.User) (string, error) {
	return func(r *http.Request, usr *store.User) (string, error) {
		name := r.PathValue("name")
		err := u.b.DrainNode(r.Context(), usr, name, drained)
		to := u.base + "nodes/"
		if r.PostFormValue("back") == "node" {
			to = u.base + "node/" + url.PathEscape(name) + "/"
		}
		return to, err
	}
}
