// Package daemon is kolejka-observer's daemon: the node's root service that
// gives processes, containerised ones included, cgroup "sessions" to run
// under limits and be measured in, over Kolejka's observer protocol on a
// unix socket (docs/kolejka-protocol.md §5; docs/observer.md). Its Go
// client is the public package observer, which also holds what both sides
// of the wire share (the sentinel errors, the messages).
//
// The parts:
//
//   - Registry (registry.go) owns the sessions and all their behaviour; it
//     works in-process too (kolejka-observer run without a daemon).
//   - Server (server.go, wire.go, handlers.go) speaks the protocol: a
//     tolerant HTTP/1.x of its own, since Kolejka's Python clients send
//     requests that net/http refuses.
//   - Run (daemon.go) is the service: registry, socket, server, signals.
//
// A session's life:
//
//  1. open or attach: a cgroup kolejka_observer_<id> is made in the
//     caller's cgroup (the caller is the process that connected, from
//     SO_PEERCRED). On cgroup v2 the processes of that cgroup first move
//     into its kolejka_observer_procs leaf: the kernel gives controllers
//     only to sub-groups of a group without processes of its own. attach
//     moves the caller in. Sessions nest: one opened from inside a session
//     is below it, and the kernel counts its usage in every ancestor's.
//  2. limits: memory, swap, pids, pinned cpus are written to the cgroup;
//     a time limit arms a timer that kills the session at its deadline;
//     cgroup_depth and cgroup_descendants bound the sessions below it.
//  3. attach (with the secret), detach, freeze, thaw, kill, stats: any
//     number of times, by processes allowed to (the secret, and the creator
//     or a process within the cgroup the session was made in).
//  4. close: the caller leaves if it is inside, what is left is killed, the
//     final stats are read and kept for a while, the cgroups are removed.
//     A session whose creator died and that holds no process closes by
//     itself (reaper.go).
//
// Each change is recorded in a state folder (state.go), so a restarted
// daemon adopts the live sessions, re-arms their time limits and cleans up
// what finished meanwhile.
package daemon
