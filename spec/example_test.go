package spec_test

import (
	"fmt"

	"github.com/kolejka-go/kolejka/spec"
)

func ExampleParseSize() {
	for _, s := range []string{"64M", "1.5G", "64MB", "1e3k", "2.5", "64MiB"} {
		n, err := spec.ParseSize(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(s, "=", n, "=", spec.FormatSize(n))
	}
	// Output:
	// 64M = 67108864 = 67108864b
	// 1.5G = 1610612736 = 1610612736b
	// 64MB = 67108864 = 67108864b
	// 1e3k = 1024000 = 1024000b
	// 2.5 = 2 = 2b
	// "64MiB" is not a size: unknown unit "i" (use b, k, m, g, t, p)
}

func ExampleParseTime() {
	for _, s := range []string{"10", "500m", "2M", "1.5H", "1h"} {
		d, err := spec.ParseTime(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(s, "=", d, "=", spec.FormatTime(d))
	}
	// Output:
	// 10 = 10s = 10.0s
	// 500m = 500ms = 0.5s
	// 2M = 2m0s = 120.0s
	// 1.5H = 1h30m0s = 5400.0s
	// "1h" is not a time: unknown unit "h" (did you mean "H"? use W, D, H, M, s, m, µ, n; units are case-sensitive)
}

// A task's limits capped by the client's configuration and the worker's: the
// smallest value wins, absent values never do, network false wins.
func ExampleLimits_Merge() {
	var task, client, worker spec.Limits
	_ = spec.ParseLimit(&task, "memory", "1G")
	_ = spec.ParseLimit(&task, "network", "true")
	_ = spec.ParseLimit(&client, "memory", "512M")
	_ = spec.ParseLimit(&client, "time", "10s")
	_ = spec.ParseLimit(&worker, "network", "false")
	_ = spec.ParseLimit(&worker, "gpus", "1")
	fmt.Println(task.Merge(client, worker))
	// Output:
	// memory=512M time=10.0s network=false gpus=1
}

// A node with 4 cores, 8G and no network left; the server's defaults give a
// task that omits memory 1G.
func ExampleFit() {
	var free, defaults, task spec.Limits
	_ = spec.ParseLimit(&free, "cpus", "4")
	_ = spec.ParseLimit(&free, "memory", "8G")
	_ = spec.ParseLimit(&free, "network", "false")
	_ = spec.ParseLimit(&defaults, "memory", "1G")
	_ = spec.ParseLimit(&task, "cpus", "2")

	eff, ok := spec.Fit(task, free, defaults)
	fmt.Println(ok, eff)
	free.Consume(eff)
	fmt.Println("left:", free)

	_ = spec.ParseLimit(&task, "cpus", "3")
	_, ok = spec.Fit(task, free, defaults)
	fmt.Println("3 more cores fit:", ok)
	// Output:
	// true cpus=2 memory=1G network=false
	// left: cpus=2 memory=7G network=false
	// 3 more cores fit: false
}

func ExampleParseTask() {
	task, err := spec.ParseTask([]byte(`{"image": "alpine", "args": ["echo", 42],
		"limits": {"memory": "64M", "time": 2.5}, "files": {"in.txt": null}}`), "kolejka_task.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	data, _ := task.Encode()
	fmt.Println(string(data))

	_, err = spec.ParseTask([]byte(`{"image": "alpine", "limits": {"memmory": "64M"}}`), "kolejka_task.json")
	fmt.Println(err)
	// Output:
	// {
	//   "args": [
	//     "echo",
	//     "42"
	//   ],
	//   "collect": [],
	//   "environment": {},
	//   "files": {
	//     "in.txt": {
	//       "path": "in.txt"
	//     }
	//   },
	//   "image": "alpine",
	//   "limits": {
	//     "memory": "67108864b",
	//     "time": "2.5s"
	//   },
	//   "requires": []
	// }
	// kolejka_task.json: limits.memmory: unknown key (did you mean "memory"?)
}
