package store

// This file owns the schema and its migrations. The schema_version table
// holds one row, the number of steps applied; Open applies the missing
// steps in order, each in its own transaction together with the version
// bump, so a crash leaves the database at a step boundary. A database
// newer than this program (more steps than it knows) is refused rather
// than used half-understood.
//
// Never edit a released step: append a new one.

import (
	"context"
	"database/sql"
	"fmt"
)

// Task states (tasks.state).
const (
	stateQueued   = 0 // waiting for a node
	stateAssigned = 1 // handed to a node, lease running
	stateDone     = 2 // a result was accepted (it may have been deleted since)
	// stateCancelled: its owner or a manager cancelled it; it is never
	// handed out again and takes no result.
	stateCancelled = 3
)

var migrations = []string{
	// 1: the first schema.
	`
CREATE TABLE users (
	id          INTEGER PRIMARY KEY,
	name        TEXT    NOT NULL UNIQUE,
	password    TEXT    NOT NULL,
	roles       INTEGER NOT NULL DEFAULT 0,
	time_create INTEGER NOT NULL
);
CREATE TABLE sessions (
	hash        TEXT    PRIMARY KEY,
	user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	time_create INTEGER NOT NULL,
	time_expire INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_expire ON sessions(time_expire);
CREATE TABLE tokens (
	hash        TEXT    PRIMARY KEY,
	user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	time_create INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE blobs (
	hash        TEXT    PRIMARY KEY,
	size        INTEGER NOT NULL,
	time_create INTEGER NOT NULL,
	time_access INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE refs (
	key         TEXT    PRIMARY KEY,
	blob        TEXT    NOT NULL REFERENCES blobs(hash),
	user_id     INTEGER NOT NULL REFERENCES users(id),
	time_create INTEGER NOT NULL,
	time_access INTEGER NOT NULL
);
CREATE INDEX refs_blob ON refs(blob);
CREATE INDEX refs_user ON refs(user_id);
CREATE TABLE tasks (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	key             TEXT    NOT NULL UNIQUE,
	user_id         INTEGER NOT NULL REFERENCES users(id),
	description     BLOB    NOT NULL,
	limits          BLOB    NOT NULL,
	requires        TEXT    NOT NULL,
	exclusive       INTEGER NOT NULL,
	callback_url    TEXT    NOT NULL DEFAULT '',
	state           INTEGER NOT NULL DEFAULT 0,
	assignee_id     INTEGER REFERENCES users(id),
	time_create     INTEGER NOT NULL,
	time_assign     INTEGER,
	lease_expire    INTEGER,
	heartbeat       INTEGER NOT NULL DEFAULT 0,
	attempts        INTEGER NOT NULL DEFAULT 0,
	assigned_limits BLOB
);
CREATE INDEX tasks_queue ON tasks(state, id);
CREATE INDEX tasks_lease ON tasks(lease_expire) WHERE state = 1;
CREATE INDEX tasks_assignee ON tasks(assignee_id, state);
CREATE TABLE task_files (
	task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
	name    TEXT    NOT NULL,
	ref     TEXT    NOT NULL REFERENCES refs(key),
	PRIMARY KEY (task_id, name)
) WITHOUT ROWID;
CREATE INDEX task_files_ref ON task_files(ref);
CREATE TABLE task_nodes (
	task_id     INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
	attempt     INTEGER NOT NULL,
	user_id     INTEGER NOT NULL REFERENCES users(id),
	time_assign INTEGER NOT NULL,
	PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID;
CREATE TABLE results (
	task_id     INTEGER PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
	user_id     INTEGER REFERENCES users(id),
	description BLOB    NOT NULL,
	fingerprint TEXT    NOT NULL,
	time_create INTEGER NOT NULL
);
CREATE TABLE result_files (
	task_id INTEGER NOT NULL REFERENCES results(task_id) ON DELETE CASCADE,
	name    TEXT    NOT NULL,
	ref     TEXT    NOT NULL REFERENCES refs(key),
	PRIMARY KEY (task_id, name)
) WITHOUT ROWID;
CREATE INDEX result_files_ref ON result_files(ref);
CREATE TABLE callbacks (
	id           INTEGER PRIMARY KEY,
	task_key     TEXT    NOT NULL,
	url          TEXT    NOT NULL,
	body         BLOB    NOT NULL,
	attempts     INTEGER NOT NULL DEFAULT 0,
	next_attempt INTEGER NOT NULL,
	state        INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT    NOT NULL DEFAULT '',
	time_create  INTEGER NOT NULL
);
CREATE INDEX callbacks_due ON callbacks(next_attempt) WHERE state = 0;
`,
	// 2: indexes that every hot query can use whatever the table holds.
	// A dequeue asks whether its node holds tasks, and an exclusive one:
	// answered from tasks_assignee alone however many tasks the node has.
	// The lease and callback indexes were partial (WHERE state = …); the
	// planner passed them over for tasks_queue, scanning every assigned
	// task at each dequeue. Leading with state, they win on their own.
	`
DROP INDEX tasks_assignee;
CREATE INDEX tasks_assignee ON tasks(assignee_id, state, exclusive);
DROP INDEX tasks_lease;
CREATE INDEX tasks_lease ON tasks(state, lease_expire);
DROP INDEX callbacks_due;
CREATE INDEX callbacks_due ON callbacks(state, next_attempt);
`,
	// 3: counts kept by triggers, so /queue/stats/ and /metrics cost the
	// same with 100k tasks as with ten (counting them took ~6 ms).
	`
CREATE TABLE task_counts (
	state INTEGER PRIMARY KEY,
	n     INTEGER NOT NULL
);
INSERT INTO task_counts (state, n)
	SELECT s, (SELECT COUNT(*) FROM tasks WHERE state = s) FROM (SELECT 0 AS s UNION ALL SELECT 1 UNION ALL SELECT 2);
CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN
	UPDATE task_counts SET n = n + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN
	UPDATE task_counts SET n = n - 1 WHERE state = OLD.state;
END;
CREATE TRIGGER tasks_count_update AFTER UPDATE OF state ON tasks WHEN OLD.state != NEW.state BEGIN
	UPDATE task_counts SET n = n - 1 WHERE state = OLD.state;
	UPDATE task_counts SET n = n + 1 WHERE state = NEW.state;
END;
CREATE TABLE blob_totals (
	id    INTEGER PRIMARY KEY CHECK (id = 0),
	count INTEGER NOT NULL,
	bytes INTEGER NOT NULL
);
INSERT INTO blob_totals (id, count, bytes) SELECT 0, COUNT(*), COALESCE(SUM(size), 0) FROM blobs;
CREATE TRIGGER blobs_total_insert AFTER INSERT ON blobs BEGIN
	UPDATE blob_totals SET count = count + 1, bytes = bytes + NEW.size WHERE id = 0;
END;
CREATE TRIGGER blobs_total_delete AFTER DELETE ON blobs BEGIN
	UPDATE blob_totals SET count = count - 1, bytes = bytes - OLD.size WHERE id = 0;
END;
`,
	// 4: when a task last entered the queue (submission or return), for
	// the queue timeout: a task a dead node held for an hour must not time
	// out the moment it comes back.
	`
ALTER TABLE tasks ADD COLUMN time_queued INTEGER;
UPDATE tasks SET time_queued = time_create WHERE state = 0;
`,
	// 5: who last lost the task's lease, and when: a dequeue of that node
	// that began before the loss (a long poll still open from before a
	// network cut) must not get the task straight back.
	`
ALTER TABLE tasks ADD COLUMN lost_by INTEGER;
ALTER TABLE tasks ADD COLUMN time_lost INTEGER;
`,
	// 6: bearer tokens an operator can see and withdraw. id is what the
	// admin commands show and revoke by: the start of the digest, so
	// tokens made before this step get one too; prefix is the start of
	// the token itself (unknown for those, hence ''), so that the holder
	// of a token can tell which row is theirs. time_expire NULL: the token
	// never expires (only tokens made before this step; revoke them).
	// time_used is refreshed at most once a minute (see TouchToken).
	// Plain ALTER/UPDATE/CREATE INDEX: the statements a PostgreSQL backend
	// runs as they are.
	`
ALTER TABLE tokens ADD COLUMN id TEXT;
ALTER TABLE tokens ADD COLUMN prefix TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN time_expire INTEGER;
ALTER TABLE tokens ADD COLUMN time_used INTEGER;
UPDATE tokens SET id = substr(hash, 1, 12);
CREATE UNIQUE INDEX tokens_id ON tokens(id);
CREATE INDEX tokens_user ON tokens(user_id);
CREATE INDEX tokens_expire ON tokens(time_expire);
`,
	// 7: the sweep of node uploads no result took (SweepUploads) walks
	// references by age.
	`
CREATE INDEX refs_create ON refs(time_create);
`,
	// 8: named queues, task types and the task lifecycle.
	//
	// queues: one row per queue; submitters and nodes are JSON lists of
	// user names (empty: anyone); a task's queue is its name, so removing a
	// queue is refused while tasks wait in it (checked by the store, no
	// foreign key, so that the default queue's row needs no migration of
	// old tasks). tasks_queue_wait serves a dequeue per queue in queue
	// order; tasks_owner serves `task ls`, newest first.
	//
	// types: every version of every task type; a name belongs to the user
	// who first put it (names are global, so `--type NAME` is never
	// ambiguous). description is the type's kolejka_task.json as parsed
	// and re-encoded; type_files hold its files' references.
	//
	// tasks.type_name and tasks.origin (tasktype.Origin as JSON) record
	// what a task was rendered from; time_finish when it got its result or
	// was cancelled.
	`
CREATE TABLE queues (
	name        TEXT    PRIMARY KEY,
	private     INTEGER NOT NULL DEFAULT 0,
	submitters  TEXT    NOT NULL DEFAULT '[]',
	nodes       TEXT    NOT NULL DEFAULT '[]',
	priority    INTEGER NOT NULL DEFAULT 0,
	paused      INTEGER NOT NULL DEFAULT 0,
	time_create INTEGER NOT NULL
);
INSERT INTO queues (name, time_create) VALUES ('default', 0);
ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE tasks ADD COLUMN type_name TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN origin BLOB;
ALTER TABLE tasks ADD COLUMN time_finish INTEGER;
UPDATE tasks SET time_finish = (SELECT r.time_create FROM results r WHERE r.task_id = tasks.id) WHERE state = 2;
CREATE INDEX tasks_queue_wait ON tasks(queue, state, id);
CREATE INDEX tasks_owner ON tasks(user_id, id);
INSERT INTO task_counts (state, n) VALUES (3, 0);
CREATE TABLE types (
	id          INTEGER PRIMARY KEY,
	user_id     INTEGER NOT NULL REFERENCES users(id),
	name        TEXT    NOT NULL,
	version     INTEGER NOT NULL,
	public      INTEGER NOT NULL DEFAULT 0,
	description BLOB    NOT NULL,
	time_create INTEGER NOT NULL,
	UNIQUE (name, version)
);
CREATE TABLE type_files (
	type_id INTEGER NOT NULL REFERENCES types(id) ON DELETE CASCADE,
	name    TEXT    NOT NULL,
	ref     TEXT    NOT NULL REFERENCES refs(key),
	PRIMARY KEY (type_id, name)
);
CREATE INDEX type_files_ref ON type_files(ref);
`,
	// 9: each queue's queued and running tasks, kept by triggers as
	// task_counts (step 3) is, so that /queue/stats/ and /metrics show
	// per-queue figures at the same cost with 100k tasks as with ten
	// (counting a queue of 100k in the index took ~3.5 ms). Only the
	// states a queue's figures show (0 queued, 1 assigned) are kept.
	`
CREATE TABLE queue_counts (
	queue TEXT    NOT NULL,
	state INTEGER NOT NULL,
	n     INTEGER NOT NULL,
	PRIMARY KEY (queue, state)
);
INSERT INTO queue_counts (queue, state, n)
	SELECT queue, state, COUNT(*) FROM tasks WHERE state IN (0, 1) GROUP BY queue, state;
CREATE TRIGGER tasks_queue_count_insert AFTER INSERT ON tasks WHEN NEW.state IN (0, 1) BEGIN
	INSERT INTO queue_counts (queue, state, n) VALUES (NEW.queue, NEW.state, 1)
		ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tasks_queue_count_delete AFTER DELETE ON tasks WHEN OLD.state IN (0, 1) BEGIN
	UPDATE queue_counts SET n = n - 1 WHERE queue = OLD.queue AND state = OLD.state;
END;
CREATE TRIGGER tasks_queue_count_update AFTER UPDATE OF state, queue ON tasks
	WHEN OLD.state != NEW.state OR OLD.queue != NEW.queue BEGIN
	UPDATE queue_counts SET n = n - 1 WHERE queue = OLD.queue AND state = OLD.state AND OLD.state IN (0, 1);
	INSERT INTO queue_counts (queue, state, n) SELECT NEW.queue, NEW.state, 1 WHERE NEW.state IN (0, 1)
		ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
`,
	// 10: workflow runs (issue 17). runs holds each run: its owner, its
	// state ('running', 'ok', 'failed', 'cancelled'), the engine's JSON
	// (internal/workflow.Run) and the steps' sources as the server keeps
	// them (their kolejka_task.json or type request, with references),
	// both opaque here. tasks.run_id, tasks.step and tasks.item_index say
	// which run, step and instance a task is of (NULL, '' and 0 for a task
	// of no run; item_index -1 for a step that runs once); tasks_run
	// serves a run's advance and `workflow show`.
	`
CREATE TABLE runs (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	key         TEXT    NOT NULL UNIQUE,
	user_id     INTEGER NOT NULL REFERENCES users(id),
	state       TEXT    NOT NULL,
	run         BLOB    NOT NULL,
	steps       BLOB    NOT NULL,
	time_create INTEGER NOT NULL,
	time_finish INTEGER
);
CREATE INDEX runs_owner ON runs(user_id, id);
CREATE INDEX runs_state ON runs(state, id);
ALTER TABLE tasks ADD COLUMN run_id INTEGER;
ALTER TABLE tasks ADD COLUMN step TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN item_index INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tasks_run ON tasks(run_id, id);
`,
	// 11: schedules and triggers (issue 18). triggers holds each of a
	// user's schedules and triggers (kind 'schedule', 'result', 'run',
	// 'request'; one name space per user), its put as accepted (opaque
	// JSON) and, for a schedule, its next tick (next_fire, µs; NULL for
	// the others). trigger_files keeps the references its target uses
	// alive, as type_files does a type's. fires records each firing
	// before (in the same transaction as) the work it starts: UNIQUE
	// (trigger_id, fire) is what makes a tick, a result or a request fire
	// once. depth is how many firings led to it (a loop's guard).
	// trigger_events is the outbox of ends that may fire result and run
	// triggers, written in the transaction that stores the end. A scoped
	// token (tokens.scope, 'trigger:NAME') may only fire that trigger.
	`
CREATE TABLE triggers (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id     INTEGER NOT NULL REFERENCES users(id),
	name        TEXT    NOT NULL,
	kind        TEXT    NOT NULL,
	version     INTEGER NOT NULL,
	paused      INTEGER NOT NULL DEFAULT 0,
	spec        BLOB    NOT NULL,
	next_fire   INTEGER,
	time_create INTEGER NOT NULL,
	UNIQUE (user_id, name)
);
CREATE INDEX triggers_due ON triggers(next_fire);
CREATE INDEX triggers_owner_kind ON triggers(user_id, kind);
CREATE TABLE trigger_files (
	trigger_id INTEGER NOT NULL REFERENCES triggers(id) ON DELETE CASCADE,
	name       TEXT    NOT NULL,
	ref        TEXT    NOT NULL REFERENCES refs(key),
	PRIMARY KEY (trigger_id, name)
);
CREATE INDEX trigger_files_ref ON trigger_files(ref);
CREATE TABLE fires (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	trigger_id  INTEGER NOT NULL REFERENCES triggers(id) ON DELETE CASCADE,
	fire        TEXT    NOT NULL,
	state       TEXT    NOT NULL,
	started     TEXT    NOT NULL DEFAULT '',
	key         TEXT    NOT NULL DEFAULT '',
	reason      TEXT    NOT NULL DEFAULT '',
	depth       INTEGER NOT NULL DEFAULT 0,
	time_create INTEGER NOT NULL,
	UNIQUE (trigger_id, fire)
);
CREATE INDEX fires_key ON fires(key);
CREATE INDEX fires_trigger ON fires(trigger_id, id);
CREATE TABLE trigger_events (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id     INTEGER NOT NULL,
	kind        TEXT    NOT NULL,
	key         TEXT    NOT NULL,
	status      TEXT    NOT NULL,
	queue       TEXT    NOT NULL DEFAULT '',
	type_name   TEXT    NOT NULL DEFAULT '',
	time_create INTEGER NOT NULL
);
ALTER TABLE tokens ADD COLUMN scope TEXT NOT NULL DEFAULT '';
`,
	// 12: nodes (issue 19): what the server last heard from each processor
	// that dequeued, heartbeated or was drained. last_seen is the last
	// contact (µs; NULL: never, a node drained before it first came),
	// written at most every few seconds per node; last_dequeue is the last
	// dequeue, whose free limits, capacity (our foreman's), defaults (JSON
	// limits), tags, queues (JSON lists) and concurency the other columns
	// hold. A drained node is handed no new task.
	`
CREATE TABLE nodes (
	user_id      INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
	last_seen    INTEGER,
	last_dequeue INTEGER,
	free         BLOB    NOT NULL DEFAULT '{}',
	capacity     BLOB    NOT NULL DEFAULT '{}',
	defaults     BLOB    NOT NULL DEFAULT '{}',
	tags         TEXT    NOT NULL DEFAULT '[]',
	queues       TEXT    NOT NULL DEFAULT '[]',
	concurency   INTEGER NOT NULL DEFAULT 0,
	drained      INTEGER NOT NULL DEFAULT 0,
	time_create  INTEGER NOT NULL
);
`,
	// 13, the web UI: a finished task's verdict (its result's status) is
	// kept on its row, written with time_finish, so that the chart of ends
	// by minute (FinishedPerMinute) reads one index, covering
	// (time_finish, state, status), and the task table filters by status
	// without parsing results. The rows of tasks done before are filled by
	// backfills[13] (Go: the status is read from the result's JSON, which
	// SQL could only do with a dialect's JSON functions).
	`
ALTER TABLE tasks ADD COLUMN status TEXT NOT NULL DEFAULT '';
CREATE INDEX tasks_finish ON tasks(time_finish, state, status) WHERE time_finish IS NOT NULL;
`,
	// 14, images through the server: an image's name (normalized, global,
	// its first pusher's), its manifest (JSON, api.ImageManifest) and its
	// blobs' references in image_files, which keep them alive as
	// type_files do a type's.
	`
CREATE TABLE images (
	id          INTEGER PRIMARY KEY,
	user_id     INTEGER NOT NULL REFERENCES users(id),
	name        TEXT    NOT NULL UNIQUE,
	manifest    BLOB    NOT NULL,
	size        INTEGER NOT NULL,
	time_create INTEGER NOT NULL
);
CREATE TABLE image_files (
	image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
	ref      TEXT    NOT NULL REFERENCES refs(key),
	PRIMARY KEY (image_id, ref)
);
CREATE INDEX image_files_ref ON image_files(ref);
`,
	// 15, workflows on replicas: a step's end marks its run as owed an
	// advance (advance_due, the end's time) in the end's own transaction;
	// the advance clears it in its. A server that dies between the two
	// (a killed replica) leaves the mark, and any replica's expiry pass
	// advances the run (DueAdvances).
	`
ALTER TABLE runs ADD COLUMN advance_due INTEGER;
CREATE INDEX runs_advance_due ON runs(advance_due) WHERE advance_due IS NOT NULL;
`,
}

