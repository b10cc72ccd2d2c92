package server

// This file owns nodes (extension "nodes"): what the server heard from each
// processor (its dequeues and heartbeats), the health that follows from
// when, and drain.
//
// Every dequeue and heartbeat is a contact. The server keeps each node's
// last contact in memory and writes it to the nodes table only when the
// dequeue's state (free limits, capacity, defaults, tags, queues,
// concurency) changed or nodeWriteEvery has passed since the last write:
// an idle node polling every second costs a write every few seconds, not
// one per dequeue. A node with a dequeue open (a long poll) is seen now.
//
// Health is the age of the last contact against the lease time L (a
// heartbeating node contacts the server well within L, or its tasks are
// lost): ok under 2L/3, warn under L, crit at L or beyond and for a node
// never heard from. A Kolejka foreman running a long task without free
// room neither dequeues nor heartbeats: it reads crit until it asks again.
//
// A drained node is answered {"tasks": []} at once by every dequeue, and
// a long poll it has waiting ends at once; its running tasks go on (their
// heartbeats and results are taken). A drain made through this server
// holds at once; one made by `kolejka-server node drain` in another
// process holds within queueRecheck (the drain flag is reread that often).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/spec"
)

// nodeWriteEvery is how often at most a node's last contact is written
// when nothing else about it changed.
const nodeWriteEvery = 5 * time.Second

// nodeBook is what the server knows of each node in memory, by user id.
type nodeBook struct {
	mu sync.Mutex
	m  map[int64]*nodeMemo
}

type nodeMemo struct {
	seen    time.Time  // last contact, by the server's clock
	written time.Time  // when the last contact was last written
	state   *nodeState // what the last written dequeue stored; nil: none
	polls   int        // dequeues of the node open now
	// drained is the drain flag as last read or set, at drainRead (the
	// monotonic clock; zero: never read); gen counts the drains set here,
	// so that a read that raced one is not kept.
	drained   bool
	drainRead time.Time
	gen       int
}

// memo is node's memo, made on first use; b.mu is held.
func (b *nodeBook) memo(node int64) *nodeMemo {
	if b.m == nil {
		b.m = map[int64]*nodeMemo{}
	}
	m := b.m[node]
	if m == nil {
		m = &nodeMemo{}
		b.m[node] = m
	}
	return m
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// nodeState is what a dequeue says about its node.
type nodeState struct {
	free, capacity, defaults spec.Limits
	tags, queues             []string
	concurency               int
}

// same compares two states without encoding them: encoding the limits
// at every dequeue cost ~30 µs more (BenchmarkNoteDequeue); it is paid
// only when the node's row is written.
func (a *nodeState) same(b *nodeState) bool {
	return a.concurency == b.concurency && slices.Equal(a.tags, b.tags) && slices.Equal(a.queues, b.queues) &&
		reflect.DeepEqual(a.free, b.free) && reflect.DeepEqual(a.capacity, b.capacity) && reflect.DeepEqual(a.defaults, b.defaults)
}

// noteDequeue records a dequeue by node (written when its state changed
// or nodeWriteEvery passed) and counts it open until the returned
// function is called.
func (s *Server) noteDequeue(ctx context.Context, node int64, req api.DequeueRequest) (done func()) {
	state := &nodeState{free: req.Limits, capacity: req.Capacity, defaults: req.Defaults,
		tags: req.Tags, queues: req.Queues, concurency: req.Concurrency}
	now := s.now()
	s.nodes.mu.Lock()
	m := s.nodes.memo(node)
	m.seen = later(m.seen, now)
	m.polls++
	write := m.state == nil || !m.state.same(state) || now.Sub(m.written) >= nodeWriteEvery || now.Before(m.written)
	if write {
		// A copy: the request's limits go on to the dequeue.
		m.state = &nodeState{free: req.Limits.Clone(), capacity: req.Capacity.Clone(), defaults: req.Defaults.Clone(),
			tags: slices.Clone(req.Tags), queues: slices.Clone(req.Queues), concurency: req.Concurrency}
		m.written = now
	}
	s.nodes.mu.Unlock()
	if write {
		note := store.NodeNote{Node: node, Seen: now, Dequeue: true, Tags: req.Tags, Queues: req.Queues, Concurency: req.Concurrency}
		for _, l := range []struct {
			to     *[]byte
			limits spec.Limits
		}{{&note.Free, req.Limits}, {&note.Capacity, req.Capacity}, {&note.Defaults, req.Defaults}} {
			// Limits read from JSON encode again: an error is not possible.
			*l.to, _ = l.limits.MarshalJSON()
		}
		s.writeNote(ctx, m, note)
	}
	return func() {
		s.nodes.mu.Lock()
		m.polls--
		m.seen = later(m.seen, s.now())
		s.nodes.mu.Unlock()
	}
}

// noteHeartbeat records a heartbeat by node (written every
// nodeWriteEvery at most).
func (s *Server) noteHeartbeat(ctx context.Context, node int64) {
	now := s.now()
	s.nodes.mu.Lock()
	m := s.nodes.memo(node)
	m.seen = later(m.seen, now)
	write := now.Sub(m.written) >= nodeWriteEvery || now.Before(m.written)
	if write {
		m.written = now
	}
	s.nodes.mu.Unlock()
	if write {
		s.writeNote(ctx, m, store.NodeNote{Node: node, Seen: now})
	}
}

// writeNote writes a note. A failure is logged, not answered: the node's
// dequeue or heartbeat matters more than its listing; the next contact
// writes again.
func (s *Server) writeNote(ctx context.Context, m *nodeMemo, note store.NodeNote) {
	if err := s.db.NoteNode(ctx, note); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("unable to record a node's contact", "error", err)
		}
		s.nodes.mu.Lock()
		m.state, m.written = nil, time.Time{}
		s.nodes.mu.Unlock()
	}
}

