package server

import (
	"testing"

	"github.com/kolejka-go/kolejka/api"
)

// BenchmarkNoteDequeue: what noting a dequeue adds to it when the node
// says the same as before (an idle node polling): a comparison in memory
// and, every 5 s, a write of its row.
func BenchmarkNoteDequeue(b *testing.B) {
	req, err := api.ParseDequeue([]byte(`{"concurency": 2, "limits": {"cpus": 8, "memory": "16G", "time": "10m"}, "tags": ["gpu:nvidia"],
		"capacity": {"cpus": 8, "memory": "32G"}, "defaults": {"cpus": 1, "memory": "1G"}, "queues": ["judge", "default"]}`))
	if err != nil {
		b.Fatal(err)
	}
	s, err := Open(Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.AddUser(b.Context(), "node", "pw", Processors); err != nil {
		b.Fatal(err)
	}
	u, err := s.db.UserByName(b.Context(), "node")
	if err != nil {
		b.Fatal(err)
	}
	s.noteDequeue(b.Context(), u.ID, req)()
	b.ResetTimer()
	for range b.N {
		s.noteDequeue(b.Context(), u.ID, req)()
	}
}
