package daemon_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/observer/daemon"
	"github.com/kolejka-go/kolejka/spec"
)

// A session in-process: a process (here pid, a child the caller started
// and holds at a gate) runs in a session of its own under limits, and its
// final stats come back on close.
func ExampleRegistry() {
	h, err := cgroup.Host()
	if err != nil {
		fmt.Println(err)
		return
	}
	r, err := daemon.NewRegistry(h, daemon.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Shutdown(context.Background())

	pid := os.Getpid() // the caller: the session goes in its cgroup
	s, err := r.Open(pid)
	if err != nil {
		fmt.Println(err)
		return
	}
	memory, limit := int64(256<<20), 10*time.Second
	if err := r.SetLimits(pid, s.ID, s.Secret, spec.Limits{Memory: &memory, Time: &limit}); err != nil {
		fmt.Println(err)
	}
	// ... r.Attach(child, s.ID, s.Secret), release the child, wait ...
	stats, err := r.Close(pid, s.ID, s.Secret)
	fmt.Println(stats.CPU.Usage != nil, err)
}
