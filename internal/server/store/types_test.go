package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/spec"
)

// typesFixture is a store with clients alice and bob, manager boss,
// processor node, and a reference of each client's.
type typesFixture struct {
	s                      *Store
	alice, bob, boss, node User
	aliceRef, bobRef       string
	now                    time.Time
}

func newTypesFixture(t *testing.T) *typesFixture {
	t.Helper()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite3"))
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	f := &typesFixture{s: s, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for _, u := range []struct {
		dst  *User
		name string
		role Role
	}{{&f.alice, "alice", RoleClient}, {&f.bob, "bob", RoleClient}, {&f.boss, "boss", RoleManager}, {&f.node, "node", RoleProcessor}} {
		var err error
		if *u.dst, err = s.CreateUser(ctx, u.name, "h", u.role, f.now); err != nil {
			t.Fatal(err)
		}
	}
	f.aliceRef, f.bobRef = "aliceref0000000000000000000000aa", "bobref00000000000000000000000bbb"
	if _, err := s.AddReference(ctx, strings.Repeat("a", 64), 5, f.aliceRef, f.alice.ID, f.now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddReference(ctx, strings.Repeat("b", 64), 5, f.bobRef, f.bob.ID, f.now); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *typesFixture) put(t *testing.T, owner User, name string, public bool, files map[string]string) (int, error) {
	t.Helper()
	return f.s.PutType(context.Background(), NewType{Owner: owner.ID, Name: name, Public: public,
		Description: []byte(`{"image": "i", "args": ["x"]}`), Files: files, Now: f.now})
}

func (f *typesFixture) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := f.s.r.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPutTypeVersionsAndOwnership(t *testing.T) {
	f := newTypesFixture(t)
	ctx := context.Background()
	for want := 1; want <= 3; want++ {
		v, err := f.put(t, f.alice, "compile", false, map[string]string{"run.sh": f.aliceRef})
		if err != nil || v != want {
			t.Fatalf("put %d: version %d, %v", want, v, err)
		}
	}
	// The name is alice's: bob's put is refused naming her, and stores nothing.
	types, files := f.count(t, "types"), f.count(t, "type_files")
	_, err := f.put(t, f.bob, "compile", true, nil)
	var owned *TypeOwnedError
	if !errors.As(err, &owned) || owned.Owner != "alice" || !strings.Contains(err.Error(), `"compile" belongs to user alice`) {
		t.Fatalf("bob's put of alice's name: %v", err)
	}
	// A reference that is unknown or another user's: FileErrors, nothing stored.
	_, err = f.put(t, f.alice, "compile", false, map[string]string{"a": "0123456789abcdef0123456789abcdef", "b": f.bobRef})
	var fe FileErrors
	if !errors.As(err, &fe) || len(fe) != 2 || !strings.Contains(err.Error(), `files["a"].reference`) ||
		!strings.Contains(err.Error(), "is unknown") || !strings.Contains(err.Error(), "belongs to another user") {
		t.Fatalf("bad references: %v", err)
	}
	if f.count(t, "types") != types || f.count(t, "type_files") != files {
		t.Error("a refused put stored something")
	}
	// Type: the latest, or a version, with its files.
	row, err := f.s.Type(ctx, "compile", 0)
	if err != nil || row.Version != 3 || row.OwnerName != "alice" || row.Files["run.sh"] != f.aliceRef {
		t.Fatalf("latest: %+v %v", row, err)
	}
	if row, err := f.s.Type(ctx, "compile", 2); err != nil || row.Version != 2 {
		t.Fatalf("version 2: %+v %v", row, err)
	}
	if _, err := f.s.Type(ctx, "compile", 9); !errors.Is(err, ErrNotFound) {
		t.Fatalf("version 9: %v", err)
	}
	// Removing removes every version and its files' links.
	if err := f.s.RemoveType(ctx, "compile"); err != nil {
		t.Fatal(err)
	}
	if f.count(t, "types") != 0 || f.count(t, "type_files") != 0 {
		t.Error("versions left after RemoveType")
	}
	if err := f.s.RemoveType(ctx, "compile"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
	// The name is free again: bob takes it.
	if v, err := f.put(t, f.bob, "compile", false, nil); err != nil || v != 1 {
		t.Errorf("bob after removal: %d %v", v, err)
	}
}

func TestTypesVisibility(t *testing.T) {
	f := newTypesFixture(t)
	ctx := context.Background()
	f.put(t, f.alice, "a-private", false, nil)
	f.put(t, f.alice, "a-public", false, nil)
	f.put(t, f.alice, "a-public", true, nil) // sharing is the last put's, for every version
	f.put(t, f.bob, "b-private", false, nil)
	names := func(u User, all bool) string {
		rows, err := f.s.Types(ctx, u.ID, all)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rows {
			out = append(out, r.Name+"@"+string(rune('0'+r.Version)))
		}
		return strings.Join(out, " ")
	}
	if got := names(f.alice, false); got != "a-private@1 a-public@2" {
		t.Errorf("alice sees %q", got)
	}
	if got := names(f.bob, false); got != "a-public@2 b-private@1" {
		t.Errorf("bob sees %q", got)
	}
	if got := names(f.boss, true); got != "a-private@1 a-public@2 b-private@1" {
		t.Errorf("a manager sees %q", got)
	}
	if row, err := f.s.Type(ctx, "a-public", 1); err != nil || !row.Public {
		t.Errorf("version 1 of a type made public: %+v %v", row, err)
	}
}

// A type's files are kept as a task's: their references cannot be deleted
// while the type uses them, and a task made from the type may use them
// though they are its owner's (only when the type is public or the
// submitter's).
func TestTypeFilesKeptAndGranted(t *testing.T) {
	f := newTypesFixture(t)
	ctx := context.Background()
	if _, err := f.put(t, f.alice, "shared", true, map[string]string{"run.sh": f.aliceRef}); err != nil {
		t.Fatal(err)
	}
	_, err := f.s.DeleteReference(ctx, f.aliceRef)
	var inUse *InUseError
	if !errors.As(err, &inUse) || !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "task type shared (version 1)") {
		t.Fatalf("deleting a type's file: %v", err)
	}
	if err := f.s.DeleteBlob(ctx, strings.Repeat("a", 64)); !errors.As(err, &inUse) {
		t.Fatalf("deleting a type's blob: %v", err)
	}
	if stale, err := f.s.SweepUploads(ctx, f.now.Add(time.Hour), 100); err != nil || len(stale) != 0 {
		t.Fatalf("the sweep took %v (%v)", stale, err)
	}

	task := func(key string, typeVersion int) error {
		_, err := f.s.InsertTask(ctx, NewTask{Key: key, Owner: f.bob.ID, Description: []byte(`{}`), Limits: []byte(`{}`),
			Files: map[string]string{"run.sh": f.aliceRef}, TypeName: "shared", TypeVersion: typeVersion,
			Origin: []byte(`{"type": "shared", "version": 1, "pass_env": ["HOME"]}`), Now: f.now})
		return err
	}
	if err := task("plain", 0); err == nil || !strings.Contains(err.Error(), "belongs to another user") {
		t.Fatalf("bob using alice's reference outside a type: %v", err)
	}
	if err := task("typed", 1); err != nil {
		t.Fatalf("bob's task from alice's public type: %v", err)
	}
	if _, err := f.put(t, f.alice, "shared", false, map[string]string{"run.sh": f.aliceRef}); err != nil {
		t.Fatal(err)
	}
	if err := task("private", 1); err == nil || !strings.Contains(err.Error(), "belongs to another user") {
		t.Fatalf("bob's task from alice's type made private: %v", err)
	}
	// The origin goes to the node with the task.
	r, err := f.s.Dequeue(ctx, DequeueRequest{Node: f.node.ID, Concurency: 5, Now: f.now,
		Lease: func([]spec.Limits, bool) time.Duration { return time.Hour }, Expiry: Expiry{MaxAttempts: 3}, Queues: defaultPlan})
	if err != nil || len(r.Tasks) != 1 || !strings.Contains(string(r.Tasks[0].Origin), `"pass_env": ["HOME"]`) {
		t.Fatalf("dequeue: %+v %v", r.Tasks, err)
	}
	// Once the type is gone (and the task using the file), the file can go.
	if err := f.s.RemoveType(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	if err := f.s.DeleteTask(ctx, "typed"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.DeleteReference(ctx, f.aliceRef); err != nil {
		t.Errorf("deleting the reference after the type: %v", err)
	}
}