// nodeDrained says whether node is drained, from memory when the flag was
// read or set within queueRecheck.
func (s *Server) nodeDrained(ctx context.Context, node int64) (bool, error) {
	s.nodes.mu.Lock()
	m := s.nodes.memo(node)
	if !m.drainRead.IsZero() && time.Since(m.drainRead) < queueRecheck {
		d := m.drained
		s.nodes.mu.Unlock()
		return d, nil
	}
	gen := m.gen
	s.nodes.mu.Unlock()
	d, err := s.db.NodeDrained(ctx, node)
	if err != nil {
		return false, err
	}
	s.nodes.mu.Lock()
	if m.gen == gen {
		m.drained, m.drainRead = d, time.Now()
	}
	s.nodes.mu.Unlock()
	return d, nil
}

// NodeHealth is the health of a node last seen at seen (zero: never), at
// now, with leases of lease: api.HealthOK under 2/3 of lease, HealthWarn
// under lease, HealthCrit beyond or never.
func NodeHealth(seen, now time.Time, lease time.Duration) string {
	if seen.IsZero() {
		return api.HealthCrit
	}
	switch age := now.Sub(seen); {
	case age < lease*2/3:
		return api.HealthOK
	case age < lease:
		return api.HealthWarn
	}
	return api.HealthCrit
}

// nodeView is n as /node/ shows it at now, with what this server knows in
// memory (a later contact, an open dequeue).
func (s *Server) nodeView(n store.NodeInfo, now time.Time) api.Node {
	seen := n.LastSeen
	s.nodes.mu.Lock()
	if m := s.nodes.m[n.ID]; m != nil {
		seen = later(seen, m.seen)
		if m.polls > 0 {
			seen = later(seen, now)
		}
	}
	s.nodes.mu.Unlock()
	var age float64
	if !seen.IsZero() {
		age = max(now.Sub(seen), 0).Seconds()
	}
	return api.Node{
		AgeSeconds:  age,
		Capacity:    n.Capacity,
		Concurency:  n.Concurency,
		Defaults:    n.Defaults,
		Drained:     n.Drained,
		Free:        n.Free,
		Health:      NodeHealth(seen, now, s.cfg.LeaseTime),
		LastDequeue: djangoTimeOrEmpty(n.LastDequeue),
		LastSeen:    djangoTimeOrEmpty(seen),
		Name:        n.Name,
		Queues:      n.Queues,
		Running:     n.Running,
		Tags:        n.Tags,
	}
}

// Nodes lists the nodes the server has heard from or drained, by name,
// with their health as of now: GET /node/'s answer for managers, and what
// `kolejka-server node ls` and the web UI show.
func (s *Server) Nodes(ctx context.Context) ([]api.Node, error) {
	infos, err := s.db.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := make([]api.Node, 0, len(infos))
	for _, n := range infos {
		out = append(out, s.nodeView(n, now))
	}
	return out, nil
}

