package store

// This file owns schedules and triggers (issue 18): their rows, the
// outbox of ends that may fire them, and the one write transaction of a
// firing. A firing is recorded (fires, UNIQUE per trigger and fire: a
// tick, the key of the task or run whose end fired it, a request's id) in
// the transaction that submits the work it starts, so that a crash at any
// moment leaves either both or neither: a tick, result or request starts
// its target once, never twice and, once accepted, never not at all.
//
// The life of an end: the transaction that stores a task's result (or
// ends a run) also writes a trigger_events row when its owner has an
// active trigger of that kind; the server's dispatcher reads the events,
// fires each matching trigger (each firing its own transaction, idempotent
// by its UNIQUE key) and then deletes the event. A crash between leaves
// the event to the next pass, whose firings of the triggers already fired
// find their rows and do nothing.
//
// The put of a trigger, its spec and its target are opaque JSON here; the
// server reads them (internal/trigger, api.TriggerPut).

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kolejka-go/kolejka/spec"
)

// Kinds of trigger as triggers.kind holds them (api.Trigger*).
const (
	KindSchedule = "schedule"
	KindResult   = "result"
	KindRun      = "run"
	KindRequest  = "request"
)

// Fire states (api.Fire*).
const (
	FireStarted = "started"
	FireSkipped = "skipped"
	FireRefused = "refused"
)

// TriggerRow is a schedule's or trigger's row.
type TriggerRow struct {
	ID         int64
	Owner      int64
	OwnerName  string
	Name       string
	Kind       string
	Version    int
	Paused     bool
	Spec       []byte
	NextFire   time.Time // a schedule's next tick; zero for the others
	TimeCreate time.Time
}

// NewTrigger is a put of a schedule or trigger.
type NewTrigger struct {
	Owner int64
	Name  string
	Kind  string
	Spec  []byte
	// Files are the references its target uses, by a name for errors
	// ("target.files[\"x\"]"): its owner's (ReadAll: anyone's), kept alive
	// while the trigger is.
	Files    map[string]string
	ReadAll  bool
	NextFire time.Time // a schedule's first tick
	Now      time.Time
}

// KindError refuses a put under a name the owner uses for the other sort
// (a schedule's name for a trigger, or the reverse).
type KindError struct{ Name, Kind string }

func (e *KindError) Error() string {
	return fmt.Sprintf("%q is the name of your %s: choose another name or remove it first", e.Name, kindWord(e.Kind))
}

func kindWord(kind string) string {
	if kind == KindSchedule {
		return "schedule"
	}
	return kind + " trigger"
}

func isSchedule(kind string) bool { return kind == KindSchedule }

// PutTrigger records a new schedule or trigger, or the next version of the
// owner's one of that name (its firings so far stay; a paused one stays
// paused). A FileErrors names each reference the owner may not use, a
// *KindError a name taken by the other sort; nothing is recorded then.
func (s *Store) PutTrigger(ctx context.Context, t NewTrigger) (version int, err error) {
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := checkRefs(ctx, tx, t.Files, t.Owner, t.ReadAll, nil); err != nil {
			return err
		}
		var next any
		if !t.NextFire.IsZero() {
			next = us(t.NextFire)
		}
		var id int64
		var kind string
		err := tx.QueryRowContext(ctx, `SELECT id, kind, version FROM triggers WHERE user_id = ? AND name = ?`, t.Owner, t.Name).Scan(&id, &kind, &version)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			version = 1
			if err := tx.QueryRowContext(ctx, `
				INSERT INTO triggers (user_id, name, kind, version, spec, next_fire, time_create) VALUES (?, ?, ?, 1, ?, ?, ?) RETURNING id`,
				t.Owner, t.Name, t.Kind, t.Spec, next, us(t.Now)).Scan(&id); err != nil {
				return fmt.Errorf("unable to record trigger: %w", err)
			}
		case err != nil:
			return fmt.Errorf("unable to read trigger: %w", err)
		case isSchedule(kind) != isSchedule(t.Kind):
			return &KindError{Name: t.Name, Kind: kind}
		default:
			version++
			if _, err := tx.ExecContext(ctx, `UPDATE triggers SET kind = ?, version = ?, spec = ?, next_fire = ?, time_create = ? WHERE id = ?`,
				t.Kind, version, t.Spec, next, us(t.Now), id); err != nil {
				return fmt.Errorf("unable to record trigger: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM trigger_files WHERE trigger_id = ?`, id); err != nil {
				return fmt.Errorf("unable to record trigger files: %w", err)
			}
		}
		seen := map[string]bool{}
		for _, ref := range t.Files {
			if seen[ref] {
				continue
			}
			seen[ref] = true
			if _, err := tx.ExecContext(ctx, `INSERT INTO trigger_files (trigger_id, name, ref) VALUES (?, ?, ?)`, id, ref, ref); err != nil {
				return fmt.Errorf("unable to record trigger files: %w", err)
			}
		}
		return nil
	})
	return version, err
}

