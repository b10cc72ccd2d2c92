// Package hardening is the hardening suite of kolejka in Go: three tables of
// cases, each an assertion of a test in this folder, run by CI with `make
// hardening`, which also regenerates docs/hardening.md from what the run
// observed.
//
//   - Bad input (badinput_test.go): malformed, mistyped, oversized, truncated,
//     escaping or unauthorised input to every part that takes input — task
//     folders (the worker), the server's HTTP API (both the session+CSRF and
//     the bearer paths), kolejka-client, the observer's socket. Each gets a
//     clear error that names the problem, and each proves that nothing
//     changed: the task folder byte for byte, no result folder, the server's
//     database rows and blob files, the observer's sessions and cgroups.
//   - Hostile tasks (hostile_test.go): fork, memory and thread bombs, disk
//     and output floods, sleepers, spinners, killers, escape and network
//     attempts, leftover daemons, a flood of the observer's socket, in
//     containers made for the task and in containers prepared ahead (warm);
//     and what warm containers add (hostile_warm_test.go): a task going for
//     the next tasks' prepared containers, ever new task shapes against the
//     pool's bound, a foreman killed holding a prepared container. Each gets
//     its verdict, and the node is healthy afterwards: no process of the run
//     (by cgroup and by a scan of /proc for the run's mark), no cgroup, mount,
//     container state or scratch, and the next task runs normally.
//   - Faults (faults_test.go): kill -9 of the server, a foreman, a worker and
//     the observer in the middle of work, the server's disk full, a node's
//     disk full, a node cut off from the server by a network namespace.
//     Nothing accepted is lost, no task gets two results, and the grid
//     recovers by itself.
//
// The tests use real parts only: the binaries built from this tree (or
// $KOLEJKA_BIN), real runc and Docker containers, real cgroups, SQLite files,
// HTTP over loopback and veth pairs. They need root, cgroups, the test image
// and a Docker engine; they skip without them, and fail instead under
// KOLEJKA_REQUIRE_PRIVILEGED=1, as CI runs them.
//
// The only code outside the tests is the table (table.go): rows registered
// by the tests, filled with what they observed, and written as Markdown when
// KOLEJKA_HARDENING_TABLE names a file.
package hardening