// Node is the processor named name as a node (never seen if the server
// has not heard from it); ErrNotFound when there is no such processor.
func (s *Server) Node(ctx context.Context, name string) (api.Node, error) {
	n, err := s.db.Node(ctx, name)
	if errors.Is(err, store.ErrNotProcessor) {
		return api.Node{}, fmt.Errorf("no node named %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return api.Node{}, err
	}
	return s.nodeView(n, s.now()), nil
}

// SetNodeDrained drains the processor named name (its dequeues get no
// task, a long poll of its waiting here ends at once; its running tasks
// go on) or undrains it, and returns it as it is now; ErrNotFound when
// there is no such processor. A server in another process sees it within
// queueRecheck.
func (s *Server) SetNodeDrained(ctx context.Context, name string, drained bool) (api.Node, error) {
	id, err := s.db.SetNodeDrained(ctx, name, drained, s.now())
	if errors.Is(err, store.ErrNotProcessor) {
		return api.Node{}, fmt.Errorf("no node named %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return api.Node{}, err
	}
	s.nodes.mu.Lock()
	m := s.nodes.memo(id)
	m.drained, m.drainRead = drained, time.Now()
	m.gen++
	s.nodes.mu.Unlock()
	// Wake the long polls: the drained node's ends, an undrained node's
	// (there is none waiting) changes nothing.
	s.signalQueue()
	return s.Node(ctx, name)
}

// readsAllNodes: managers and inspectors read every node, a processor
// itself.
func readsAllNodes(u *store.User) bool { return u.Roles.Any(store.RoleInspector | store.RoleManager) }

// mayReadNode: managers, inspectors and the node itself read a node;
// otherwise the refusal.
func mayReadNode(u *store.User, name string) string {
	if !readsAllNodes(u) && name != u.Name {
		return "only managers, inspectors and the node itself read a node"
	}
	return ""
}

// mayDrainNodes: managers drain and undrain nodes; otherwise the refusal.
func mayDrainNodes(u *store.User) string {
	if !u.Roles.Has(store.RoleManager) {
		return "only managers drain and undrain nodes"
	}
	return ""
}

// mayReadNodes: managers, inspectors and processors read nodes (a
// processor itself); otherwise the refusal.
func mayReadNodes(u *store.User) string {
	if !readsAllNodes(u) && !u.Roles.Has(store.RoleProcessor) {
		return "only managers, inspectors and processors read nodes"
	}
	return ""
}

// nodesFor lists the nodes u reads (GET /node/ and the web UI): every
// node for managers and inspectors, itself for a processor; for anyone
// else why is the refusal (mayReadNodes).
func (s *Server) nodesFor(ctx context.Context, u *store.User) (nodes []api.Node, why string, err error) {
	if why := mayReadNodes(u); why != "" {
		return nil, why, nil
	}
	if readsAllNodes(u) {
		nodes, err = s.Nodes(ctx)
		return nodes, "", err
	}
	n, err := s.Node(ctx, u.Name)
	if err != nil {
		return nil, "", err
	}
	return []api.Node{n}, "", nil
}

func (s *Server) handleNodes(w http.ResponseWriter, r *http.Request) {
	u := getBy(w, r)
	if u == nil {
		return
	}
	nodes, why, err := s.nodesFor(r.Context(), u)
	switch {
	case err != nil:
		s.internal(w, r, err)
		return
	case why != "":
		forbidden(w, why)
		return
	}
	ok(w, &api.NodesAnswer{LeaseTime: spec.FormatTime(s.cfg.LeaseTime), Nodes: nodes})
}

func (s *Server) handleNode(w http.ResponseWriter, r *http.Request) {
	u, name, n := lookup(s, w, r, "name", s.Node)
	if u == nil {
		return
	}
	if why := mayReadNode(u, name); why != "" {
		forbidden(w, why)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		notAllowed(w, "GET", "HEAD")
		return
	}
	ok(w, &api.NodeAnswer{Node: n})
}

func (s *Server) handleNodeDrain(w http.ResponseWriter, r *http.Request)   { s.drainNode(w, r, true) }
func (s *Server) handleNodeUndrain(w http.ResponseWriter, r *http.Request) { s.drainNode(w, r, false) }

func (s *Server) drainNode(w http.ResponseWriter, r *http.Request, drained bool) {
	u := signedIn(w, r)
	if u == nil {
		return
	}
	if r.Method != http.MethodPost {
		notAllowed(w, "POST")
		return
	}
	if why := mayDrainNodes(u); why != "" {
		forbidden(w, why)
		return
	}
	n, err := s.SetNodeDrained(r.Context(), r.PathValue("name"), drained)
	if s.lookupFailed(w, r, err) {
		return
	}
	if drained {
		s.log.Info("node drained", "node", n.Name, "by", u.Name)
	} else {
		s.log.Info("node undrained", "node", n.Name, "by", u.Name)
	}
	ok(w, &api.NodeAnswer{Node: n})
}

// emptyDequeue is a dequeue's answer without tasks.
func emptyDequeue(w http.ResponseWriter) {
	ok(w, &api.DequeueAnswer{Tasks: []json.RawMessage{}})
}
