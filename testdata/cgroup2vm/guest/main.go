// Command guest is the /init of the cgroup v2 test machine that
// testdata/cgroup2vm/run.sh boots under qemu: a real Linux kernel with
// cgroup v1 switched off (cgroup_no_v1=all). It mounts what a systemd host
// has, lays out the cgroup tree as systemd would, runs each test binary of
// the plan (plan.json beside it) in each mode, and reports every suite's
// outcome as a JSON line on the second serial port (/dev/ttyS1), the test
// output going to the console. Then it powers the machine off.
//
// The modes are the two places a grid node's services run on a v2 host:
//
//   - root: the test runs as root in a login session's leaf (a fresh
//     /user.slice/user-0.slice/session-<n>.scope) and may manage the whole
//     hierarchy, as `kolejka-worker` run from a root shell does.
//   - delegated: the test runs as a service with Delegate=yes would: in a
//     fresh group /system.slice/kolejka-<suite>.service whose parents enabled
//     every controller for it, marked trusted.delegate=1 as systemd marks it,
//     holding the service's process. Nothing outside that group may change:
//     every group above and beside it is recorded before the suite (its
//     folders, controllers, limits and processes) and compared after.
//
// After each suite the guest checks that nothing is left: no group added
// anywhere (root), nothing but empty leaves inside the service's group
// (delegated), no process in either.
//
// PID 1 only reaps: orphans (daemons a test detached) are reparented to it,
// and a test waiting for one to exit sees it gone only once it is reaped.
// The suites run in a child of it, the runner.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/testdata/cgroup2vm/report"
)

// Plan is plan.json: what run.sh packed into the initramfs.
type Plan struct {
	// Modes are "root" and "delegated", run in this order.
	Modes []string `json:"modes"`
	// Modules are kernel modules to load first (overlay.ko).
	Modules []string `json:"modules"`
	// Env is added to every suite's environment.
	Env map[string]string `json:"env"`
	// Suites are the test binaries.
	Suites []Suite `json:"suites"`
}

// Suite is one test binary, run as `go test` would run it.
type Suite struct {
	Name string `json:"name"`
	// Binary is the test binary (go test -c), Dir its package folder (the
	// working directory, as go test sets it).
	Binary string `json:"binary"`
	Dir    string `json:"dir"`
	// Run and Skip are the -test.run and -test.skip patterns ("" for all,
	// none); Why says why Skip leaves those tests out here.
	Run  string `json:"run,omitempty"`
	Skip string `json:"skip,omitempty"`
	Why  string `json:"why,omitempty"`
	// Bench, when set, runs these benchmarks (-test.bench) instead of the
	// tests, BenchTime times each (-test.benchtime).
	Bench     string `json:"bench,omitempty"`
	BenchTime string `json:"benchtime,omitempty"`
	// Modes limits the suite to some modes (empty: all).
	Modes []string `json:"modes,omitempty"`
	// Env is added to the plan's for this suite (a hidden kernel feature).
	Env map[string]string `json:"env,omitempty"`
	// Timeout bounds the suite (a Go duration).
	Timeout string `json:"timeout"`
}

const (
	cgroupMount = "/sys/fs/cgroup"
	sessions    = "/user.slice/user-0.slice"
	services    = "/system.slice"
	runnerEnv   = "V2VM_RUNNER"
)

var reports *json.Encoder

// sessionCount numbers the login sessions of root mode.
var sessionCount int

