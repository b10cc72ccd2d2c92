package foreman

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/spec"
)

func TestCPUModel(t *testing.T) {
	for name, want := range map[string]string{
		"Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz":         "i7-8700",
		"Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz":       "xeon gold 6248r",
		"Intel(R) Core(TM)2 Quad CPU    Q9550  @ 2.83GHz": "q9550",
		"Intel(R) Core(TM) i5-1135G7 @ 2.40GHz":           "i5-1135g7",
		"AMD Ryzen 9 5950X 16-Core Processor":             "ryzen 9 5950x 16-core processor",
		"AMD EPYC 7B13 64-Core Processor":                 "epyc 7b13 64-core processor",
		"AMD EPYC":                                        "epyc",
		"AMD Athlon(tm) II X2 250 Processor":              "athlon ii x2 250 processor",
		"AMD A10-7850K Radeon R7, 12 Compute Cores 4C+8G": "a10-7850k radeon r7, 12 compute 4c+8g", // "cores" goes too, as in Kolejka
		"Intel(R) Pentium(R) Dual  CPU  E2180  @ 2.00GHz": "pentium e2180",
		"QEMU Virtual CPU version 2.5+":                   "qemu virtual version 2.5+",
	} {
		if got := CPUModel(name); got != want {
			t.Errorf("CPUModel(%q) = %q, want %q", name, got, want)
		}
	}
}

const cpuinfoSample = `processor	: 0
vendor_id	: GenuineIntel
cpu family	: 6
model name	: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz
flags		: fpu vme de

processor	: 1
vendor_id	: GenuineIntel
cpu family	: 6
model name	: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz
flags		: fpu vme de
`

func TestCPUTags(t *testing.T) {
	got := CPUTags([]byte(cpuinfoSample))
	if want := []string{"cpu:i7-8700", "cpu:intel", "cpus:2"}; !slices.Equal(got, want) {
		t.Errorf("CPUTags = %v, want %v", got, want)
	}
	// ARM's cpuinfo has processors but no vendor_id or model name.
	arm := "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n\nprocessor\t: 1\nBogoMIPS\t: 50.00\n"
	if got := CPUTags([]byte(arm)); !slices.Equal(got, []string{"cpus:2"}) {
		t.Errorf("CPUTags(arm) = %v", got)
	}
}

// nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits
// on a machine with two GPUs (no such machine here: parsed from a sample).
const nvidiaSample = `0, NVIDIA GeForce RTX 3090, 24576
1, Tesla V100-SXM2-16GB, 16160
`

func TestGPUs(t *testing.T) {
	gpus, err := ParseNvidiaSMI([]byte(nvidiaSample))
	if err != nil {
		t.Fatal(err)
	}
	want := []GPU{{0, "NVIDIA GeForce RTX 3090", 24576 << 20}, {1, "Tesla V100-SXM2-16GB", 16160 << 20}}
	if !slices.Equal(gpus, want) {
		t.Fatalf("ParseNvidiaSMI = %+v", gpus)
	}
	tags := GPUTags(gpus)
	if want := []string{"gpu:geforce-rtx-3090", "gpu:nvidia", "gpu:tesla", "gpu:v100-sxm2-16gb"}; !slices.Equal(tags, want) {
		t.Errorf("GPUTags = %v, want %v", tags, want)
	}
	for _, bad := range []string{"0, X\n", "zero, X, 100\n", "0, X, many\n"} {
		if _, err := ParseNvidiaSMI([]byte(bad)); err == nil {
			t.Errorf("ParseNvidiaSMI(%q) accepted", bad)
		}
	}
	if gpus, err := ParseNvidiaSMI(nil); err != nil || len(gpus) != 0 {
		t.Errorf("no GPUs: %v %v", gpus, err)
	}

	// The node offers them when its runtime can give them to tasks; each
	// GPU's memory is the smallest one's.
	m := Machine{Cores: []int{0, 1}, Memory: 8 << 30, GPUs: gpus}
	c, _ := m.Capacity(0, spec.Limits{}, true)
	if *c.GPUs != 2 || *c.GPUMemory != 16160<<20 {
		t.Errorf("capacity with GPUs: %s", c)
	}
	c, _ = m.Capacity(0, spec.Limits{}, false)
	if *c.GPUs != 0 || c.GPUMemory != nil {
		t.Errorf("capacity without GPU support: %s", c)
	}
}

func TestMeminfoAndCapacity(t *testing.T) {
	total, err := ParseMeminfo(strings.NewReader("MemTotal:       24684092 kB\nMemFree:        22287328 kB\n"))
	if err != nil || total != 24684092*1024 {
		t.Fatalf("ParseMeminfo = %d, %v", total, err)
	}
	if _, err := ParseMeminfo(strings.NewReader("MemFree: 1 kB\n")); err == nil {
		t.Error("no MemTotal accepted")
	}

	m := Machine{Cores: []int{0, 1, 2, 3}, Memory: 16 << 30}
	c, cores := m.Capacity(DefaultMemoryReserve, spec.Limits{}, false)
	if *c.CPUs != 4 || !slices.Equal(cores, []int{0, 1, 2, 3}) || *c.Memory != 16<<30-DefaultMemoryReserve || *c.GPUs != 0 {
		t.Errorf("capacity %s, cores %v", c, cores)
	}
	// Caps win where smaller; they bring per-task maxima; cores are cut to cpus.
	caps := lim(t, "cpus", "2", "memory", "32G", "time", "10M", "image", "5G")
	c, cores = m.Capacity(1<<30, caps, false)
	if want := lim(t, "cpus", "2", "memory", "15G", "time", "10M", "image", "5G", "gpus", "0").String(); c.String() != want || !slices.Equal(cores, []int{0, 1}) {
		t.Errorf("capped capacity %s, cores %v; want %s", c, cores, want)
	}
	// The reserve never takes more than half the machine.
	small := Machine{Cores: []int{0}, Memory: 512 << 20}
	if c, _ := small.Capacity(DefaultMemoryReserve, spec.Limits{}, false); *c.Memory != 256<<20 {
		t.Errorf("small machine offers %d", *c.Memory)
	}
}

// On this machine: the tags are there and well formed.
func TestAutoTagsHere(t *testing.T) {
	tags, err := AutoTags(nil)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	for _, want := range []string{"hostname:" + host, "cpus:"} {
		if !slices.ContainsFunc(tags, func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Errorf("tags %v lack %s", tags, want)
		}
	}
	if !slices.ContainsFunc(tags, func(s string) bool { return strings.HasPrefix(s, "kernel:") && len(s) > len("kernel:") }) {
		t.Errorf("tags %v lack the kernel", tags)
	}
	for _, tag := range tags {
		if strings.TrimSpace(tag) != tag || tag == "" {
			t.Errorf("tag %q", tag)
		}
	}
}