// pgSteps are the steps whose SQLite text pgDDL cannot translate, as
// PostgreSQL runs them: SQLite's triggers are PostgreSQL trigger
// functions. Each keeps its step's meaning (same tables, same counts); a
// step added here is written in both dialects at once.
var pgSteps = map[int]string{
	3: `
CREATE TABLE task_counts (
	state BIGINT PRIMARY KEY,
	n     BIGINT NOT NULL
);
INSERT INTO task_counts (state, n)
	SELECT s, (SELECT COUNT(*) FROM tasks WHERE state = s) FROM (SELECT 0 AS s UNION ALL SELECT 1 UNION ALL SELECT 2) AS states;
CREATE FUNCTION tasks_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		UPDATE task_counts SET n = n - 1 WHERE state = OLD.state;
	END IF;
	IF TG_OP IN ('UPDATE', 'INSERT') THEN
		UPDATE task_counts SET n = n + 1 WHERE state = NEW.state;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION tasks_count();
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks FOR EACH ROW EXECUTE FUNCTION tasks_count();
CREATE TRIGGER tasks_count_update AFTER UPDATE OF state ON tasks
	FOR EACH ROW WHEN (OLD.state <> NEW.state) EXECUTE FUNCTION tasks_count();
CREATE TABLE blob_totals (
	id    BIGINT PRIMARY KEY CHECK (id = 0),
	count BIGINT NOT NULL,
	bytes BIGINT NOT NULL
);
INSERT INTO blob_totals (id, count, bytes) SELECT 0, COUNT(*), COALESCE(SUM(size), 0) FROM blobs;
CREATE FUNCTION blobs_total() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		UPDATE blob_totals SET count = count + 1, bytes = bytes + NEW.size WHERE id = 0;
	ELSE
		UPDATE blob_totals SET count = count - 1, bytes = bytes - OLD.size WHERE id = 0;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER blobs_total_insert AFTER INSERT ON blobs FOR EACH ROW EXECUTE FUNCTION blobs_total();
CREATE TRIGGER blobs_total_delete AFTER DELETE ON blobs FOR EACH ROW EXECUTE FUNCTION blobs_total();
`,
	9: `
CREATE TABLE queue_counts (
	queue TEXT   NOT NULL,
	state BIGINT NOT NULL,
	n     BIGINT NOT NULL,
	PRIMARY KEY (queue, state)
);
INSERT INTO queue_counts (queue, state, n)
	SELECT queue, state, COUNT(*) FROM tasks WHERE state IN (0, 1) GROUP BY queue, state;
CREATE FUNCTION tasks_queue_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.state IN (0, 1) THEN
		UPDATE queue_counts SET n = n - 1 WHERE queue = OLD.queue AND state = OLD.state;
	END IF;
	IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.state IN (0, 1) THEN
		INSERT INTO queue_counts (queue, state, n) VALUES (NEW.queue, NEW.state, 1)
			ON CONFLICT (queue, state) DO UPDATE SET n = queue_counts.n + 1;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER tasks_queue_count_insert AFTER INSERT ON tasks
	FOR EACH ROW WHEN (NEW.state IN (0, 1)) EXECUTE FUNCTION tasks_queue_count();
CREATE TRIGGER tasks_queue_count_delete AFTER DELETE ON tasks
	FOR EACH ROW WHEN (OLD.state IN (0, 1)) EXECUTE FUNCTION tasks_queue_count();
CREATE TRIGGER tasks_queue_count_update AFTER UPDATE OF state, queue ON tasks
	FOR EACH ROW WHEN (OLD.state <> NEW.state OR OLD.queue <> NEW.queue) EXECUTE FUNCTION tasks_queue_count();
`,
}