func main() {
	// The kernel starts /init with no PATH.
	os.Setenv("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
	if os.Getenv("V2VM_ROOT") == "" {
		// A host's / is a real file system, not the initramfs: pivot_root
		// (every container start) refuses the latter.
		err := switchRoot()
		fmt.Println("guest: unable to leave the initramfs:", err)
		poweroff()
	}
	if os.Getenv(runnerEnv) == "" {
		if err := mountAll(); err != nil {
			fmt.Println("guest:", err)
			poweroff()
		}
		reap()
		poweroff()
	}
	out, err := os.OpenFile("/dev/ttyS1", os.O_WRONLY, 0)
	if err != nil {
		fmt.Println("guest: no second serial port:", err)
		os.Exit(1)
	}
	reports = json.NewEncoder(out)
	if err := run(); err != nil {
		fmt.Println("guest:", err)
		_ = reports.Encode(report.Line{Kind: "done", Problem: err.Error()})
	} else {
		_ = reports.Encode(report.Line{Kind: "done"})
	}
	out.Sync()
}

// reap starts the runner and reaps every child, its own and orphans, until
// the runner is gone.
func reap() {
	exe, _ := os.Executable()
	runner := exec.Command(exe)
	runner.Env = append(os.Environ(), runnerEnv+"=1")
	runner.Stdin, runner.Stdout, runner.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := runner.Start(); err != nil {
		fmt.Println("guest: unable to start the runner:", err)
		return
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == nil && pid == runner.Process.Pid {
			return
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			fmt.Println("guest: wait:", err)
			return
		}
	}
}

func switchRoot() error {
	const newRoot = "/newroot"
	if err := os.Mkdir(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("root", newRoot, "tmpfs", 0, "mode=755"); err != nil {
		return err
	}
	entries, err := os.ReadDir("/")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "newroot" {
			continue
		}
		// Moved, not copied: what leaves the initramfs frees its memory.
		if err := moveTree("/"+e.Name(), newRoot+"/"+e.Name()); err != nil {
			return err
		}
	}
	if err := os.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("unable to move %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	return unix.Exec("/init", []string{"/init"}, append(os.Environ(), "V2VM_ROOT=tmpfs"))
}

// moveTree copies src to dst (folders, files, symlinks, modes) and removes
// src as it goes.
func moveTree(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case fi.IsDir():
		if err := os.Mkdir(dst, fi.Mode().Perm()); err != nil {
			return err
		}
		entries, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := moveTree(src+"/"+e.Name(), dst+"/"+e.Name()); err != nil {
				return err
			}
		}
		if err := os.Chmod(dst, fi.Mode().Perm()|fi.Mode()&(fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid)); err != nil {
			return err
		}
		_ = os.Remove(src) // unless it kept a device node
		return nil
	case fi.Mode().IsRegular():
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
		if err == nil {
			_, err = io.Copy(out, in)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		in.Close()
		if err != nil {
			return err
		}
		if err := os.Chmod(dst, fi.Mode().Perm()|fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid)); err != nil {
			return err
		}
	default:
		return nil // device nodes and the like: devtmpfs brings its own
	}
	return os.Remove(src)
}

func poweroff() {
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func run() error {
	b, err := os.ReadFile("/v2vm/plan.json")
	if err != nil {
		return err
	}
	var plan Plan
	if err := json.Unmarshal(b, &plan); err != nil {
		return fmt.Errorf("plan.json: %w", err)
	}
	for _, m := range plan.Modules {
		if err := loadModule(m); err != nil {
			return err
		}
	}
	if err := sh("ip", "link", "set", "lo", "up"); err != nil {
		return err
	}
	if err := layout(); err != nil {
		return err
	}
	machine, err := describe()
	if err != nil {
		return err
	}
	_ = reports.Encode(machine)
	for _, mode := range plan.Modes {
		for _, s := range plan.Suites {
			if len(s.Modes) > 0 && !contains(s.Modes, mode) {
				continue
			}
			r := runSuite(plan, s, mode)
			_ = reports.Encode(r)
		}
	}
	return nil
}

// mountAll mounts what a systemd host has: proc, sys, devices, cgroup2
// with nsdelegate, and tmpfs for scratch.
func mountAll() error {
	for _, m := range []struct{ src, dst, fs, opts string }{
		{"proc", "/proc", "proc", ""},
		{"sys", "/sys", "sysfs", ""},
		{"dev", "/dev", "devtmpfs", ""},
		{"devpts", "/dev/pts", "devpts", "newinstance,ptmxmode=0666"},
		{"shm", "/dev/shm", "tmpfs", ""},
		{"cgroup2", cgroupMount, "cgroup2", "nsdelegate"},
		{"tmp", "/tmp", "tmpfs", "mode=1777"},
		{"run", "/run", "tmpfs", "mode=755"},
		{"var", "/var/lib", "tmpfs", "mode=755"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fs, 0, m.opts); err != nil {
			return fmt.Errorf("unable to mount %s at %s: %w", m.fs, m.dst, err)
		}
	}
	// /var/run is /run on every current distribution.
	_ = os.Symlink("/run", "/var/run")
	return nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("unable to load %s: %w", path, err)
	}
	return nil
}

