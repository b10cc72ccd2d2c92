package foreman

// This file owns the node's automatic tags (docs/kolejka-protocol.md §4):
// cpu:<vendor>, cpu:<model>, cpus:<count>, gpu:nvidia, gpu:<model>,
// hostname:<name>, kernel:<release>. Tasks list tags they need in
// "requires"; the server hands a task only to nodes having them all.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// AutoTags returns the tags of this machine: its CPU (from /proc/cpuinfo),
// its GPUs (as DetectMachine found them), host name and kernel release.
func AutoTags(gpus []GPU) ([]string, error) {
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return nil, fmt.Errorf("unable to read /proc/cpuinfo: %w", err)
	}
	tags := CPUTags(cpuinfo)
	tags = append(tags, GPUTags(gpus)...)
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("unable to read the host name: %w", err)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, fmt.Errorf("unable to read the kernel release: %w", err)
	}
	tags = append(tags, "hostname:"+host, "kernel:"+unix.ByteSliceToString(uts.Release[:]))
	return NormalizeTags(tags), nil
}

// NormalizeTags trims tags, drops empty ones and repeats, and sorts them.
func NormalizeTags(tags []string) []string {
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// cpuVendor maps /proc/cpuinfo's vendor_id to the vendor tag.
func cpuVendor(id string) (string, bool) {
	switch id {
	case "GenuineIntel":
		return "intel", true
	case "AuthenticAMD":
		return "amd", true
	}
	return "", false
}

// CPUTags reads /proc/cpuinfo's text: cpu:<vendor> (intel, amd), cpu:<model>
// (see CPUModel) and cpus:<number of processors listed>, as Kolejka does.
func CPUTags(cpuinfo []byte) []string {
	var tags []string
	count := 0
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key, val = strings.ToLower(strings.TrimSpace(key)), strings.Join(strings.Fields(val), " ")
		switch key {
		case "processor":
			count++
		case "vendor_id":
			if v, ok := cpuVendor(val); ok {
				tags = append(tags, "cpu:"+v)
			}
		case "model name":
			if m := CPUModel(val); m != "" {
				tags = append(tags, "cpu:"+m)
			}
		}
	}
	if count > 0 {
		tags = append(tags, "cpus:"+strconv.Itoa(count))
	}
	return NormalizeTags(tags)
}

var (
	cpuFrequency   = regexp.MustCompile(`@.*`)
	cpuParentheses = regexp.MustCompile(`\([^()]*\)`)
	// Words that name the brand, the family's marketing or the core count
	// rather than the model (Kolejka's list).
	cpuNoiseWord = regexp.MustCompile(`^(?:[0-9.+-]*ghz|mobile|extreme|-|cpu|apu|gen|solo|dual|duo|trile|quad|eight|intel.*|amd.*|core.*|dual-?core.*|triple-?core.*|quad-?core.*|eight-?core.*)$`)
)

// CPUModel turns a CPU's model name into its tag's form, as Kolejka does:
// lower case, without the frequency ("@ 2.40GHz"), parenthesised marks
// ("(R)", "(TM)"), and brand and core-count words:
// "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz" → "i7-8700",
// "AMD Ryzen 9 5950X 16-Core Processor" → "ryzen 9 5950x 16-core processor".
func CPUModel(name string) string {
	name = cpuFrequency.ReplaceAllString(strings.ToLower(name), "")
	name = cpuParentheses.ReplaceAllString(name, "")
	var words []string
	for _, w := range strings.Fields(name) {
		if !cpuNoiseWord.MatchString(w) {
			words = append(words, w)
		}
	}
	return strings.Join(words, " ")
}

// GPUTags are gpu:nvidia (every GPU is one nvidia-smi listed) and, from
// its name as nvidia-smi gives it, gpu:<first word> and gpu:<the other
// words joined by dashes>, as Kolejka does: "NVIDIA GeForce RTX 3090" →
// gpu:nvidia, gpu:geforce-rtx-3090.
func GPUTags(gpus []GPU) []string {
	var tags []string
	for _, g := range gpus {
		tags = append(tags, "gpu:nvidia")
		parts := strings.Fields(strings.ToLower(g.Name))
		if len(parts) == 0 {
			continue
		}
		tags = append(tags, "gpu:"+parts[0])
		if len(parts) > 1 {
			tags = append(tags, "gpu:"+strings.Join(parts[1:], "-"))
		}
	}
	return NormalizeTags(tags)
}
