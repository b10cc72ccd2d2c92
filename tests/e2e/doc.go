// Package e2e tests the grid end to end with real processes on loopback:
// kolejka-server serving a data folder, kolejka-foreman nodes running tasks
// in runc containers, and kolejka-client submitting them, each built from
// this tree (or taken from $KOLEJKA_BIN when it holds all of them). It has
// no code of its own: see its tests and benchmarks (BENCHMARKS.md).
//
// The tests need root, cgroups and the test image (`make testimage`); they
// skip without them, and fail instead under KOLEJKA_REQUIRE_PRIVILEGED=1.
package e2e
