// Package report is the report of the cgroup v2 test machine
// (testdata/cgroup2vm): what its guest writes and its summary reads.
package report

// Line is one line of the report: a JSON object the guest writes on
// /dev/ttyS1 and the summary reads.
type Line struct {
	Kind string `json:"kind"` // "machine", "suite" or "done"

	// machine
	Kernel      string          `json:"kernel,omitempty"`
	Controllers string          `json:"controllers,omitempty"`
	Features    map[string]bool `json:"features,omitempty"`
	CPUs        int             `json:"cpus,omitempty"`

	// suite
	Mode     string   `json:"mode,omitempty"`
	Suite    string   `json:"suite,omitempty"`
	Exit     int      `json:"exit"`
	Passed   []string `json:"passed,omitempty"`
	Failed   []string `json:"failed,omitempty"`
	Skipped  []string `json:"skipped,omitempty"`
	Left     []string `json:"left,omitempty"`  // what the suite left behind
	Bench    []string `json:"bench,omitempty"` // benchmark result lines
	Seconds  float64  `json:"seconds,omitempty"`
	SkipExpr string   `json:"skip_expr,omitempty"`
	Why      string   `json:"why,omitempty"`
	Problem  string   `json:"problem,omitempty"`
}
