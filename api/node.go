package api

// This file owns the messages of /node/ (extension "nodes"): the nodes as
// the server last heard from them, and their drain.

import "github.com/kolejka-go/kolejka/spec"

// Health of a node, from the age of its last contact (a dequeue or a
// heartbeat) against the server's lease time: ok under two thirds of it,
// warn under the whole, crit at or beyond it, and for a node never heard
// from. A node with a long poll open on the server is seen now.
const (
	HealthOK   = "ok"
	HealthWarn = "warn"
	HealthCrit = "crit"
)

// Node is a node (a processor account) as GET /node/ shows it.
type Node struct {
	// AgeSeconds is how long ago the node was last seen (0 for a node
	// never seen, whose LastSeen is "").
	AgeSeconds float64 `json:"age_seconds"`
	// Capacity is what the node declares it offers in all (our foreman
	// sends it; {} for Kolejka's).
	Capacity spec.Limits `json:"capacity"`
	// Concurency, Defaults, Free (the limits it had left), Queues and
	// Tags are what its last dequeue said.
	Concurency int         `json:"concurency"`
	Defaults   spec.Limits `json:"defaults"`
	// Drained: the node is handed no new task; its running tasks go on.
	Drained bool        `json:"drained"`
	Free    spec.Limits `json:"free"`
	Health  string      `json:"health"` // HealthOK, HealthWarn or HealthCrit
	// LastDequeue and LastSeen are times ("" for never).
	LastDequeue string   `json:"last_dequeue"`
	LastSeen    string   `json:"last_seen"`
	Name        string   `json:"name"`
	Queues      []string `json:"queues"`
	// Running are the keys of the tasks assigned to the node now, in the
	// order they were handed out.
	Running []string `json:"running"`
	Tags    []string `json:"tags"`
}

// NodesAnswer is GET /node/'s answer: every node the server has heard
// from or drained, by name, for managers and inspectors; the caller alone
// for a processor.
type NodesAnswer struct {
	// LeaseTime is the lease the health is measured against (a Kolejka
	// time).
	LeaseTime string `json:"lease_time"`
	Nodes     []Node `json:"nodes"`
	Envelope
}

// NodeAnswer is the answer of GET /node/<name>/ and of POST
// /node/<name>/drain/ and /undrain/: the node as it is now.
type NodeAnswer struct {
	Node Node `json:"node"`
	Envelope
}
