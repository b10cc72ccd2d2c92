package runc

// TaskSeccomp lets the benchmarks give their `runc run` baseline the same
// filter as task containers.
var TaskSeccomp = taskSeccomp
