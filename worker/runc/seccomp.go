package runc

import (
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// taskSeccomp is the system-call filter of task containers: everything is
// allowed but what lets a process reach kernel surface a task never needs
// and attacks use — new namespaces (above all user namespaces, which hand an
// unprivileged process every capability over new objects), mounts, keyrings,
// BPF, perf, userfaultfd, module and kexec loading, clock setting — which
// fail with EPERM, much as Docker's default profile does. Dropped
// capabilities already refuse most of it; the filter closes what needs no
// capability at all (unshare of a user namespace, the new mount API inside
// one, keyctl, bpf...).
//
// The rules cover the 32-bit and x32 entry points too (seccompArches).
// ptrace stays allowed: kolejka-init stops the task with it, and judges
// trace their own children.
func taskSeccomp() *specs.LinuxSeccomp {
	eperm := uint(unix.EPERM)
	deny := func(names ...string) specs.LinuxSyscall {
		return specs.LinuxSyscall{Names: names, Action: specs.ActErrno, ErrnoRet: &eperm}
	}
	newNS := uint64(unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWNET | unix.CLONE_NEWPID |
		unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME)
	var syscalls []specs.LinuxSyscall
	syscalls = append(syscalls,
		deny("unshare", "setns",
			"mount", "umount", "umount2", "pivot_root", "chroot",
			"open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
			"keyctl", "add_key", "request_key",
			"bpf", "perf_event_open", "userfaultfd",
			"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
			"reboot", "swapon", "swapoff", "acct", "iopl", "ioperm",
			"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
			"open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "quotactl", "nfsservctl",
			"syslog", "vhangup", "uselib", "fanotify_init"),
	)
	// clone with any new-namespace flag. (arg & mask) != 0 is not one
	// comparison seccomp can make, so each flag gets a rule.
	for bit := uint64(1); bit != 0 && bit <= newNS; bit <<= 1 {
		if newNS&bit == 0 {
			continue
		}
		syscalls = append(syscalls, specs.LinuxSyscall{Names: []string{"clone"}, Action: specs.ActErrno, ErrnoRet: &eperm,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: bit, ValueTwo: bit, Op: specs.OpMaskedEqual}}})
	}
	// clone3 passes its flags in memory, which seccomp cannot read: ENOSYS
	// makes the C library fall back to clone, which the rules above see.
	enosys := uint(unix.ENOSYS)
	syscalls = append(syscalls, specs.LinuxSyscall{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys})
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: seccompArches[runtime.GOARCH],
		Syscalls:      syscalls,
	}
}

// seccompArches are, per native architecture, every system-call entry
// point its kernel offers (as Docker's profile lists them). A system call
// through an entry point the filter does not name gets libseccomp's
// bad-architecture action, which kills the thread: a -m32 solution would
// die at its first call instead of running under the same rules.
var seccompArches = map[string][]specs.Arch{
	"amd64": {specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
	"386":   {specs.ArchX86},
	"arm64": {specs.ArchAARCH64, specs.ArchARM},
	"arm":   {specs.ArchARM},
}