// layout makes the groups systemd makes at boot, with the controllers it
// enables by default (the user slices get no cpuset; the system slice gets
// every controller it delegates, in describe): the guest itself moves into
// init.scope.
func layout() error {
	for _, g := range []string{"/init.scope", sessions, services} {
		if err := os.MkdirAll(filepath.Join(cgroupMount, g), 0o755); err != nil {
			return err
		}
	}
	for _, g := range []string{"/", "/user.slice", "/user.slice/user-0.slice"} {
		if err := enable(g, "+cpu +io +memory +pids"); err != nil {
			return err
		}
	}
	return writeFile(filepath.Join(cgroupMount, "init.scope", "cgroup.procs"), "0")
}

func enable(group, controllers string) error {
	return writeFile(filepath.Join(cgroupMount, group, "cgroup.subtree_control"), controllers)
}

// describe reads the kernel's release, controllers and the v2 features
// whose absence the code has fallbacks for, from a scratch group.
func describe() (report.Line, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return report.Line{}, err
	}
	controllers, err := os.ReadFile(filepath.Join(cgroupMount, "cgroup.controllers"))
	if err != nil {
		return report.Line{}, err
	}
	probe := filepath.Join(cgroupMount, services, "probe.service")
	if err := enable("/", "+cpu +cpuset +memory +pids"); err != nil {
		return report.Line{}, err
	}
	if err := enable(services, "+cpu +cpuset +memory +pids"); err != nil {
		return report.Line{}, err
	}
	if err := os.Mkdir(probe, 0o755); err != nil {
		return report.Line{}, err
	}
	defer os.Remove(probe)
	features := map[string]bool{}
	for _, f := range []string{"cgroup.kill", "memory.peak", "memory.swap.peak", "memory.swap.max", "pids.peak", "cpu.stat"} {
		_, err := os.Stat(filepath.Join(probe, f))
		features[f] = err == nil
	}
	return report.Line{
		Kind:        "machine",
		Kernel:      unix.ByteSliceToString(u.Release[:]),
		Controllers: strings.TrimSpace(string(controllers)),
		Features:    features,
		CPUs:        numCPU(),
	}, nil
}

func numCPU() int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return 0
	}
	return set.Count()
}

