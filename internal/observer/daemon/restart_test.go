package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
)

// startDaemon starts a daemon as a process of its own (the test binary in
// runTestDaemon), so that the test can kill -9 it, and waits until it
// serves.
func startDaemon(t *testing.T, socket, state, sweep string) *testenv.Helper {
	t.Helper()
	d := testenv.StartHelper(t, daemonHelper, socket+","+state+","+sweep, nil)
	if line := d.Line(); line != "ready" {
		t.Fatalf("the daemon said %q", line)
	}
	return d
}

// TestRestart kills the daemon with SIGKILL while it has sessions, starts
// a new one on the same state folder, and checks: a live session is
// adopted (its stats answer to its old secret), a time limit set before the
// crash still kills (one that passed while no daemon ran, at once), a
// session that finished meanwhile (creator gone, empty) is closed and its
// cgroup removed with its stats kept, and a session cgroup no record knows
// is killed and removed. Then a clean stop (SIGTERM) and another start keep
// the live session.
func TestRestart(t *testing.T) {
	h := requireHost(t)
	e := newEnv(t, h, Options{})
	state := t.TempDir()
	socket := filepath.Join(t.TempDir(), "socket")
	d1 := startDaemon(t, socket, state, e.root)

	live, slow, quick, gone := e.caller(), e.caller(), e.caller(), e.caller()
	a := live.wire(socket, "attach", "{}")
	wantOK(t, "attach", a)
	liveID, liveSecret := a.str("session_id"), a.str("secret")

	a = slow.wire(socket, "attach", "{}")
	slowID, slowSecret := a.str("session_id"), a.str("secret")
	wantOK(t, "limits", slow.wire(socket, "limits", pyDumps(kv{"limits", []kv{{"time", 2.5}}}, kv{"session_id", slowID}, kv{"secret", slowSecret})))
	slowDeadline := time.Now().Add(2500 * time.Millisecond)

	a = quick.wire(socket, "attach", "{}")
	quickID, quickSecret := a.str("session_id"), a.str("secret")
	wantOK(t, "limits", quick.wire(socket, "limits", pyDumps(kv{"limits", []kv{{"time", 1.0}}}, kv{"session_id", quickID}, kv{"secret", quickSecret})))
	quickDeadline := time.Now().Add(time.Second)

	a = gone.wire(socket, "open", "{}")
	goneID, goneSecret := a.str("session_id"), a.str("secret")
	gonePath := filepath.Join(e.callers, groupPrefix+goneID)

	// A session cgroup that no record knows, with a process in it.
	unknown := filepath.Join(e.callers, groupPrefix+newID())
	if _, err := h.Create(unknown, nil); err != nil {
		t.Fatal(err)
	}
	stray := e.startHelper(unknown)

	d1.Kill()
	gone.send("exit")
	gone.Wait()
	slow.send("spinforever")
	quick.send("spinforever")
	// The quick one's deadline passes while no daemon runs: the wait is the
	// test (the deadline is the wall clock's, kept in the state folder, and
	// the daemon is another process, out of a fake clock's reach).
	time.Sleep(time.Until(quickDeadline) + 200*time.Millisecond)
	if _, err := os.Stat("/proc/" + itoa(quick.pid)); err != nil {
		t.Fatalf("the quick session's process died while no daemon ran: %v", err)
	}

	d2 := startDaemon(t, socket, state, e.root)
	restarted := time.Now()
	if status := quick.Wait(); status.Signal() != syscall.SIGKILL {
		t.Errorf("the session whose time passed while no daemon ran: %v, want SIGKILL", status)
	} else {
		t.Logf("killed %v after the restart", time.Since(restarted))
	}
	if status := stray.Wait(); status.Signal() != syscall.SIGKILL {
		t.Errorf("the process of an unknown session cgroup: %v, want SIGKILL", status)
	}
	if _, err := h.Load(unknown); !errors.Is(err, cgroup.ErrNotExist) {
		t.Errorf("the unknown session cgroup is still there (%v)", err)
	}
	if _, err := h.Load(gonePath); !errors.Is(err, cgroup.ErrNotExist) {
		t.Errorf("the finished session's cgroup is still there (%v)", err)
	}
	wantStats(t, "stats of the finished session", live.wire(socket, "stats", pyDumps(ids(goneID, goneSecret)...)))
	wantStats(t, "stats of the live session", live.wire(socket, "stats", pyDumps(ids(liveID, liveSecret)...)))
	if a := live.wire(socket, "stats", pyDumps(ids(liveID, "wrong")...)); a.status != 403 {
		t.Errorf("a wrong secret after the restart: %d", a.status)
	}
	status := slow.Wait()
	late := time.Since(slowDeadline)
	t.Logf("the time limit set before the crash killed %v after its deadline", late)
	if status.Signal() != syscall.SIGKILL || late < -100*time.Millisecond || late > time.Second {
		t.Errorf("the slow session ended with %v %v after its deadline", status, late)
	}

	// A clean stop keeps the live session for the next start.
	if err := d2.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if status := d2.Wait(); status.Signaled() || status.ExitStatus() != 0 {
		t.Errorf("the daemon's clean stop: %v", status)
	}
	if _, err := os.Stat(socket); !os.IsNotExist(err) {
		t.Errorf("the socket is left after a clean stop (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(state, liveID+".json")); err != nil {
		t.Errorf("the live session's record: %v", err)
	}
	startDaemon(t, socket, state, e.root)
	// The slow session lost its only process (also its creator) to the
	// time limit, so it was abandoned and closed; its stats stay.
	if a := live.wire(socket, "GET", ""); string(a.fields["sessions"]) != "1" {
		t.Errorf("sessions after the third start = %s, want 1 (the live one)", a.fields["sessions"])
	}
	wantStats(t, "stats of the slow session", live.wire(socket, "stats", pyDumps(ids(slowID, slowSecret)...)))
	wantStats(t, "close the live session", live.wire(socket, "close", pyDumps(ids(liveID, liveSecret)...)))
}

// TestStateFolderWrites: the records are written whole through atomicfile,
// which leaves no temporary behind; one that a crash left (a hidden
// ".<name>.*.tmp") is removed when the next registry starts on the folder.
func TestStateFolderWrites(t *testing.T) {
	h := requireHost(t)
	state := t.TempDir()
	cut := filepath.Join(state, "."+newID()+".json.12345.tmp")
	if err := os.WriteFile(cut, []byte(`{"version": 1, "id": "`), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, h, Options{StateDir: state})
	if _, err := os.Stat(cut); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a cut-short write survived the start: %v", err)
	}
	p := e.caller()
	s, err := e.r.AttachNew(p.pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.r.SetLimits(p.pid, s.ID, s.Secret, spec.Limits{Pids: i64(50)}); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		entries, err := os.ReadDir(state)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range entries {
			out = append(out, d.Name())
		}
		return out
	}
	if got := names(); len(got) != 1 || got[0] != s.ID+".json" {
		t.Errorf("the state folder holds %v, want %s.json only", got, s.ID)
	}
	rec, err := readRecord(filepath.Join(state, s.ID+".json"))
	if err != nil || rec.Limits.Pids == nil || *rec.Limits.Pids != 50 {
		t.Errorf("the record after a limits call: %+v, %v", rec, err)
	}
	if _, err := e.r.Close(p.pid, s.ID, s.Secret); err != nil {
		t.Fatal(err)
	}
	if rec, err := readRecord(filepath.Join(state, s.ID+".json")); err != nil || rec.Closed == nil || rec.Stats == nil {
		t.Errorf("the record after the close: %+v, %v", rec, err)
	}
}