const triggerColumns = `g.id, g.user_id, u.name, g.name, g.kind, g.version, g.paused, g.spec, g.next_fire, g.time_create`

const triggerFrom = `FROM triggers g JOIN users u ON u.id = g.user_id`

func scanTrigger(row scanner) (TriggerRow, error) {
	var t TriggerRow
	var next sql.NullInt64
	var created int64
	err := row.Scan(&t.ID, &t.Owner, &t.OwnerName, &t.Name, &t.Kind, &t.Version, &t.Paused, &t.Spec, &next, &created)
	t.NextFire, t.TimeCreate = fromNullUS(next), fromUS(created)
	return t, err
}

// Trigger reads owner's schedule or trigger name (ErrNotFound).
func (s *Store) Trigger(ctx context.Context, owner int64, name string) (TriggerRow, error) {
	t, err := scanTrigger(s.r.QueryRowContext(ctx, `SELECT `+triggerColumns+` `+triggerFrom+` WHERE g.user_id = ? AND g.name = ?`, owner, name))
	return t, rowErr(err, "read trigger")
}

// TriggerByID reads a trigger by its id (ErrNotFound).
func (s *Store) TriggerByID(ctx context.Context, id int64) (TriggerRow, error) {
	t, err := scanTrigger(s.r.QueryRowContext(ctx, `SELECT `+triggerColumns+` `+triggerFrom+` WHERE g.id = ?`, id))
	return t, rowErr(err, "read trigger")
}

// Triggers lists schedules (schedules true) or triggers, by owner and
// name: owner's, or everyone's with all.
func (s *Store) Triggers(ctx context.Context, owner int64, all, schedules bool) ([]TriggerRow, error) {
	cond := `g.kind != 'schedule'`
	if schedules {
		cond = `g.kind = 'schedule'`
	}
	return queryRows(ctx, s.r, "list triggers", func(rows *sql.Rows) (TriggerRow, error) { return scanTrigger(rows) },
		`SELECT `+triggerColumns+` `+triggerFrom+` WHERE `+cond+` AND (? = 1 OR g.user_id = ?) ORDER BY u.name, g.name`, boolInt(all), owner)
}

// TriggersOf lists owner's triggers of kind (all of them with kind ""),
// paused ones too.
func (s *Store) TriggersOf(ctx context.Context, owner int64, kind string) ([]TriggerRow, error) {
	return queryRows(ctx, s.r, "list triggers", func(rows *sql.Rows) (TriggerRow, error) { return scanTrigger(rows) },
		`SELECT `+triggerColumns+` `+triggerFrom+` WHERE g.user_id = ? AND (? = '' OR g.kind = ?) ORDER BY g.name`, owner, kind, kind)
}