// runSuite runs one test binary in one mode and checks what it left.
func runSuite(plan Plan, s Suite, mode string) report.Line {
	r := report.Line{Kind: "suite", Mode: mode, Suite: s.Name, SkipExpr: s.Skip, Why: s.Why, Exit: -1}
	fmt.Printf("\n===== v2vm: %s, %s =====\n", s.Name, mode)
	timeout, err := time.ParseDuration(s.Timeout)
	if err != nil {
		r.Problem = fmt.Sprintf("timeout %q: %v", s.Timeout, err)
		return r
	}

	var group string // the cgroup the suite starts in
	var before map[string]bool
	var outside map[string]string
	switch mode {
	case "root":
		// A new login's scope for each suite, as systemd makes one per
		// session: what one suite left there cannot hold up the next.
		sessionCount++
		group = fmt.Sprintf("%s/session-%d.scope", sessions, sessionCount)
		if err := os.Mkdir(filepath.Join(cgroupMount, group), 0o755); err != nil {
			r.Problem = err.Error()
			return r
		}
		defer removeTree(filepath.Join(cgroupMount, group))
		before = tree(cgroupMount)
	case "delegated":
		group = filepath.Join(services, "kolejka-"+s.Name+".service")
		if err := delegate(group); err != nil {
			r.Problem = err.Error()
			return r
		}
		defer undelegate(group)
		outside = snapshot(group)
	default:
		r.Problem = "unknown mode " + mode
		return r
	}

	dir, err := os.Open(filepath.Join(cgroupMount, group))
	if err != nil {
		r.Problem = err.Error()
		return r
	}
	defer dir.Close()

	args := []string{"-test.v", "-test.count=1", "-test.timeout=" + timeout.String()}
	if s.Run != "" {
		args = append(args, "-test.run="+s.Run)
	}
	if s.Bench != "" {
		args = append(args, "-test.run=^$", "-test.bench="+s.Bench, "-test.benchtime="+s.BenchTime)
	}
	if s.Skip != "" {
		args = append(args, "-test.skip="+s.Skip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Binary, args...)
	cmd.Dir = s.Dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/root", "TMPDIR=/tmp"}
	for _, env := range []map[string]string{plan.Env, s.Env} {
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd()), Setpgid: true}
	cmd.WaitDelay = 10 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		r.Problem = err.Error()
		return r
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		r.Problem = err.Error()
		return r
	}
	r.Passed, r.Failed, r.Skipped, r.Bench = scan(stdout, os.Stdout)
	err = cmd.Wait()
	r.Seconds = time.Since(start).Seconds()
	r.Exit = cmd.ProcessState.ExitCode()
	if ctx.Err() != nil {
		r.Problem = fmt.Sprintf("killed after %v", timeout+time.Minute)
	} else if err != nil && r.Exit < 0 {
		r.Problem = err.Error()
	}

	switch mode {
	case "root":
		r.Left = leftovers(before, tree(cgroupMount))
	case "delegated":
		r.Left = append(changed(outside, snapshot(group)), leftInside(filepath.Join(cgroupMount, group))...)
	}
	return r
}

// delegate makes the service's group as systemd makes it for a unit with
// Delegate=yes.
func delegate(group string) error {
	dir := filepath.Join(cgroupMount, group)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Setxattr(dir, "trusted.delegate", []byte("1"), 0); err != nil {
		return fmt.Errorf("unable to mark %s delegated: %w", group, err)
	}
	return nil
}

// undelegate removes the service's group, as systemd does when a service
// stops (killing what is left, which leftInside has reported).
func undelegate(group string) {
	dir := filepath.Join(cgroupMount, group)
	_ = writeFile(filepath.Join(dir, "cgroup.kill"), "1")
	for i := 0; i < 100 && populated(dir); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	removeTree(dir)
}

// watched are the files of a group whose change means it was touched: its
// controllers, limits, mode and processes.
var watched = []string{
	"cgroup.subtree_control", "cgroup.type", "cgroup.freeze", "cgroup.procs",
	"cgroup.max.depth", "cgroup.max.descendants",
	"memory.max", "memory.high", "memory.low", "memory.min", "memory.swap.max",
	"pids.max", "cpu.max", "cpu.weight", "cpuset.cpus", "cpuset.mems", "cpuset.cpus.partition", "io.max",
}

// snapshot records every group outside the delegated group (its folder and
// its watched files).
func snapshot(delegated string) map[string]string {
	out := map[string]string{}
	_ = filepath.WalkDir(cgroupMount, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		g := strings.TrimPrefix(p, cgroupMount)
		if g == delegated {
			return filepath.SkipDir
		}
		out[g+"/"] = ""
		for _, f := range watched {
			if g == "" && f == "cgroup.procs" {
				continue // the root's: kernel threads come and go
			}
			if b, err := os.ReadFile(filepath.Join(p, f)); err == nil {
				out[g+"/"+f] = strings.Join(strings.Fields(string(b)), " ")
			}
		}
		return nil
	})
	return out
}

// changed names what differs between two snapshots.
func changed(before, after map[string]string) []string {
	var out []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			out = append(out, fmt.Sprintf("outside the delegation: %s is gone (was %q)", k, v))
		} else if w != v {
			out = append(out, fmt.Sprintf("outside the delegation: %s changed from %q to %q", k, v, w))
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			out = append(out, fmt.Sprintf("outside the delegation: %s appeared (%q)", k, v))
		}
	}
	sort.Strings(out)
	return out
}

