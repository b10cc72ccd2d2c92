package trigger_test

import (
	"fmt"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/trigger"
)

// A server checks a schedule's put, stores its first tick, and asks Due
// whenever it looks; after an outage the missed ticks fire once.
func Example() {
	s, err := trigger.ParseSchedule("*/15 * * * *", "Europe/Warsaw", "")
	if err != nil {
		fmt.Println(err)
		return
	}
	created := time.Date(2026, 5, 4, 10, 7, 0, 0, time.UTC)
	next := s.First(created)
	fmt.Println(s, "first at", next.Format(time.RFC3339))

	now := next.Add(2*time.Hour + 5*time.Minute) // the server was down
	if tick, following, due := s.Due(next, now); due {
		fmt.Println("fire once for", tick.Format(time.RFC3339), "then at", following.Format(time.RFC3339))
	}

	_, err = trigger.ParseSchedule("0 0 30 2 *", "", "")
	fmt.Println(err)

	// A result trigger whose task lands in the queue it watches fires itself.
	on, _ := trigger.CheckOn(api.TriggerResult, &api.TriggerOn{Queue: "build", Status: []string{"re", "tle"}})
	fmt.Println(on.Status, trigger.Matches(on, "build", "", "TLE"))
	fmt.Println(trigger.FindLoop([]trigger.Node{
		{Name: "retry", Kind: api.TriggerResult, On: on, Starts: []trigger.Work{{Queue: "build"}}},
	}))
	// Output:
	// cron "*/15 * * * *" in Europe/Warsaw first at 2026-05-04T10:15:00Z
	// fire once for 2026-05-04T12:15:00Z then at 2026-05-04T12:30:00Z
	// cron: "0 0 30 2 *" never fires
	// [RE TLE] true
	// [retry retry]
}