// DeleteTrigger removes a trigger and its firings (the work they started
// stays).
func (s *Store) DeleteTrigger(ctx context.Context, id int64) error {
	n, err := s.writeOne(ctx, "remove trigger", `DELETE FROM triggers WHERE id = ?`, id)
	if err == nil && n == 0 {
		return fmt.Errorf("unable to remove trigger: %w", ErrNotFound)
	}
	return err
}

// PauseTrigger pauses or resumes a trigger; next (non-zero for a
// schedule) is its next tick: a resumed schedule fires from now on, not
// the ticks it missed while paused.
func (s *Store) PauseTrigger(ctx context.Context, id int64, paused bool, next time.Time) error {
	var nf any
	if !next.IsZero() {
		nf = us(next)
	}
	n, err := s.writeOne(ctx, "pause trigger", `UPDATE triggers SET paused = ?, next_fire = COALESCE(?, next_fire) WHERE id = ?`, paused, nf, id)
	if err == nil && n == 0 {
		return fmt.Errorf("unable to pause trigger: %w", ErrNotFound)
	}
	return err
}

// DueSchedules lists the active schedules whose next tick is at or before
// now, earliest first.
func (s *Store) DueSchedules(ctx context.Context, now time.Time) ([]TriggerRow, error) {
	return queryRows(ctx, s.r, "list due schedules", func(rows *sql.Rows) (TriggerRow, error) { return scanTrigger(rows) },
		`SELECT `+triggerColumns+` `+triggerFrom+` WHERE g.next_fire <= ? AND g.paused = 0 ORDER BY g.next_fire, g.id`, us(now))
}