// tree lists every group folder below root.
func tree(root string) map[string]bool {
	out := map[string]bool{}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != root {
			out[strings.TrimPrefix(p, root)] = true
		}
		return nil
	})
	return out
}

// leftovers names the groups after has that before did not, and any
// process in them, then kills and removes them.
func leftovers(before, after map[string]bool) []string {
	var left []string
	for g := range after {
		if before[g] {
			continue
		}
		// The worker's default parent of runs stays, empty, by design.
		if filepath.Base(g) == "kolejka" && (filepath.Dir(g) == "/" || before[filepath.Dir(g)]) && !populated(filepath.Join(cgroupMount, g)) && len(tree(filepath.Join(cgroupMount, g))) == 0 {
			continue
		}
		left = append(left, describeGroup(filepath.Join(cgroupMount, g), g))
		if filepath.Dir(g) == "/" || before[filepath.Dir(g)] {
			p := filepath.Join(cgroupMount, g)
			_ = writeFile(filepath.Join(p, "cgroup.kill"), "1")
			for i := 0; i < 100 && populated(p); i++ {
				time.Sleep(50 * time.Millisecond)
			}
			removeTree(p)
		}
	}
	sort.Strings(left)
	return left
}

// leftInside names what the service's group holds below itself beyond
// empty leaves (a service may move itself into a leaf of its own): groups
// with processes, or sub-groups with sub-groups.
func leftInside(root string) []string {
	var left []string
	if populated(root) {
		if procs := readProcs(root); procs != "" {
			left = append(left, "processes in the service's own group: "+procs)
		}
	}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(root, e.Name())
		sub := tree(p)
		if len(sub) > 0 || populated(p) {
			left = append(left, describeGroup(p, "/"+e.Name()))
			for g := range sub {
				left = append(left, describeGroup(filepath.Join(p, g), "/"+e.Name()+g))
			}
		}
	}
	sort.Strings(left)
	return left
}

func describeGroup(p, name string) string {
	if procs := readProcs(p); procs != "" {
		return name + " (processes " + procs + ")"
	}
	return name
}

func readProcs(p string) string {
	b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
	return strings.Join(strings.Fields(string(b)), ",")
}

func populated(p string) bool {
	b, err := os.ReadFile(filepath.Join(p, "cgroup.events"))
	return err == nil && bytes.Contains(b, []byte("populated 1"))
}

// removeTree removes a group and its sub-groups, deepest first.
func removeTree(root string) {
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		_ = syscall.Rmdir(d)
	}
}

var result = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+)`)

// scan copies a test binary's -test.v output to w and collects the
// top-level tests' outcomes and the benchmarks' result lines; a skipped
// test is named with its reason (the test's last logged line, which go
// test prints before "--- SKIP").
func scan(r io.Reader, w io.Writer) (passed, failed, skipped, bench []string) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	var logged string
	for s.Scan() {
		line := s.Text()
		fmt.Fprintln(w, line)
		switch {
		case strings.HasPrefix(line, "=== RUN"):
			logged = ""
			continue
		case strings.HasPrefix(line, "    ") && !strings.HasPrefix(line, "    ---"):
			logged = strings.TrimSpace(line)
			continue
		case strings.HasPrefix(line, "Benchmark") && strings.Contains(line, "\t"):
			bench = append(bench, strings.Join(strings.Fields(line), " "))
			continue
		}
		m := result.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		switch m[1] {
		case "PASS":
			passed = append(passed, m[2])
		case "FAIL":
			failed = append(failed, m[2])
		case "SKIP":
			if logged != "" {
				m[2] += ": " + logged
			}
			skipped = append(skipped, m[2])
		}
	}
	_, _ = io.Copy(w, r)
	return passed, failed, skipped, bench
}

func writeFile(p, s string) error {
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		return fmt.Errorf("unable to write %q to %s: %w", s, p, err)
	}
	return nil
}

func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
