package cgroup

import (
	"fmt"
	"path"
	"path/filepath"
)

// EffectiveCPUs returns the CPUs the group's processes may run on, sorted:
// what its cpuset grants once the ancestors' restrictions are applied (v1
// cpuset.effective_cpus, or cpuset.cpus on kernels without it; v2
// cpuset.cpus.effective). On v2 a group whose parent did not enable the
// cpuset controller has no cpuset files and runs on the CPUs of its nearest
// ancestor that has them, so that one is read. The error wraps
// ErrUnsupported where no cpuset controller is available at all.
func (g *Group) EffectiveCPUs() ([]int, error) {
	s, err := g.effectiveCPUList()
	if err != nil {
		return nil, fmt.Errorf("unable to read the CPUs of cgroup %s: %w", g.path, err)
	}
	cpus, err := parseCPUList(s)
	if err != nil {
		return nil, fmt.Errorf("unable to parse the CPUs %q of cgroup %s: %w", s, g.path, err)
	}
	return cpus, nil
}

func (g *Group) effectiveCPUList() (string, error) {
	if g.v2 != nil {
		for p := g.path; ; p = path.Dir(p) {
			s, err := readString(filepath.Join(g.h.mount, p, "cpuset.cpus.effective"))
			if err == nil {
				return s, nil
			}
			if !isMissing(err) {
				return "", err
			}
			if p == "/" {
				return "", fmt.Errorf("the cpuset controller is not available: %w", ErrUnsupported)
			}
		}
	}
	dir := g.h.dir("cpuset", g.path)
	if dir == "" {
		return "", fmt.Errorf("the cgroup v1 cpuset controller is not mounted: %w", ErrUnsupported)
	}
	s, err := readString(filepath.Join(dir, "cpuset.effective_cpus"))
	if isMissing(err) {
		s, err = readString(filepath.Join(dir, "cpuset.cpus"))
	}
	if isMissing(err) && !g.exists() {
		err = ErrNotExist
	}
	return s, err
}
