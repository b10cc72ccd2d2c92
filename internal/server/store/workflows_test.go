package store

import (
	"errors"
	"testing"
	"time"
)

// AdvanceRun is all or nothing: a failing fn leaves neither the tasks it
// inserted nor the run's new state; a committed one shows both, the
// tasks carrying their run and step, and the ends of the run's tasks are
// read back (another run's are not).
func TestAdvanceRunAllOrNothing(t *testing.T) {
	e := newLifecycleEnv(t)
	id, err := e.s.InsertRun(e.ctx, NewRun{Key: "r1", Owner: e.alice.ID, State: RunRunning, Run: []byte(`{"v":0}`), Steps: []byte(`{}`), Now: e.now}, nil, false)
	if err != nil || id == 0 {
		t.Fatal(id, err)
	}
	if _, err := e.s.InsertRun(e.ctx, NewRun{Key: "r1", Owner: e.alice.ID, State: RunRunning, Run: []byte(`{}`), Steps: []byte(`{}`), Now: e.now}, nil, false); !errors.Is(err, ErrExists) {
		t.Fatalf("second r1: %v", err)
	}
	// Another user's reference among the steps' files: refused, nothing recorded.
	if _, err := e.s.InsertRun(e.ctx, NewRun{Key: "r2", Owner: e.alice.ID, State: RunRunning, Run: []byte(`{}`), Steps: []byte(`{}`), Now: e.now},
		map[string]string{`tasks["a"].files["x"]`: "nosuchref"}, false); err == nil {
		t.Fatal("unknown reference accepted")
	}
	if _, err := e.s.Run(e.ctx, "r2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("r2 recorded: %v", err)
	}
	task := func(key string) NewTask {
		return NewTask{Key: key, Owner: e.alice.ID, Description: []byte(`{}`), Limits: []byte(`{}`), Now: e.now}
	}
	boom := errors.New("boom")
	_, err = e.s.AdvanceRun(e.ctx, "r1", e.now, func(a *RunTx) error {
		if err := a.Insert(task("t1"), "a", 0, nil); err != nil {
			return err
		}
		if err := a.Save([]byte(`{"v":1}`), nil, RunRunning); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if _, err := e.s.Task(e.ctx, "t1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("t1 after a failed advance: %v", err)
	}
	if r, _ := e.s.Run(e.ctx, "r1"); string(r.Run) != `{"v":0}` {
		t.Fatalf("run after a failed advance: %s", r.Run)
	}
	queued, err := e.s.AdvanceRun(e.ctx, "r1", e.now, func(a *RunTx) error {
		if err := a.Insert(task("t1"), "a", 0, nil); err != nil {
			return err
		}
		if err := a.Insert(task("t2"), "b", 1, nil); err != nil {
			return err
		}
		return a.Save([]byte(`{"v":1}`), nil, RunRunning)
	})
	if err != nil || !queued {
		t.Fatal(queued, err)
	}
	e.insert(t, "other", e.alice, "", "")
	if got := e.dequeue(t, e.node); len(got) != 3 {
		t.Fatalf("dequeued %v", got)
	}
	if err := e.post(e.node, "t1", "OK"); err != nil {
		t.Fatal(err)
	}
	if err := e.post(e.node, "other", "OK"); err != nil {
		t.Fatal(err)
	}
	if run, err := e.s.RunOfTask(e.ctx, "t1"); err != nil || run != "r1" {
		t.Fatalf("run of t1: %q %v", run, err)
	}
	if run, err := e.s.RunOfTask(e.ctx, "other"); err != nil || run != "" {
		t.Fatalf("run of other: %q %v", run, err)
	}
	_, err = e.s.AdvanceRun(e.ctx, "r1", e.now, func(a *RunTx) error {
		ends, err := a.Ends([]string{"t1", "t2", "other"})
		if err != nil {
			return err
		}
		// t2 runs; "other" is no task of this run: as if deleted, it ended.
		if len(ends) != 2 || ends["t1"].State != Done || string(ends["t1"].Result) != `{"status": "OK"}` || ends["other"].State != Cancelled {
			t.Errorf("ends %+v", ends)
		}
		if err := a.Cancel("t2"); err != nil {
			return err
		}
		if err := a.Cancel("t1"); err != nil { // finished: left as it is
			return err
		}
		return a.Save([]byte(`{"v":2}`), nil, "cancelled")
	})
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := e.s.RunTasks(e.ctx, id)
	if err != nil || len(tasks) != 2 || tasks[0].Step != "a" || tasks[1].Step != "b" || tasks[1].Item != 1 ||
		tasks[0].State != Done || tasks[1].State != Cancelled {
		t.Fatalf("run tasks %+v %v", tasks, err)
	}
	r, err := e.s.Run(e.ctx, "r1")
	if err != nil || r.State != "cancelled" || r.TimeFinish.IsZero() {
		t.Fatalf("run %+v %v", r, err)
	}
	if keys, err := e.s.RunningRuns(e.ctx); err != nil || len(keys) != 0 {
		t.Fatalf("running %v %v", keys, err)
	}
}

// undoStep10 takes a database back before schema step 10, for the tests of
// earlier steps' migrations.
func undoStep10() []string {
	return append(undoStep11(), `DROP INDEX tasks_run`, `ALTER TABLE tasks DROP COLUMN run_id`, `ALTER TABLE tasks DROP COLUMN step`,
		`ALTER TABLE tasks DROP COLUMN item_index`, `DROP TABLE runs`)
}

// undoStep11 takes a database of step 11 back to step 10's tables (the
// caller sets schema_version).
func undoStep11() []string {
	return append(undoStep12(), `DROP TABLE trigger_events`, `DROP TABLE fires`, `DROP TABLE trigger_files`, `DROP TABLE triggers`,
		`ALTER TABLE tokens DROP COLUMN scope`)
}

// undoStep13 takes a database of step 13 back to step 12's tables.
func undoStep13() []string {
	return append(undoStep14(), `DROP INDEX tasks_finish`, `ALTER TABLE tasks DROP COLUMN status`)
}

// undoStep14 takes a database of step 14 back to step 13's tables.
func undoStep14() []string {
	return append(undoStep15(), `DROP TABLE image_files`, `DROP TABLE images`)
}

// undoStep15 takes a database of step 15 back to step 14's tables.
func undoStep15() []string {
	return []string{`DROP INDEX runs_advance_due`, `ALTER TABLE runs DROP COLUMN advance_due`}
}

// A step's end marks its run owed an advance in the end's own transaction,
// and the advance clears the mark in its, unless it says it must go on:
// a server that dies between the two leaves the run to DueAdvances.
func TestRunOwedAnAdvance(t *testing.T) {
	e := newLifecycleEnv(t)
	if _, err := e.s.InsertRun(e.ctx, NewRun{Key: "r1", Owner: e.alice.ID, State: RunRunning, Run: []byte(`{}`), Steps: []byte(`{}`), Now: e.now}, nil, false); err != nil {
		t.Fatal(err)
	}
	task := func(key string) NewTask {
		return NewTask{Key: key, Owner: e.alice.ID, Description: []byte(`{}`), Limits: []byte(`{}`), Now: e.now}
	}
	advance := func(owed bool) {
		t.Helper()
		if _, err := e.s.AdvanceRun(e.ctx, "r1", e.now, func(a *RunTx) error {
			if owed {
				a.StillOwed()
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	due := func() []string {
		t.Helper()
		keys, err := e.s.DueAdvances(e.ctx, e.now.Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	if _, err := e.s.AdvanceRun(e.ctx, "r1", e.now, func(a *RunTx) error {
		if err := a.Insert(task("t1"), "a", 0, nil); err != nil {
			return err
		}
		return a.Insert(task("t2"), "a", 1, nil)
	}); err != nil {
		t.Fatal(err)
	}
	e.insert(t, "other", e.alice, "", "")
	if got := e.dequeue(t, e.node); len(got) != 3 {
		t.Fatalf("dequeued %v", got)
	}
	if err := e.post(e.node, "other", "OK"); err != nil {
		t.Fatal(err)
	}
	if d := due(); len(d) != 0 {
		t.Fatalf("owed %v before any step ended", d)
	}
	if err := e.post(e.node, "t1", "OK"); err != nil {
		t.Fatal(err)
	}
	if d := due(); len(d) != 1 || d[0] != "r1" {
		t.Fatalf("owed %v after a step's end, want [r1]", d)
	}
	if d, err := e.s.DueAdvances(e.ctx, e.now); err != nil || len(d) != 0 {
		t.Fatalf("owed %v %v within the grace", d, err)
	}
	advance(true) // an advance that must go on keeps the mark
	if d := due(); len(d) != 1 {
		t.Fatalf("owed %v after an unfinished advance, want [r1]", d)
	}
	advance(false)
	if d := due(); len(d) != 0 {
		t.Fatalf("owed %v after the advance", d)
	}
}
