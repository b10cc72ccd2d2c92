package cgroup_test

import (
	"fmt"
	"log"
	"os/exec"

	"github.com/kolejka-go/kolejka/internal/cgroup"
)

// A task's life: a group with limits, a process moved in before it runs the
// task, its usage, and teardown whatever happened. (Compiled, not run: it
// needs root.)
func Example() {
	h, err := cgroup.Host()
	if err != nil {
		log.Fatal(err)
	}
	memory, pids := int64(256<<20), int64(64)
	r := &cgroup.Resources{Memory: &memory, Pids: &pids, CPUs: "0"}
	if err := h.Check("/kolejka/example/task", r); err != nil {
		log.Fatal(err) // e.g. a limit this host cannot enforce: never ignored
	}
	g, err := h.Create("/kolejka/example/task", r)
	if err != nil {
		log.Fatal(err)
	}
	defer g.Delete() // kills leftovers, removes sub-groups

	// Real callers gate the child until it is in the group (see the
	// worker); a shell reading a line stands in for that here.
	cmd := exec.Command("/bin/sh", "-c", "read x; exec /bin/true")
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	if err := g.Add(cmd.Process.Pid); err != nil {
		log.Fatal(err)
	}
	stdin.Write([]byte("go\n"))
	cmd.Wait()

	u, err := g.Usage()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("cpu %v, memory peak %d B, OOM kills %d, pids peak %d\n", u.CPU, u.MemoryPeak, u.OOMKills, u.PidsPeak)
}
