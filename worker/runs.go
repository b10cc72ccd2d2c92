package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/flock"
)

// The run registry: one file per run in <state>/runs/, locked (flock) by
// the worker process for as long as the run lasts. The kernel drops the
// lock when that process dies however it dies, so at any later time "the
// lock can be taken" means "the run's owner is gone", and whatever the run
// left (cgroups, mounts, container state, scratch) may be swept.

// scratchPrefix starts every scratch folder's name.
const scratchPrefix = "kolejka-run-"

// stagePrefix starts the name of the result folder a run writes beside the
// user's (".kolejka-result-<run id>"), renamed into place when complete.
const stagePrefix = ".kolejka-result-"

type runRecord struct {
	Scratch string `json:"scratch"`
	Stage   string `json:"stage,omitempty"`
	Pid     int    `json:"pid"`
}

// runLock is a live run's registry entry.
type runLock struct {
	path string
	f    *os.File
}

func newRunID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

func (w *Worker) runsDir() string { return filepath.Join(w.cfg.StateDir, "runs") }

// register records a run and takes its lock. The entry is made under a
// temporary name, locked, then renamed into place: a sweep in another
// process must never see a run's entry unlocked, or it would take the live
// run for a dead one and tear it down.
func (w *Worker) register(runID, scratch, stage string) (*runLock, error) {
	if err := os.MkdirAll(w.runsDir(), 0o700); err != nil {
		return nil, fmt.Errorf("unable to create the run registry: %w", err)
	}
	p := filepath.Join(w.runsDir(), runID)
	tmp := filepath.Join(w.runsDir(), tmpPrefix+runID)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("unable to register run %s: %w", runID, err)
	}
	fail := func(err error) (*runLock, error) {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("unable to register run %s: %w", runID, err)
	}
	if err := flock.TryExclusive(f); err != nil {
		return fail(err)
	}
	rec, _ := json.Marshal(runRecord{Scratch: scratch, Stage: stage, Pid: os.Getpid()})
	if _, err := f.Write(rec); err != nil {
		return fail(err)
	}
	// A new name for a new file, not a replacement; not synced, which
	// keeps an fsync off every task's start.
	if err := os.Rename(tmp, p); err != nil {
		return fail(err)
	}
	return &runLock{path: p, f: f}, nil
}

// tmpPrefix names registry entries being made; sweeps leave them alone
// while they are young (see register).
const tmpPrefix = ".new-"

func (l *runLock) release() {
	os.Remove(l.path)
	l.f.Close()
}

// alive reports whether runID belongs to a live worker process (this one
// or another). A run without a registry entry is not alive.
func (w *Worker) alive(runID string) bool {
	f, err := os.Open(filepath.Join(w.runsDir(), runID))
	if err != nil {
		return false
	}
	defer f.Close()
	return flock.TryShared(f) != nil // held by its owner
}

// Sweep removes everything that runs of dead workers left behind: their
// processes and cgroups, their runtime's containers, their mounts and
// scratch folders, and their registry entries. New calls it; a long-lived
// foreman may call it again.
func (w *Worker) Sweep(ctx context.Context) error {
	var errs []error
	// Registered runs whose owner is gone.
	entries, _ := os.ReadDir(w.runsDir())
	for _, e := range entries {
		runID := e.Name()
		if strings.HasPrefix(runID, tmpPrefix) {
			// Being registered right now, or left by a crash in the
			// instant between create and rename: only the latter, old, goes.
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Minute {
				os.Remove(filepath.Join(w.runsDir(), runID))
			}
			continue
		}
		p := filepath.Join(w.runsDir(), runID)
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if err := flock.TryExclusive(f); err != nil {
			f.Close()
			continue // alive
		}
		var rec runRecord
		data, _ := os.ReadFile(p)
		_ = json.Unmarshal(data, &rec)
		w.cfg.Logger.Info("sweeping leftovers of a dead run", "run", runID, "scratch", rec.Scratch)
		if err := w.sweepCgroup(runID); err != nil {
			errs = append(errs, err)
		}
		if rec.Scratch != "" {
			if err := removeScratch(rec.Scratch); err != nil {
				errs = append(errs, err)
			}
		}
		if rec.Stage != "" {
			if err := removeStage(rec.Stage, runID); err != nil {
				errs = append(errs, err)
			}
		}
		os.Remove(p)
		f.Close()
	}
	// The runtime's containers of dead runs.
	if err := w.rt.Sweep(ctx, w.alive); err != nil {
		errs = append(errs, err)
	}
	// cgroups without a live run (their registry entry may never have been
	// written, or was removed by hand).
	if children, err := w.cg.Children(w.cfg.CgroupRoot); err == nil {
		for _, c := range children {
			runID := filepath.Base(c)
			if !w.alive(runID) {
				if err := w.sweepCgroup(runID); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	// Scratch folders in our temp folder without a live run.
	if matches, err := filepath.Glob(filepath.Join(w.cfg.Temp, scratchPrefix+"*")); err == nil {
		for _, m := range matches {
			runID := strings.TrimPrefix(filepath.Base(m), scratchPrefix)
			if !w.alive(runID) {
				if err := removeScratch(m); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func (w *Worker) sweepCgroup(runID string) error {
	g, err := w.cg.Load(w.cfg.CgroupRoot + "/" + runID)
	if err != nil {
		if errors.Is(err, cgroup.ErrNotExist) {
			return nil
		}
		return err
	}
	return g.Delete()
}

// removeStage removes the unfinished result folder of a dead run, beside
// the user's result folder, where no other sweep looks. Only a folder of
// exactly the run's stage name, and never through a symlink: the user owns
// everything around it. A run that got as far as publishing renamed its
// stage to the user's result folder, which is then the user's and stays.
func removeStage(stage, runID string) error {
	if filepath.Base(stage) != stagePrefix+runID {
		return fmt.Errorf("run %s: its record names %s as its result folder, not one of ours: left alone", runID, stage)
	}
	fi, err := os.Lstat(stage)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // published, or never made
	case err != nil:
		return fmt.Errorf("unable to remove %s: %w", stage, err)
	case !fi.IsDir():
		return fmt.Errorf("run %s: %s is not a folder of ours: left alone", runID, stage)
	}
	if err := os.RemoveAll(stage); err != nil {
		return fmt.Errorf("unable to remove %s: %w", stage, err)
	}
	return nil
}

// removeScratch unmounts whatever is mounted below dir (deepest first; lazily,
// so a busy mount cannot stop the sweep) and removes it.
func removeScratch(dir string) error {
	if err := unmountBelow(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unable to remove %s: %w", dir, err)
	}
	return nil
}

func unmountBelow(dir string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return fmt.Errorf("unable to list mounts below %s: %w", dir, err)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	for _, m := range mounts {
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			return fmt.Errorf("unable to unmount %s: %w", m.Mountpoint, err)
		}
	}
	return nil
}
