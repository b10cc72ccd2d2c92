package workflow_test

import (
	"fmt"

	"github.com/kolejka-go/kolejka/internal/workflow"
	"github.com/kolejka-go/kolejka/spec"
)

// A server parses the workflow once, then advances its run as tasks end:
// it submits what Ready lists, applies each end with Ended, and persists
// the run (as JSON) after every call.
func Example() {
	w, err := workflow.Parse([]byte(`{"tasks": {
		"compile": {"task": "compile"},
		"test":    {"task": "test", "after": ["compile"], "items": ["1", "2"], "inputs": {"prog": "compile:a.out"},
		            "retry": {"attempts": 2, "on": ["TLE"]}},
		"report":  {"task": "report", "after_any": ["test"], "inputs": {"results": "test:out.txt"}}}}`), "kolejka_workflow.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	run := workflow.NewRun(w)
	n := 0
	submit := func() {
		for _, id := range run.Ready() {
			n++
			key := fmt.Sprintf("task%d", n)
			_ = run.Submitted(id, key)
			fmt.Println("submit", id, "as", key)
		}
	}
	submit()
	_, _ = run.Ended("task1", spec.StatusOK)
	submit()
	_, _ = run.Ended("task2", spec.StatusOK)
	_, _ = run.Ended("task3", spec.StatusTLE) // retried
	submit()
	_, _ = run.Ended("task4", spec.StatusRE) // not retried on RE
	submit()
	inputs, _ := run.Inputs(workflow.ID{Step: "report", Index: 0})
	for _, b := range inputs {
		fmt.Printf("bind %s ← %s of %s\n", b.Dest, b.Path, b.TaskKey)
	}
	_, _ = run.Ended("task5", spec.StatusOK)
	fmt.Println("run", run.State())

	// A bad workflow is refused naming the step and field; nothing runs.
	_, err = workflow.Parse([]byte(`{"tasks": {"a": {"task": "a", "after": ["b"]}, "b": {"task": "b", "after": ["a"]}}}`), "kolejka_workflow.json")
	fmt.Println(err)
	// Output:
	// submit compile[0] as task1
	// submit test[0] as task2
	// submit test[1] as task3
	// submit test[1] as task4
	// submit report[0] as task5
	// bind results/1 ← out.txt of task2
	// bind results/2 ← out.txt of task4
	// run failed
	// kolejka_workflow.json: tasks["a"]: a cycle: a → b → a
}
