package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
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