// stepSQL is step i's (1-based) text for this store's database.
func (s *Store) stepSQL(i int) string {
	if !s.postgres {
		return migrations[i-1]
	}
	if q, ok := pgSteps[i]; ok {
		return q
	}
	return pgDDL(migrations[i-1])
}

// backfills fill, after a step's SQL and in its transaction, what portable
// SQL cannot compute: step → the fill.
var backfills = map[int]func(ctx context.Context, tx *sql.Tx) error{
	13: fillTaskStatus,
}

// fillTaskStatus writes each done task's result status on its row.
func fillTaskStatus(ctx context.Context, tx *sql.Tx) error {
	type done struct {
		id   int64
		desc []byte
	}
	rows, err := queryRows(ctx, tx, "read results", func(rows *sql.Rows) (d done, err error) {
		err = rows.Scan(&d.id, &d.desc)
		return d, err
	}, `SELECT t.id, r.description FROM tasks t JOIN results r ON r.task_id = t.id WHERE t.state = ?`, stateDone)
	if err != nil {
		return err
	}
	for _, d := range rows {
		if _, err := tx.ExecContext(ctx, `UPDATE tasks SET status = ? WHERE id = ?`, string(ResultStatus(d.desc)), d.id); err != nil {
			return fmt.Errorf("unable to record a task's status: %w", err)
		}
	}
	return nil
}

