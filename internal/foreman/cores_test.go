package foreman

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestCoresPreferShortestRun(t *testing.T) {
	c := NewCores([]int{0, 1, 2, 3, 4, 5, 6, 7})
	a, _ := c.Take(3) // 0-2
	b, _ := c.Take(1) // 3
	_, _ = c.Take(2)  // 4-5
	c.Put(a)          // free: 0-2 (run of 3), 6-7 (run of 2)
	c.Put(b)          // free: 0-3 (run of 4), 6-7
	got, err := c.Take(2)
	if err != nil || !slices.Equal(got, []int{6, 7}) {
		t.Fatalf("Take(2) = %v, %v; want the run that fits exactly, 6-7", got, err)
	}
	got, err = c.Take(4)
	if err != nil || !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("Take(4) = %v, %v; want 0-3 kept whole", got, err)
	}
	if c.Free() != 0 {
		t.Fatalf("%d free, want 0", c.Free())
	}
	if _, err := c.Take(1); !errors.Is(err, ErrNoFit) {
		t.Fatalf("Take on a full node: %v", err)
	}
}

func TestCoresFragmentedAndSparse(t *testing.T) {
	// Cores this process may use need not be consecutive (taskset 0,2,4-5).
	c := NewCores([]int{5, 0, 4, 2})
	got, err := c.Take(2)
	if err != nil || !slices.Equal(got, []int{4, 5}) {
		t.Fatalf("Take(2) = %v, %v; want the only consecutive pair 4-5", got, err)
	}
	got, err = c.Take(2)
	if err != nil || !slices.Equal(got, []int{0, 2}) {
		t.Fatalf("Take(2) = %v, %v; want the lowest free cores when no run fits", got, err)
	}
	if _, err := c.Take(0); !errors.Is(err, ErrNoFit) {
		t.Fatalf("Take(0): %v", err)
	}
	c.Put([]int{0})
	if _, err := c.Take(2); !errors.Is(err, ErrNoFit) || c.Free() != 1 {
		t.Fatalf("Take(2) with one free core must fail and change nothing: %v, %d free", err, c.Free())
	}
}

// Whatever the order of takes and puts, no core is ever held twice and
// Free always counts exactly the cores nobody holds.
func TestCoresNeverShared(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	c := NewCores([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	var held [][]int
	owner := map[int]int{}
	for step := range 5000 {
		if len(held) > 0 && r.IntN(2) == 0 {
			i := r.IntN(len(held))
			for _, core := range held[i] {
				delete(owner, core)
			}
			c.Put(held[i])
			held = slices.Delete(held, i, i+1)
		} else {
			n := 1 + r.IntN(4)
			got, err := c.Take(n)
			if err != nil {
				if c.Free() >= n {
					t.Fatalf("step %d: Take(%d) failed with %d free", step, n, c.Free())
				}
				continue
			}
			if len(got) != n {
				t.Fatalf("step %d: Take(%d) = %v", step, n, got)
			}
			for _, core := range got {
				if o, taken := owner[core]; taken {
					t.Fatalf("step %d: core %d given twice (held by grant %d)", step, core, o)
				}
				owner[core] = step
			}
			held = append(held, got)
		}
		if c.Free() != c.Total()-len(owner) {
			t.Fatalf("step %d: Free %d, %d held of %d", step, c.Free(), len(owner), c.Total())
		}
	}
}
