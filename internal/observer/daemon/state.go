package daemon

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/spec"
)

// The state folder holds one JSON file per session, <id>.json, rewritten
// whole on every change (atomicfile: a reader, or a restarted observer,
// sees the old record or the new one, never a torn one). Records are
// written before the cgroup is made and removed after it is gone, so after
// a crash every session cgroup is either recorded or swept. The folder
// belongs on /run (a tmpfs, where atomicfile's fsyncs cost nothing), whose
// files, like cgroups, survive the observer but not a reboot.
//
// A restarted observer (restore) adopts each open session whose cgroup
// still exists, re-arming its time limit (one that passed meanwhile kills
// it at once), and closes at once those that finished while it was away
// (creator gone, no process); a record whose cgroup is gone is dropped.
// Closed sessions come back with their final stats until KeepClosed.

// recordVersion is the layout of the records; a reader refuses others.
const recordVersion = 1

type record struct {
	Version      int         `json:"version"`
	ID           string      `json:"id"`
	SecretSHA256 string      `json:"secret_sha256"`
	Path         string      `json:"path"`
	Scope        string      `json:"scope"`
	Adopted      bool        `json:"adopted,omitempty"`
	Creator      proc        `json:"creator"`
	Limits       spec.Limits `json:"limits"`
	Cores        []int       `json:"cores,omitempty"`
	Created      time.Time   `json:"created"`
	Started      *time.Time  `json:"started,omitempty"`
	LimitsAt     *time.Time  `json:"limits_at,omitempty"`
	Expired      bool        `json:"expired,omitempty"`
	Closed       *time.Time  `json:"closed,omitempty"`
	Stats        *spec.Stats `json:"stats,omitempty"`
}

type store struct {
	dir string
	// mu orders writes: a record is snapshot and written under it, so an
	// older snapshot never overwrites a newer one. Taken before
	// Registry.mu, never inside it.
	mu sync.Mutex
}

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("unable to make the state folder: %w", err)
	}
	// Records hold no secret, only hashes, but nothing outside the
	// observer has business with them.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("unable to secure the state folder: %w", err)
	}
	return &store{dir: dir}, nil
}

func (st *store) file(id string) string { return filepath.Join(st.dir, id+".json") }

// write stores rec atomically.
func (st *store) write(rec *record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(st.file(rec.ID), b, 0o600)
}

// record starts the record of a session, open or closed, with what
// identifies it and who may act on it.
func (i *ident) record() *record {
	return &record{
		Version:      recordVersion,
		ID:           i.id,
		SecretSHA256: hex.EncodeToString(i.hash[:]),
		Path:         i.path,
		Scope:        i.scope,
		Adopted:      i.adopted,
		Creator:      i.creator,
	}
}

// snapshot makes the record of a session (Registry.mu held).
func snapshot(s *session) *record {
	rec := s.record()
	rec.Limits = s.limits.Clone()
	rec.Cores = append([]int(nil), s.cores...)
	rec.Created = s.created
	rec.Expired = s.expired
	if !s.started.IsZero() {
		t := s.started
		rec.Started = &t
	}
	if !s.limitsAt.IsZero() {
		t := s.limitsAt
		rec.LimitsAt = &t
	}
	return rec
}

// save records a session that is being made; its failure refuses the
// session (nothing accepted may be lost).
func (r *Registry) save(s *session) error {
	if r.store == nil {
		return nil
	}
	r.store.mu.Lock()
	defer r.store.mu.Unlock()
	r.mu.Lock()
	rec := snapshot(s)
	r.mu.Unlock()
	if err := r.store.write(rec); err != nil {
		return fmt.Errorf("unable to record the session in %s: %w", r.store.dir, err)
	}
	return nil
}

// persist rewrites the record of an open session after a change. A failure
// is logged: the session works on, and the previous record still adopts it.
func (r *Registry) persist(s *session) {
	if r.store == nil {
		return
	}
	r.store.mu.Lock()
	defer r.store.mu.Unlock()
	r.mu.Lock()
	if r.live[s.id] != s {
		r.mu.Unlock()
		return // closed meanwhile: its closed record stands
	}
	rec := snapshot(s)
	r.mu.Unlock()
	if err := r.store.write(rec); err != nil {
		r.log.Warn("recording a session failed", "session", s.id, "error", err)
	}
}

