package foreman

// This file owns what the machine offers tasks: its cores, memory and GPUs,
// found at start-up, and the node's capacity made of them.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/spec"
)

// Machine is what this machine has, as the foreman found it.
type Machine struct {
	// Cores are the cores this process may run on (its affinity: a
	// systemd CPUAffinity= or taskset shrinks the node), ascending.
	Cores []int
	// Memory is MemTotal of /proc/meminfo, in bytes.
	Memory int64
	// GPUs are NVIDIA GPUs nvidia-smi lists (none where it is missing).
	GPUs []GPU
}

// GPU is one GPU.
type GPU struct {
	Index  int
	Name   string // e.g. "NVIDIA GeForce RTX 3090"
	Memory int64  // bytes
}

// DefaultMemoryReserve is memory kept for the system and the node's own
// processes: it is never offered to tasks. At most half the machine's.
const DefaultMemoryReserve = 512 << 20

// DetectMachine finds the machine's cores, memory and GPUs.
func DetectMachine(ctx context.Context) (Machine, error) {
	var m Machine
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return m, fmt.Errorf("unable to read the cores available: %w", err)
	}
	for i := 0; i < len(set)*64; i++ {
		if set.IsSet(i) {
			m.Cores = append(m.Cores, i)
		}
	}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return m, fmt.Errorf("unable to read memory size: %w", err)
	}
	defer f.Close()
	if m.Memory, err = ParseMeminfo(f); err != nil {
		return m, err
	}
	if m.GPUs, err = detectGPUs(ctx); err != nil {
		return m, err
	}
	return m, nil
}

// ParseMeminfo returns MemTotal, in bytes, of /proc/meminfo's text.
func ParseMeminfo(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != "MemTotal" {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			break
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("unable to read /proc/meminfo: MemTotal %q", rest)
		}
		if len(fields) > 1 && strings.EqualFold(fields[1], "kB") {
			n *= 1024
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("unable to read /proc/meminfo: %w", err)
	}
	return 0, errors.New("unable to read /proc/meminfo: no MemTotal")
}

// nvidiaQuery is what the foreman asks nvidia-smi.
const nvidiaQuery = "--query-gpu=index,name,memory.total --format=csv,noheader,nounits"

// detectGPUs asks nvidia-smi, when there is one, for the GPUs. A machine
// without it has none; one whose nvidia-smi fails is an error (a node
// should not silently lose its GPUs).
func detectGPUs(ctx context.Context) ([]GPU, error) {
	smi, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, smi, strings.Fields(nvidiaQuery)...).Output()
	if err != nil {
		return nil, fmt.Errorf("unable to list GPUs (%s %s): %w", smi, nvidiaQuery, err)
	}
	return ParseNvidiaSMI(out)
}

// ParseNvidiaSMI reads the output of
// `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits`:
// one line per GPU, memory in MiB.
func ParseNvidiaSMI(out []byte) ([]GPU, error) {
	r := csv.NewReader(bytes.NewReader(out))
	r.TrimLeadingSpace = true
	r.FieldsPerRecord = 3
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("unable to read nvidia-smi's output: %w", err)
	}
	gpus := make([]GPU, 0, len(recs))
	for _, rec := range recs {
		idx, err1 := strconv.Atoi(strings.TrimSpace(rec[0]))
		mib, err2 := strconv.ParseInt(strings.TrimSpace(rec[2]), 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("unable to read nvidia-smi's output: line %q: %w", strings.Join(rec, ","), err)
		}
		gpus = append(gpus, GPU{Index: idx, Name: strings.TrimSpace(rec[1]), Memory: mib << 20})
	}
	return gpus, nil
}

// Capacity is what the node offers tasks: every core it may use, its
// memory less reserve, and its GPUs when gpus is true (the runtime can give
// them to tasks; otherwise 0, so that no GPU task is taken), each capped by
// caps (the [foreman] limits, field-wise minimum; caps also bring the
// per-task maxima such as time and image). It returns the capacity and the
// cores tasks are pinned to: the first caps.cpus of the machine's.
func (m Machine) Capacity(reserve int64, caps spec.Limits, gpus bool) (spec.Limits, []int) {
	if reserve < 0 {
		reserve = DefaultMemoryReserve
	}
	reserve = min(reserve, m.Memory/2)
	cores := m.Cores
	if caps.CPUs != nil && *caps.CPUs >= 0 && int(*caps.CPUs) < len(cores) {
		cores = cores[:*caps.CPUs]
	}
	nCores := int64(len(cores))
	mem := m.Memory - reserve
	var nGPUs int64
	if gpus {
		nGPUs = int64(len(m.GPUs))
	}
	found := spec.Limits{CPUs: &nCores, Memory: &mem, GPUs: &nGPUs}
	if gpus && len(m.GPUs) > 0 {
		// gpu_memory is what each GPU must have: the smallest one's.
		least := m.GPUs[0].Memory
		for _, g := range m.GPUs[1:] {
			least = min(least, g.Memory)
		}
		found.GPUMemory = &least
	}
	capacity := found.Merge(caps)
	capacity.CPUsOffset, capacity.GPUsOffset = nil, nil
	return capacity, cores
}
