package observer_test

import (
	"fmt"

	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// The worker's side: the task's cgroup becomes its top session, so that
// judges inside can open sessions below it through the socket.
func ExampleClient_Adopt() {
	c, err := observer.Dial(observer.DefaultSocket)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseIdleConnections()
	depth := int64(3)
	s, err := c.Adopt(12345, "/kolejka/run/task", spec.Limits{CgroupDepth: &depth})
	if err != nil {
		fmt.Println(err)
		return
	}
	stats, err := c.Close(s.ID, s.Secret) // after the task ended
	fmt.Println(stats.Time, err)
}
