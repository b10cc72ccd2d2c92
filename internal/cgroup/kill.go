package cgroup

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"time"
)

const (
	// killTimeout bounds Kill: how long processes may take to die.
	killTimeout = 10 * time.Second
	// killFreezeTimeout bounds each freeze attempt of a Kill round; a group
	// that does not freeze in time is killed unfrozen.
	killFreezeTimeout = time.Second
	// killPollMax caps the wait between looks at a dying group: killed
	// processes are gone within milliseconds, and a time limit's lateness
	// is the kill's.
	killPollMax = time.Millisecond
)

// Kill sends SIGKILL to every process in the group and its sub-groups, and
// returns once none is left, or with an error naming the survivors after
// 10 s (processes in uninterruptible sleep, say in a hung NFS read, die only
// when it ends). The group itself stays; it is empty afterwards.
//
// On v2 since Linux 5.14, writing 1 to cgroup.kill makes the kernel kill
// the whole sub-tree at once, including processes forked meanwhile: a fork
// bomb cannot outrun it. Elsewhere (v1, older v2) Kill repeats rounds of:
// list and SIGKILL every process, then list again; if a process appeared in
// between (something is forking), freeze the group, so nothing inside can
// fork, list and SIGKILL again, and thaw, so the signals take effect
// (frozen tasks die only once thawed). Signalling before any freeze matters
// for time limits: a process with SIGKILL pending never returns to user
// space, so what is listed stops at once, instead of having to be scheduled
// twice (once to freeze, once to die), and a group of dying processes does
// not freeze until they are gone, which on a busy host costs tens of
// milliseconds. One round normally suffices; more are needed when the group
// does not freeze and new processes slip in between the listing and the
// signals.
func (g *Group) Kill() error {
	if err := g.refuseRoot("kill"); err != nil {
		return err
	}
	deadline := time.Now().Add(killTimeout)
	if g.v2 != nil {
		dir := filepath.Join(g.h.mount, g.path)
		kill := filepath.Join(dir, "cgroup.kill")
		if exists(kill) {
			if err := writeFile(kill, "1"); err != nil {
				if isMissing(err) {
					return nil // the group went away
				}
				return fmt.Errorf("unable to kill cgroup %s: %w", g.path, err)
			}
			return g.waitEmpty(dir, deadline)
		}
	}
	delay := 100 * time.Microsecond
	for {
		pids, err := g.Procs(true)
		if err != nil {
			return fmt.Errorf("unable to kill cgroup %s: %w", g.path, err)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("unable to kill cgroup %s: processes %v still alive after %v", g.path, pids, killTimeout)
		}
		if err := g.signalAll(pids); err != nil {
			return err
		}
		after, err := g.Procs(true)
		if err != nil {
			return fmt.Errorf("unable to kill cgroup %s: %w", g.path, err)
		}
		if appeared(pids, after) && g.freeze(true, killFreezeTimeout) == nil {
			// List again: what forked before the freeze completed.
			if pids, err = g.Procs(true); err != nil {
				_ = g.freeze(false, killFreezeTimeout)
				return fmt.Errorf("unable to kill cgroup %s: %w", g.path, err)
			}
			if err := g.signalAll(pids); err != nil {
				_ = g.freeze(false, killFreezeTimeout)
				return err
			}
			if err := g.freeze(false, killFreezeTimeout); err != nil {
				return fmt.Errorf("unable to kill cgroup %s: %w", g.path, err)
			}
		} else if err := g.signalAll(after); err != nil {
			return err
		}
		time.Sleep(delay)
		delay = min(2*delay, killPollMax)
	}
}

// appeared reports whether after (sorted) holds a pid that before (sorted)
// does not.
func appeared(before, after []int) bool {
	i := 0
	for _, pid := range after {
		for i < len(before) && before[i] < pid {
			i++
		}
		if i == len(before) || before[i] != pid {
			return true
		}
	}
	return false
}

// signalAll sends SIGKILL to pids.
func (g *Group) signalAll(pids []int) error {
	for _, pid := range pids {
		// ESRCH: it died meanwhile, which is the point.
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("unable to kill process %d of cgroup %s: %w", pid, g.path, err)
		}
	}
	return nil
}

// waitEmpty waits until the v2 group dir holds no process, in it or below:
// cgroup.events says "populated 0".
func (g *Group) waitEmpty(dir string, deadline time.Time) error {
	events := filepath.Join(dir, "cgroup.events")
	delay := 100 * time.Microsecond
	for {
		ev, err := readKeyed(events)
		if isMissing(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unable to kill cgroup %s: %w", g.path, err)
		}
		if ev["populated"] == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			pids, _ := g.Procs(true)
			return fmt.Errorf("unable to kill cgroup %s: processes %v still alive after %v", g.path, pids, killTimeout)
		}
		time.Sleep(delay)
		delay = min(2*delay, killPollMax)
	}
}