// SchemaVersion is the number of migration steps this program knows.
func SchemaVersion() int { return len(migrations) }

func (s *Store) migrate(ctx context.Context) error {
	// In a write transaction: on PostgreSQL another server process may
	// be migrating the same database.
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("unable to create schema_version: %w", err)
	}
	for {
		done, err := s.step(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// step applies the next migration, if any, in one transaction.
func (s *Store) step(ctx context.Context) (done bool, err error) {
	err = s.write(ctx, func(tx *sql.Tx) error {
		var v int
		err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
		if err == sql.ErrNoRows {
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
				return fmt.Errorf("unable to initialise schema_version: %w", err)
			}
		} else if err != nil {
			return fmt.Errorf("unable to read schema version: %w", err)
		}
		if v > len(migrations) {
			return fmt.Errorf("unable to use database: its schema version %d is newer than this program's %d", v, len(migrations))
		}
		if v == len(migrations) {
			done = true
			return nil
		}
		if _, err := tx.ExecContext(ctx, s.stepSQL(v+1)); err != nil {
			return fmt.Errorf("unable to migrate database to version %d: %w", v+1, err)
		}
		if fill := backfills[v+1]; fill != nil {
			if err := fill(ctx, tx); err != nil {
				return fmt.Errorf("unable to migrate database to version %d: %w", v+1, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, v+1); err != nil {
			return fmt.Errorf("unable to record schema version %d: %w", v+1, err)
		}
		return nil
	})
	return done, err
}

// Version reads the schema version of the open database.
func (s *Store) Version(ctx context.Context) (int, error) {
	var v int
	err := s.r.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("unable to read schema version: %w", err)
	}
	return v, nil
}
