package runc

import "os"

// TaskSeccomp lets the benchmarks give their `runc run` baseline the same
// filter as task containers.
var TaskSeccomp = taskSeccomp

// LeanInitFile is the sealed lean init the runtime hands to its
// containers, nil without one.
func LeanInitFile(r *Runtime) *os.File { return r.leanInit }
