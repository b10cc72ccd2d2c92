package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// A process is named by its pid and its start time: pids are reused, so a
// pid alone could name a newcomer once the process it meant is gone. The
// start time (field 22 of /proc/<pid>/stat, in clock ticks since boot)
// differs between any two processes that ever held the same pid.
type proc struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// errGone means the process does not exist (any more), or is a zombie.
var errGone = errors.New("process is gone")

// procOf returns the process pid as it is now.
func procOf(pid int) (proc, error) {
	st, err := readStat(pid)
	if err != nil {
		return proc{}, err
	}
	return proc{Pid: pid, Start: st.start}, nil
}

// alive reports whether p still runs: its pid exists, is not a zombie and
// started when p did.
func (p proc) alive() bool {
	if p.Pid <= 0 {
		return false
	}
	st, err := readStat(p.Pid)
	return err == nil && st.start == p.Start
}

type stat struct {
	state byte
	ppid  int
	start uint64
}

// readStat parses /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so the fields are
// counted from the last ')'.
func readStat(pid int) (stat, error) {
	if pid <= 0 {
		return stat{}, fmt.Errorf("process %d: %w", pid, errGone)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return stat{}, fmt.Errorf("process %d: %w", pid, errGone)
		}
		return stat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("unable to parse /proc/%d/stat", pid)
	}
	// After ") ": state(3) ppid(4) pgrp(5) ... starttime(22).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return stat{}, fmt.Errorf("unable to parse /proc/%d/stat", pid)
	}
	st := stat{state: f[0][0]}
	st.ppid, _ = strconv.Atoi(f[1])
	if st.start, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return stat{}, fmt.Errorf("unable to parse /proc/%d/stat: %w", pid, err)
	}
	if st.state == 'Z' || st.state == 'X' {
		return st, fmt.Errorf("process %d: %w", pid, errGone)
	}
	return st, nil
}

// hostRoot reports whether process pid has uid 0 and lives in the
// observer's own pid namespace: root of the host, not of a container. (A
// container's root has uid 0 too, without a user namespace, but its own pid
// namespace.) uid is as the kernel gave it for the peer of a socket, or -1
// to read the effective uid from /proc.
func hostRoot(pid, uid int) bool {
	if uid < 0 {
		var err error
		if uid, err = procUID(pid); err != nil {
			return false
		}
	}
	if uid != 0 {
		return false
	}
	theirs, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	if err != nil {
		return false
	}
	ours, err := os.Readlink("/proc/self/ns/pid")
	return err == nil && theirs == ours
}

// procUID returns the effective uid of process pid.
func procUID(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				return strconv.Atoi(f[1])
			}
		}
	}
	return -1, fmt.Errorf("no Uid line in /proc/%d/status", pid)
}
