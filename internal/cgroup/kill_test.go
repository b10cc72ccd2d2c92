package cgroup

import "testing"

// appeared decides whether Kill must freeze: only when a process showed up
// between the listing and the signals.
func TestAppeared(t *testing.T) {
	for _, c := range []struct {
		before, after []int
		want          bool
	}{
		{nil, nil, false},
		{[]int{1, 5, 9}, []int{1, 5, 9}, false},
		{[]int{1, 5, 9}, []int{5}, false}, // some died: nothing new
		{[]int{1, 5, 9}, []int{1, 5, 7, 9}, true},
		{[]int{1, 5, 9}, []int{10}, true},
		{nil, []int{3}, true},
	} {
		if got := appeared(c.before, c.after); got != c.want {
			t.Errorf("appeared(%v, %v) = %v, want %v", c.before, c.after, got, c.want)
		}
	}
}