// NextTick is the earliest next tick of an active schedule (false: none).
func (s *Store) NextTick(ctx context.Context) (time.Time, bool, error) {
	var v sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT MIN(next_fire) FROM triggers WHERE paused = 0`).Scan(&v); err != nil {
		return time.Time{}, false, fmt.Errorf("unable to read the next tick: %w", err)
	}
	return fromNullUS(v), v.Valid, nil
}

// SetNextTick moves a schedule's next tick (after a firing found its row
// already written, by an earlier pass or another server).
func (s *Store) SetNextTick(ctx context.Context, id int64, next time.Time) error {
	_, err := s.writeOne(ctx, "move the next tick", `UPDATE triggers SET next_fire = ? WHERE id = ? AND next_fire < ?`, us(next), id, us(next))
	return err
}

// FireRow is one firing, with where the work it started is.
type FireRow struct {
	ID         int64
	Fire       string
	State      string
	Started    string // "task", "workflow", ""
	Key        string
	Reason     string
	Depth      int
	TimeCreate time.Time
	// Status is the result's status of a task that has one, a run's
	// state, "deleted" for work that is gone; else the task's state is
	// TaskState (TaskKnown).
	Status    string
	TaskState State
	TaskKnown bool
}

// Fires lists trigger id's latest firings, newest first, at most limit.
func (s *Store) Fires(ctx context.Context, id int64, limit int) ([]FireRow, error) {
	return queryRows(ctx, s.r, "list firings", func(rows *sql.Rows) (FireRow, error) {
		var f FireRow
		var created int64
		var state sql.NullInt64
		var result []byte
		var run sql.NullString
		err := rows.Scan(&f.ID, &f.Fire, &f.State, &f.Started, &f.Key, &f.Reason, &f.Depth, &created, &state, &result, &run)
		f.TimeCreate = fromUS(created)
		switch {
		case run.Valid:
			f.Status = run.String
		case len(result) > 0:
			f.Status = string(ResultStatus(result))
		case state.Valid:
			f.TaskState, f.TaskKnown = State(state.Int64), true
		case f.Key != "":
			f.Status = "deleted"
		}
		return f, err
	}, `SELECT f.id, f.fire, f.state, f.started, f.key, f.reason, f.depth, f.time_create, t.state, r.description, w.state
		FROM fires f
		LEFT JOIN tasks t ON f.started = 'task' AND t.key = f.key
		LEFT JOIN results r ON r.task_id = t.id
		LEFT JOIN runs w ON f.started = 'workflow' AND w.key = f.key
		WHERE f.trigger_id = ? ORDER BY f.id DESC LIMIT ?`, id, limit)
}

// PruneFires keeps each trigger's keep latest firings and deletes the
// older ones: the history `show` lists is bounded, and an idempotency key
// older than that may start its target again.
func (s *Store) PruneFires(ctx context.Context, keep int) (int64, error) {
	ids, err := queryColumn[int64](ctx, s.r, "list triggers", `SELECT id FROM triggers`)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, id := range ids {
		n, err := s.writeOne(ctx, "prune firings", `
			DELETE FROM fires WHERE trigger_id = ? AND id <= (
				SELECT id FROM fires WHERE trigger_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`, id, id, keep)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// ResultFiles maps each file of task key's result to its reference (none
// if it has no result).
func (s *Store) ResultFiles(ctx context.Context, key string) (map[string]string, error) {
	type file struct{ name, ref string }
	files, err := queryRows(ctx, s.r, "read result files", func(rows *sql.Rows) (f file, err error) {
		err = rows.Scan(&f.name, &f.ref)
		return f, err
	}, `SELECT f.name, f.ref FROM result_files f JOIN tasks t ON t.id = f.task_id JOIN results r ON r.task_id = t.id WHERE t.key = ?`, key)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(files))
	for _, f := range files {
		out[f.name] = f.ref
	}
	return out, nil
}

// Event is an end that may fire result or run triggers (trigger_events).
type Event struct {
	ID     int64
	Owner  int64
	Kind   string // KindResult (a task's result) or KindRun
	Key    string // the task's or run's key
	Status string // the result's status, the run's state
	Queue  string
	Type   string
}

// Events lists up to limit pending events, oldest first.
func (s *Store) Events(ctx context.Context, limit int) ([]Event, error) {
	return queryRows(ctx, s.r, "list trigger events", func(rows *sql.Rows) (Event, error) {
		var e Event
		err := rows.Scan(&e.ID, &e.Owner, &e.Kind, &e.Key, &e.Status, &e.Queue, &e.Type)
		return e, err
	}, `SELECT id, user_id, kind, key, status, queue, type_name FROM trigger_events ORDER BY id LIMIT ?`, limit)
}

// DeleteEvent removes an event every trigger it fires has fired for.
func (s *Store) DeleteEvent(ctx context.Context, id int64) error {
	_, err := s.writeOne(ctx, "remove trigger event", `DELETE FROM trigger_events WHERE id = ?`, id)
	return err
}

// taskEvent writes the event of task id's result (status), in the
// transaction that stores it, when its owner has an active result
// trigger: one statement, nothing written for an owner without one.
func taskEvent(ctx context.Context, tx *sql.Tx, id int64, status string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO trigger_events (user_id, kind, key, status, queue, type_name, time_create)
		SELECT t.user_id, 'result', t.key, ?, t.queue, t.type_name, ? FROM tasks t
		WHERE t.id = ? AND EXISTS (SELECT 1 FROM triggers g WHERE g.user_id = t.user_id AND g.kind = 'result' AND g.paused = 0)`,
		status, us(now), id); err != nil {
		return fmt.Errorf("unable to record a trigger event: %w", err)
	}
	return nil
}