// persistClosed records a closed session's final stats.
func (r *Registry) persistClosed(c *closedSession) {
	if r.store == nil {
		return
	}
	closed := c.closedAt
	stats := c.stats
	rec := c.record()
	rec.Closed = &closed
	rec.Stats = &stats
	r.store.mu.Lock()
	defer r.store.mu.Unlock()
	r.mu.Lock()
	kept := r.closed.kept(c.id) != nil
	r.mu.Unlock()
	if !kept {
		return // forgotten meanwhile
	}
	if err := r.store.write(rec); err != nil {
		r.log.Warn("recording a closed session failed", "session", c.id, "error", err)
	}
}

// forget removes a session's record.
func (r *Registry) forget(id string) {
	if r.store == nil {
		return
	}
	r.store.mu.Lock()
	defer r.store.mu.Unlock()
	if err := os.Remove(r.store.file(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Warn("removing a session record failed", "session", id, "error", err)
	}
}

// restore adopts the sessions recorded in the state folder (see above).
func (r *Registry) restore() error {
	entries, err := os.ReadDir(r.store.dir)
	if err != nil {
		return fmt.Errorf("unable to read the state folder: %w", err)
	}
	now := r.now()
	var adopted []*session
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".tmp") {
			os.Remove(filepath.Join(r.store.dir, name)) // a write cut short (atomicfile's temporary)
			continue
		}
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		file := filepath.Join(r.store.dir, name)
		rec, err := readRecord(file)
		if err != nil {
			// Left in place for a person to look at; its cgroup, if any,
			// is swept as unknown.
			r.log.Warn("unreadable session record left alone", "file", file, "error", err)
			continue
		}
		id := ident{id: rec.ID, path: rec.Path, scope: rec.Scope, adopted: rec.Adopted, creator: rec.Creator}
		hash, _ := hex.DecodeString(rec.SecretSHA256)
		copy(id.hash[:], hash)
		if rec.Closed != nil {
			if r.closed.outdated(*rec.Closed, now) {
				r.forget(rec.ID)
				continue
			}
			st := spec.Stats{}
			if rec.Stats != nil {
				st = *rec.Stats
			}
			r.closed.byID[rec.ID] = &closedSession{ident: id, stats: st, closedAt: *rec.Closed}
			continue
		}
		g, err := r.cg.Load(rec.Path)
		if errors.Is(err, cgroup.ErrNotExist) {
			r.log.Warn("session's cgroup is gone; dropping its record", "session", rec.ID, "path", rec.Path)
			r.forget(rec.ID)
			continue
		}
		if err != nil {
			r.log.Warn("unable to adopt a recorded session", "session", rec.ID, "error", err)
			continue
		}
		s := &session{ident: id, group: g, limits: rec.Limits, cores: rec.Cores, created: rec.Created, expired: rec.Expired}
		if rec.Started != nil {
			s.started = *rec.Started
		}
		if rec.LimitsAt != nil {
			s.limitsAt = *rec.LimitsAt
		}
		r.live[s.id] = s
		r.byPath[s.path] = s
		adopted = append(adopted, s)
	}
	// Finished while nobody watched: close them now, outermost first.
	sortByDepth(adopted)
	for _, s := range adopted {
		r.mu.Lock()
		gone := s.closing
		r.mu.Unlock()
		if gone {
			continue
		}
		if r.abandoned(s) {
			s.op.Lock()
			_, _ = r.closeSession(s, "finished while the observer was away")
			s.op.Unlock()
			continue
		}
		r.mu.Lock()
		if !s.expired {
			r.armLocked(s)
		}
		r.mu.Unlock()
		r.log.Info("session adopted after a restart", "session", s.id, "path", s.path)
	}
	return nil
}

func readRecord(file string) (*record, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, err
	}
	if rec.Version != recordVersion {
		return nil, fmt.Errorf("record version %d, want %d", rec.Version, recordVersion)
	}
	if !isSessionID(rec.ID) || filepath.Base(file) != rec.ID+".json" {
		return nil, fmt.Errorf("bad session id %q", rec.ID)
	}
	if len(rec.SecretSHA256) != 64 || rec.Path == "" || rec.Path[0] != '/' || rec.Path == "/" {
		return nil, errors.New("incomplete record")
	}
	return &rec, nil
}

// isSessionID reports whether id is 32 lower-case hex digits.
func isSessionID(id string) bool {
	return len(id) == 32 && strings.Trim(id, "0123456789abcdef") == ""
}
