package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
)

// Parent folders the observer made. On v1 a session goes at its caller's
// memory path in every hierarchy (see create); where the caller's paths
// differ between hierarchies (a host process under systemd's v1 layout,
// whose user slices exist in some controllers only) that path's ancestors
// do not exist in the others, and making the session makes them. They are
// the observer's to remove, once nothing uses them:
//
//  1. Before the session's cgroup is made, the folders it will make for the
//     ancestors (cgroup.Hierarchy.MissingParents) are recorded, in memory
//     and in the state folder, so that an observer that crashes right after
//     still knows them.
//  2. After a session's cgroup is removed, and on every pass of the reaper,
//     those of them that are empty are removed (rmdir only: a folder that
//     holds a process or a group stays, the kernel refuses with EBUSY) and
//     forgotten. A detached caller lives in such a folder (it returns to its
//     memory path in every hierarchy), so it goes when that caller has
//     exited.
//  3. A restarted observer reads the record back and goes on.
//
// Adopt does not record: the adopter (the worker) makes and removes its own
// tree, and removing its folders under it would race with its own mkdirs.

// madeFile is the record's name in the state folder; not <id>.json, so
// restore does not take it for a session.
const madeFile = "made-parents"

type madeRecord struct {
	Version int      `json:"version"`
	Folders []string `json:"folders"`
}

// noteMade records folders that making a session is about to create. r.tree
// is held, so the reaper cannot remove them in between. A failure to write
// the record is logged: the session works on, and only a crash before the
// folders go could leave them.
func (r *Registry) noteMade(dirs []string) {
	if len(dirs) == 0 {
		return
	}
	r.mu.Lock()
	for _, d := range dirs {
		r.made[d] = true
	}
	r.mu.Unlock()
	r.log.Info("making parent folders for a session", "folders", dirs)
	r.persistMade()
}

// pruneMade removes the recorded parent folders that are empty now.
func (r *Registry) pruneMade() {
	r.mu.Lock()
	n := len(r.made)
	r.mu.Unlock()
	if n == 0 {
		return
	}
	r.tree.Lock()
	r.mu.Lock()
	dirs := make([]string, 0, len(r.made))
	for d := range r.made {
		dirs = append(dirs, d)
	}
	r.mu.Unlock()
	left := r.cg.RemoveEmpty(dirs)
	r.mu.Lock()
	for _, d := range dirs {
		if !slices.Contains(left, d) {
			delete(r.made, d)
		}
	}
	r.mu.Unlock()
	r.tree.Unlock()
	if len(left) < len(dirs) {
		r.log.Info("removed parent folders made for sessions", "removed", len(dirs)-len(left), "in_use", len(left))
		r.persistMade()
	}
}

// persistMade rewrites the record of the made folders (removes it when
// there are none).
func (r *Registry) persistMade() {
	if r.store == nil {
		return
	}
	r.store.mu.Lock()
	defer r.store.mu.Unlock()
	r.mu.Lock()
	rec := madeRecord{Version: recordVersion, Folders: make([]string, 0, len(r.made))}
	for d := range r.made {
		rec.Folders = append(rec.Folders, d)
	}
	r.mu.Unlock()
	slices.Sort(rec.Folders)
	file := filepath.Join(r.store.dir, madeFile)
	if len(rec.Folders) == 0 {
		if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("removing the record of made parent folders failed", "error", err)
		}
		return
	}
	b, err := json.Marshal(rec)
	if err == nil {
		err = atomicfile.WriteFile(file, b, 0o600)
	}
	if err != nil {
		r.log.Warn("recording made parent folders failed", "error", err)
	}
}

// restoreMade reads the record back after a restart. Folders outside the
// hierarchy are ignored later by RemoveEmpty, so a damaged record can at
// worst leave folders, never remove foreign ones.
func (r *Registry) restoreMade() error {
	b, err := os.ReadFile(filepath.Join(r.store.dir, madeFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unable to read the record of made parent folders: %w", err)
	}
	var rec madeRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.Version != recordVersion {
		r.log.Warn("unreadable record of made parent folders left alone", "file", madeFile, "error", err)
		return nil
	}
	for _, d := range rec.Folders {
		r.made[d] = true
	}
	return nil
}