// runEvent writes the event of run id's end (state), as taskEvent.
func runEvent(ctx context.Context, tx *sql.Tx, id int64, state string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO trigger_events (user_id, kind, key, status, time_create)
		SELECT r.user_id, 'run', r.key, ?, ? FROM runs r
		WHERE r.id = ? AND EXISTS (SELECT 1 FROM triggers g WHERE g.user_id = r.user_id AND g.kind = 'run' AND g.paused = 0)`,
		state, us(now), id); err != nil {
		return fmt.Errorf("unable to record a trigger event: %w", err)
	}
	return nil
}

// DepthOf is the depth of the firing that started task or run key (or the
// run task key is a step of): 0 if no trigger started it.
func (s *Store) DepthOf(ctx context.Context, key string) (int, error) {
	var d sql.NullInt64
	err := s.r.QueryRowContext(ctx, `
		SELECT MAX(f.depth) FROM fires f
		WHERE f.key IN (?, (SELECT r.key FROM tasks t JOIN runs r ON r.id = t.run_id WHERE t.key = ?))`, key, key).Scan(&d)
	if err != nil {
		return 0, fmt.Errorf("unable to read a firing's depth: %w", err)
	}
	return int(d.Int64), nil
}

// FireTx is a firing being recorded, inside Fire's transaction.
type FireTx struct {
	ctx     context.Context
	tx      *sql.Tx
	now     time.Time
	Trigger TriggerRow // as the transaction reads it
	queued  bool
	forget  []int64
	runs    []string
}

// Fired is what a firing did, as fn of Fire decides it.
type Fired struct {
	State   string // FireStarted, FireSkipped, FireRefused
	Started string // "task" or "workflow", with FireStarted
	Key     string
	Reason  string
	Depth   int
	// Next moves a schedule's next tick (zero: leave it).
	Next time.Time
}

// FireResult is what Fire recorded: the firing, and whether it was
// recorded before (Replay: fn was not called, or its work rolled back).
type FireResult struct {
	Fire   FireRow
	Replay bool
	Queued bool     // tasks were queued: a dequeue may wake
	Runs   []string // runs the firing put, for the server to advance
}

// ErrTriggerGone: the trigger was removed (or paused, for a firing that
// needs it active) before its firing.
var ErrTriggerGone = errors.New("the trigger is gone or paused")

// Fire records firing fire of trigger id and what fn starts for it, in one
// transaction. If the trigger already has that firing, fn is not called
// and the stored one is returned (Replay). If the trigger is gone or
// paused (active required), ErrTriggerGone. An error of fn rolls back
// everything.
func (s *Store) Fire(ctx context.Context, id int64, fire string, active bool, now time.Time, fn func(f *FireTx) (Fired, error)) (FireResult, error) {
	var out FireResult
	var ftx *FireTx
	err := s.write(ctx, func(tx *sql.Tx) error {
		out = FireResult{}
		row, err := scanTrigger(tx.QueryRowContext(ctx, `SELECT `+triggerColumns+` `+triggerFrom+` WHERE g.id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) || (err == nil && active && row.Paused) {
			return ErrTriggerGone
		}
		if err != nil {
			return fmt.Errorf("unable to read trigger: %w", err)
		}
		var f FireRow
		var created int64
		err = tx.QueryRowContext(ctx, `SELECT id, fire, state, started, key, reason, depth, time_create FROM fires WHERE trigger_id = ? AND fire = ?`, id, fire).
			Scan(&f.ID, &f.Fire, &f.State, &f.Started, &f.Key, &f.Reason, &f.Depth, &created)
		if err == nil {
			f.TimeCreate = fromUS(created)
			out.Fire, out.Replay = f, true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("unable to read firing: %w", err)
		}
		ftx = &FireTx{ctx: ctx, tx: tx, now: now, Trigger: row}
		d, err := fn(ftx)
		if err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `
			INSERT INTO fires (trigger_id, fire, state, started, key, reason, depth, time_create) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			id, fire, d.State, d.Started, d.Key, d.Reason, d.Depth, us(now)).Scan(&f.ID); err != nil {
			return fmt.Errorf("unable to record firing: %w", err)
		}
		if !d.Next.IsZero() {
			if _, err := tx.ExecContext(ctx, `UPDATE triggers SET next_fire = ? WHERE id = ?`, us(d.Next), id); err != nil {
				return fmt.Errorf("unable to move the next tick: %w", err)
			}
		}
		out.Fire = FireRow{ID: f.ID, Fire: fire, State: d.State, Started: d.Started, Key: d.Key, Reason: d.Reason, Depth: d.Depth, TimeCreate: now.UTC()}
		return nil
	})
	if err != nil {
		return FireResult{}, err
	}
	if ftx != nil && !out.Replay {
		for _, fid := range ftx.forget {
			s.forget(fid)
		}
		out.Queued, out.Runs = ftx.queued, ftx.runs
	}
	return out, nil
}

// InsertTask records task t as the firing's work, as InsertTask does (the
// same checks and errors).
func (f *FireTx) InsertTask(t NewTask) error {
	requires, err := encodeRequires(t.Requires)
	if err != nil {
		return err
	}
	if _, err := insertTask(f.ctx, f.tx, t, requires, nil); err != nil {
		return err
	}
	f.queued = true
	return nil
}

// InsertRun records run r as the firing's work, as InsertRun does.
func (f *FireTx) InsertRun(r NewRun, files map[string]string, readAll bool) error {
	if _, err := insertRun(f.ctx, f.tx, r, files, readAll); err != nil {
		return err
	}
	f.runs = append(f.runs, r.Key)
	return nil
}

// LastStarted is the trigger's latest firing that started work, and
// whether that work is still going (a task not done nor cancelled, a run
// running); ok false if it has none.
func (f *FireTx) LastStarted() (last FireRow, going, ok bool, err error) {
	err = f.tx.QueryRowContext(f.ctx, `
		SELECT id, fire, started, key FROM fires WHERE trigger_id = ? AND state = 'started' ORDER BY id DESC LIMIT 1`, f.Trigger.ID).
		Scan(&last.ID, &last.Fire, &last.Started, &last.Key)
	if errors.Is(err, sql.ErrNoRows) {
		return FireRow{}, false, false, nil
	}
	if err != nil {
		return FireRow{}, false, false, fmt.Errorf("unable to read the last firing: %w", err)
	}
	var n int
	if last.Started == "workflow" {
		err = f.tx.QueryRowContext(f.ctx, `SELECT COUNT(*) FROM runs WHERE key = ? AND state = ?`, last.Key, RunRunning).Scan(&n)
	} else {
		err = f.tx.QueryRowContext(f.ctx, `SELECT COUNT(*) FROM tasks WHERE key = ? AND state IN (?, ?)`, last.Key, stateQueued, stateAssigned).Scan(&n)
	}
	if err != nil {
		return FireRow{}, false, false, fmt.Errorf("unable to read the last firing's work: %w", err)
	}
	return last, n > 0, true, nil
}

// CancelTask cancels task key, as Store.Cancel does; a task that ended is
// left as it is.
func (f *FireTx) CancelTask(key string) error {
	return cancelIn(f.ctx, f.tx, key, f.now, &f.forget)
}

// encodeRequires is the JSON of a task's requires, as tasks.requires
// holds it.
func encodeRequires(r []string) (string, error) {
	b, err := json.Marshal(nonNil(r))
	if err != nil {
		return "", fmt.Errorf("unable to encode requires: %w", err)
	}
	return string(b), nil
}

// ResultStatus is the status of a stored result: its "status", else OK
// or RE by its exit code, else SE (a result that says nothing, or does
// not parse).
func ResultStatus(desc []byte) spec.Status {
	var res struct {
		Status spec.Status `json:"status"`
		Result *int        `json:"result"`
	}
	switch {
	case json.Unmarshal(desc, &res) != nil:
		return spec.StatusSE
	case res.Status.Valid():
		return res.Status
	case res.Result != nil && *res.Result == 0:
		return spec.StatusOK
	case res.Result != nil:
		return spec.StatusRE
	}
	return spec.StatusSE
}
