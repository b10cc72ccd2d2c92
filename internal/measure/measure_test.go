package measure

import (
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/spec"
)

func TestStatsOf(t *testing.T) {
	u := &cgroup.Usage{
		CPU: 3*time.Second + 1500, CPUUser: 2 * time.Second, CPUSystem: time.Second,
		PerCPU:     []time.Duration{time.Second, 0, 2 * time.Second, 7},
		MemoryPeak: 1 << 20, SwapPeak: 4096, MemoryFailures: 0, OOMKills: 2,
		Pids: 3, PidsPeak: 9, PidsFailures: 4,
	}
	st := StatsOf(u, []int{2, 3, 9})
	if *st.CPU.Usage != 3*time.Second+2*time.Microsecond {
		t.Errorf("CPU %v, want rounded to microseconds", *st.CPU.Usage)
	}
	if len(st.CPUs) != 2 || *st.CPUs["2"].Usage != 2*time.Second || *st.CPUs["3"].Usage != 0 {
		t.Errorf("per-core %v, want cores 2 and 3 only (9 is not counted)", st.CPUs)
	}
	if *st.Memory.Failures != 2 || *st.Memory.MaxUsage != 1<<20 || *st.Memory.MaxSwap != 4096 {
		t.Errorf("memory %+v: failures are the larger of failcnt and OOM kills", st.Memory)
	}
	if *st.Pids.MaxUsage != 9 || *st.Pids.Failures != 4 {
		t.Errorf("pids %+v", st.Pids)
	}
	if all := StatsOf(u, nil); len(all.CPUs) != 4 {
		t.Errorf("without cores every counted core: %v", all.CPUs)
	}
	if v2 := StatsOf(&cgroup.Usage{CPU: time.Second}, []int{0, 1}); len(v2.CPUs) != 0 {
		t.Errorf("v2 keeps no per-core time: %v", v2.CPUs)
	}
	// What StatsOf makes, Kolejka's stats format reads back.
	b, err := StatsOf(u, nil).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := spec.ParseStats(b, "stats"); err != nil {
		t.Error(err)
	}
}
