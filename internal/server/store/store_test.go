package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/spec"
)

func open(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(dbAddr(t, path), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.sqlite3")
	s := open(t, path)
	ctx := context.Background()
	if v, err := s.Version(ctx); err != nil || v != SchemaVersion() {
		t.Fatalf("version %d %v, want %d", v, err, SchemaVersion())
	}
	if _, err := s.CreateUser(ctx, "u", "h", RoleClient, time.Now()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Reopening applies nothing and keeps the data.
	s = open(t, path)
	if u, err := s.UserByName(ctx, "u"); err != nil || u.Roles != RoleClient {
		t.Fatalf("after reopen: %+v %v", u, err)
	}
	// A database from a newer program is refused, untouched.
	s.w.Exec(`UPDATE schema_version SET version = 99`)
	s.Close()
	if _, err := Open(dbAddr(t, path), Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer schema: %v", err)
	}
	if _, err := Open(dbAddr(t, path), Options{Synchronous: "OFF"}); err == nil {
		t.Error("synchronous OFF accepted")
	}
}

func TestPathWithQuestionMark(t *testing.T) {
	sqliteOnly(t, "a file path")
	dir := filepath.Join(t.TempDir(), "odd?dir#x%20")
	path := filepath.Join(dir, "db.sqlite3")
	if err := mkdir(dir); err != nil {
		t.Fatal(err)
	}
	s := open(t, path)
	defer s.Close()
	if _, err := s.CreateUser(context.Background(), "u", "h", RoleClient, time.Now()); err != nil {
		t.Fatal(err)
	}
	if exists(path) == false {
		t.Errorf("database not at %s", path)
	}
}

// Concurrent dequeues through the store never hand a task out twice.
func TestDequeueExclusiveAssignment(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite3"))
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	owner, _ := s.CreateUser(ctx, "o", "h", RoleClient, now)
	var nodes []User
	for _, n := range []string{"a", "b", "c", "d"} {
		u, _ := s.CreateUser(ctx, n, "h", RoleProcessor, now)
		nodes = append(nodes, u)
	}
	for i := range 200 {
		if _, err := s.InsertTask(ctx, NewTask{Key: string(rune('A'+i%26)) + strings.Repeat("x", i/26+1) + "k", Owner: owner.ID,
			Description: []byte(`{}`), Limits: []byte(`{}`), Now: now}); err != nil {
			t.Fatal(err)
		}
	}
	seen := dequeueAll(t, []*Store{s}, nodes, 16, 3)
	if len(seen) != 200 {
		t.Errorf("%d tasks handed out", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s handed out %d times", k, n)
		}
	}
	if _, err := s.Task(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown task: %v", err)
	}
}

// dequeueAll has workers goroutines, each a node of nodes in turn and on a
// store of stores in turn, dequeue concurrency tasks at a time until the
// queue is empty, and says how often each task was handed out.
func dequeueAll(t *testing.T, stores []*Store, nodes []User, workers, concurrency int) map[string]int {
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[i%len(stores)]
			for {
				r, err := s.Dequeue(context.Background(), DequeueRequest{Node: nodes[i%len(nodes)].ID, Concurency: concurrency, Now: time.Now(),
					Lease: func([]spec.Limits, bool) time.Duration { return time.Hour }, Expiry: Expiry{MaxAttempts: 3},
					Queues: defaultPlan})
				if err != nil {
					t.Error(err)
					return
				}
				if len(r.Tasks) == 0 {
					return
				}
				mu.Lock()
				for _, a := range r.Tasks {
					seen[a.Key]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return seen
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o750) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// The counts kept by triggers agree with counting, through every kind of
// change a task and a blob go through.
func TestCountsKeptByTriggers(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite3"))
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	o, _ := s.CreateUser(ctx, "o", "h", RoleClient, now)
	n, _ := s.CreateUser(ctx, "n", "h", RoleProcessor, now)
	for i := range 10 {
		s.InsertTask(ctx, NewTask{Key: fmt.Sprintf("k%d", i), Owner: o.ID, Description: []byte(`{}`), Limits: []byte(`{}`), Now: now})
		s.AddReference(ctx, fmt.Sprintf("%064d", i%4), int64(100+i%4), fmt.Sprintf("r%d", i), o.ID, now)
	}
	lease := func([]spec.Limits, bool) time.Duration { return time.Millisecond }
	s.Dequeue(ctx, DequeueRequest{Node: n.ID, Concurency: 4, Now: now, Lease: lease, Expiry: Expiry{MaxAttempts: 2}, Queues: defaultPlan})
	s.PostResult(ctx, NewResult{TaskKey: "k0", Poster: n.ID, Description: []byte(`{}`),
		Fingerprint: func(map[string]string) (string, error) { return "x", nil }, Now: now})
	s.ExpireLeases(ctx, now.Add(time.Second), Expiry{MaxAttempts: 2}) // k1..k3 back to the queue
	s.DeleteTask(ctx, "k5")
	s.DeleteReference(ctx, "r1")
	s.DeleteReference(ctx, "r5")
	s.DeleteReference(ctx, "r9")
	s.DeleteBlobIfUnreferenced(ctx, fmt.Sprintf("%064d", 1))
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	count := func(q string) (n int64) {
		s.r.QueryRow(q).Scan(&n)
		return n
	}
	if st.Unassigned != count(`SELECT COUNT(*) FROM tasks WHERE state = 0`) || st.Assigned != count(`SELECT COUNT(*) FROM tasks WHERE state = 1`) ||
		st.Resolved != count(`SELECT COUNT(*) FROM tasks WHERE state = 2`) || st.Total != 9 || st.Resolved != 1 || st.Unassigned != 8 {
		t.Errorf("stats %+v disagree with the table", st)
	}
	blobs, bytes, _ := s.BlobTotals(ctx)
	if blobs != count(`SELECT COUNT(*) FROM blobs`) || bytes != count(`SELECT SUM(size) FROM blobs`) || blobs != 3 {
		t.Errorf("blob totals %d/%d disagree with the table", blobs, bytes)
	}
}

// Tokens made before expiry existed (schema 5) keep working after the
// migration: each gets an id from its digest, no prefix, no expiry.
func TestTokenMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.sqlite3")
	ctx := context.Background()
	s := open(t, path)
	// Back to schema 5 with the token table of then.
	for _, q := range append(undoStep10(),
		`DROP TRIGGER tasks_queue_count_insert`, `DROP TRIGGER tasks_queue_count_delete`, `DROP TRIGGER tasks_queue_count_update`,
		`DROP TABLE queue_counts`,
		`DROP TABLE type_files`, `DROP TABLE types`, `DROP TABLE queues`, `DELETE FROM task_counts WHERE state = 3`,
		`DROP INDEX tasks_queue_wait`, `DROP INDEX tasks_owner`,
		`ALTER TABLE tasks DROP COLUMN queue`, `ALTER TABLE tasks DROP COLUMN type_name`,
		`ALTER TABLE tasks DROP COLUMN origin`, `ALTER TABLE tasks DROP COLUMN time_finish`,
		`DROP INDEX tokens_id`, `DROP INDEX tokens_user`, `DROP INDEX tokens_expire`, `DROP INDEX refs_create`,
		`ALTER TABLE tokens DROP COLUMN id`, `ALTER TABLE tokens DROP COLUMN prefix`,
		`ALTER TABLE tokens DROP COLUMN time_expire`, `ALTER TABLE tokens DROP COLUMN time_used`,
		`UPDATE schema_version SET version = 5`,
	) {
		if _, err := s.w.Exec(undoSQL(q)); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	u, err := s.CreateUser(ctx, "node", "h", RoleProcessor, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	digest := strings.Repeat("ab", 32)
	if _, err := s.w.Exec(`INSERT INTO tokens (hash, user_id, time_create) VALUES (?, ?, ?)`, digest, u.ID, us(time.Now())); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	got, tok, err := s.TokenUser(ctx, digest, time.Now().Add(100*365*24*time.Hour))
	if err != nil || got.Name != "node" || tok.ID != digest[:TokenIDLength] || !tok.TimeExpire.IsZero() {
		t.Fatalf("an old token after migration: %+v %+v %v", got, tok, err)
	}
	if list, err := s.Tokens(ctx, "node"); err != nil || len(list) != 1 || list[0].ID != digest[:TokenIDLength] || list[0].Prefix != "" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if n, err := s.RevokeTokens(ctx, "node", []string{digest[:TokenIDLength]}); err != nil || n != 1 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if _, _, err := s.TokenUser(ctx, digest, time.Now()); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoked token: %v", err)
	}
}

// A new token whose digest, or only its id (the digest's start), is taken
// is refused with ErrExists, and the caller makes another; anything else
// would be an internal error.
func TestTokenClash(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite3"))
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	if _, err := s.CreateUser(ctx, "node", "h", RoleProcessor, now); err != nil {
		t.Fatal(err)
	}
	digest := strings.Repeat("ab", 32)
	if _, err := s.CreateToken(ctx, "node", digest, "kt_", "", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{digest, digest[:TokenIDLength] + strings.Repeat("cd", 26)} {
		if _, err := s.CreateToken(ctx, "node", d, "kt_", "", now, now.Add(time.Hour)); !errors.Is(err, ErrExists) {
			t.Errorf("digest %s…: %v, want ErrExists", d[:TokenIDLength+4], err)
		}
	}
}
