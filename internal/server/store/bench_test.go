package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkInsertTask is one task submission's transaction (key index,
// queue, lease and assignee indexes, autoincrement), against the floor
// measured in the same run: a bare one-row commit on the same database.
func BenchmarkInsertTask(b *testing.B) {
	b.Run("baseline-bare-commit", func(b *testing.B) {
		s := open(b, filepath.Join(b.TempDir(), "db.sqlite3"))
		defer s.Close()
		ctx := context.Background()
		if _, err := s.w.Exec(`CREATE TABLE x (a INTEGER)`); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := range b.N {
			if err := s.write(ctx, func(tx *sql.Tx) error {
				_, err := tx.Exec(`INSERT INTO x VALUES (?)`, i)
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("insert-task", func(b *testing.B) {
		s := open(b, filepath.Join(b.TempDir(), "db.sqlite3"))
		defer s.Close()
		ctx := context.Background()
		u, _ := s.CreateUser(ctx, "o", "h", RoleClient, time.Now())
		desc := []byte(`{"args": ["true"], "collect": [], "environment": {}, "files": {}, "id": "x", "image": "busybox", "limits": {"cpus": 1, "memory": "67108864b", "time": "10.0s"}, "requires": []}`)
		b.ResetTimer()
		for i := range b.N {
			if _, err := s.InsertTask(ctx, NewTask{Key: fmt.Sprintf("%032x", i*7919), Owner: u.ID, Description: desc,
				Limits: []byte(`{"cpus": 1}`), Now: time.Now()}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkConcurrentSubmits: eight goroutines submitting tasks at once,
// with each write its own transaction ("alone") and group committed
// ("grouped"), on SQLite with synchronous=FULL (a commit is an fsync) and
// NORMAL (no fsync: what grouping saves is the transactions' own cost),
// on the disk that holds the test's temporary folder. The database's
// backend is the run's (KOLEJKA_TEST_DATABASE); the figure is per task.
func BenchmarkConcurrentSubmits(b *testing.B) {
	desc := []byte(`{"args": ["true"], "collect": [], "environment": {}, "files": {}, "id": "x", "image": "busybox", "limits": {"cpus": 1, "memory": "67108864b", "time": "10.0s"}, "requires": []}`)
	for _, sync := range []string{SyncFull, SyncNormal} {
		for _, group := range []bool{false, true} {
			name := map[bool]string{false: "alone", true: "grouped"}[group]
			b.Run(fmt.Sprintf("%s/%s", sync, name), func(b *testing.B) {
				s, err := Open(dbAddr(b, filepath.Join(b.TempDir(), "db.sqlite3")), Options{Synchronous: sync})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				s.group = group
				ctx := context.Background()
				u, _ := s.CreateUser(ctx, "o", "h", RoleClient, time.Now())
				b.ResetTimer()
				b.SetParallelism(4) // 8 goroutines on this machine's 2 cores
				var next atomicCounter
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := next.add()
						if _, err := s.InsertTask(ctx, NewTask{Key: fmt.Sprintf("%032x", i*7919), Owner: u.ID, Description: desc,
							Limits: []byte(`{"cpus": 1}`), Now: time.Now()}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// atomicCounter hands out 1, 2, 3…
type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add() int64 { return c.n.Add(1) }
