//go:build cgroup_oldkernel

package cgroup

// Built with -tags cgroup_oldkernel, this package behaves as on a v2 kernel
// older than Linux 5.14: it treats cgroup.kill (5.14+) and memory.peak
// (5.19+) as missing, so that a current kernel runs their fallbacks (the
// freeze-and-kill rounds of Kill, the sampled peak of peaks.go). make
// test-v2 runs the node's tests once built so (testdata/cgroup2vm).
func init() {
	hidden = map[string]bool{"cgroup.kill": true, "memory.peak": true}
}
