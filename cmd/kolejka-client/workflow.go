package main

// This file owns the client's workflow commands (extension "workflows",
// docs/workflows.md): `workflow put|show|ls|get|cancel|retry|execute`.
// The server runs the workflow; these commands put it, look at it and
// fetch its results.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/client"
)

// workflowPoll is how often `workflow get` and `execute` read a run.
const workflowPoll = time.Second

// workflowCommand is `workflow` and its subcommands.
func workflowCommand() *cli.Command {
	jsonOnly := []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}}
	return &cli.Command{Name: "workflow", Usage: "workflows: graphs of tasks the server runs", Subcommands: []*cli.Command{
		cmd("put", "DIR", "put a workflow folder (kolejka_workflow.json and its task folders) as a run, print its key", 1, nil, workflowPut),
		cmd("show", "KEY", "show a run: every step and item with state, status, task key, node, times", 1, jsonOnly, workflowShow),
		cmd("ls", "", "list your runs", 0, jsonOnly, workflowList),
		cmd("get", "KEY OUT", "wait for a run's end, write OUT/STEP/[ITEM/] results and OUT/kolejka_workflow_result.json", 2, nil, workflowGet),
		cmd("cancel", "KEY", "cancel a run and its tasks", 1, nil, workflowCancel),
		cmd("retry", "KEY", "run again what failed, was cancelled or skipped, keeping the OK steps", 1, nil, workflowRetry),
		cmd("execute", "DIR OUT", "put a workflow, wait for its end, write its results (Ctrl-C leaves the run going)", 2, nil, workflowExecute),
	}}
}

func workflowPut(ctx context.Context, c *cli.Context, cl *client.Client) error {
	key, err := cl.WorkflowPut(ctx, c.Args().Get(0))
	if err != nil {
		return err
	}
	fmt.Println(key)
	return nil
}

func workflowShow(ctx context.Context, c *cli.Context, cl *client.Client) error {
	info, err := cl.WorkflowShow(ctx, c.Args().Get(0))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(info)
	}
	return printRun(info)
}

// printRun shows a run as text: its state, then each step with what it
// runs after (the graph) and each instance.
func printRun(info *client.WorkflowInfo) error {
	fmt.Printf("run %s (%s): %s\n", info.Key, info.Owner, info.State)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "STEP\tSTATE\tSTATUS\tTASK\tNODE\tAFTER\tREASON")
	for _, st := range info.Steps {
		var after []string
		after = append(after, st.After...)
		for _, a := range st.AfterAny {
			after = append(after, a+" (any)")
		}
		for _, a := range st.AfterFailed {
			after = append(after, a+" (failed)")
		}
		if len(st.Instances) == 0 {
			fmt.Fprintf(w, "%s\t%s\t\t\t\t%s\t%s\n", st.Name, st.State, strings.Join(after, ","), st.Reason)
		}
		for _, in := range st.Instances {
			name := st.Name
			if in.Item != "" {
				name += "/" + in.Item
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, in.State, in.Status, in.TaskKey, in.Node, strings.Join(after, ","), in.Reason)
		}
	}
	return w.Flush()
}

func workflowList(ctx context.Context, c *cli.Context, cl *client.Client) error {
	runs, err := cl.Workflows(ctx)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(runs)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KEY\tOWNER\tSTATE\tCREATED\tFINISHED")
	for _, r := range runs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Key, r.Owner, r.State, r.TimeCreate, r.TimeFinish)
	}
	return w.Flush()
}

func workflowGet(ctx context.Context, c *cli.Context, cl *client.Client) error {
	info, err := cl.WorkflowGet(ctx, c.Args().Get(0), c.Args().Get(1), workflowPoll)
	if err != nil {
		return err
	}
	fmt.Println(info.State)
	return nil
}

func workflowCancel(ctx context.Context, c *cli.Context, cl *client.Client) error {
	info, err := cl.WorkflowCancel(ctx, c.Args().Get(0))
	if err != nil {
		return err
	}
	fmt.Println(info.State)
	return nil
}

func workflowRetry(ctx context.Context, c *cli.Context, cl *client.Client) error {
	info, err := cl.WorkflowRetry(ctx, c.Args().Get(0))
	if err != nil {
		return err
	}
	fmt.Println(info.State)
	return nil
}

// workflowExecute puts, waits and gets; an interrupt leaves the run going
// on the server and says its key.
func workflowExecute(ctx context.Context, c *cli.Context, cl *client.Client) error {
	key, err := cl.WorkflowPut(ctx, c.Args().Get(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "run %s\n", key)
	if _, err := cl.WorkflowWatch(ctx, key, workflowPoll, progress(os.Stderr)); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	info, err := cl.WorkflowGet(ctx, key, c.Args().Get(1), workflowPoll)
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "interrupted: run %s goes on (kolejka-client workflow get %s OUT)\n", key, key)
	}
	if err != nil {
		return err
	}
	fmt.Println(info.State)
	return nil
}

// progress prints a run's progress to w whenever it changes: a line of its
// instances counted by state ("3 ok, 1 submitted, 6 waiting"), and a line
// for each instance that ended not OK, once.
func progress(w io.Writer) func(*client.WorkflowInfo) {
	var last string
	told := map[string]bool{}
	return func(info *client.WorkflowInfo) {
		counts := map[string]int{}
		for _, st := range info.Steps {
			for _, in := range st.Instances {
				counts[in.State]++
				name := st.Name
				if in.Item != "" {
					name += "[" + in.Item + "]"
				}
				if (in.State == "failed" || in.State == "skipped" || in.State == "cancelled") && !told[name] {
					told[name] = true
					fmt.Fprintf(w, "  %s %s %s\n", name, in.State, in.Status)
				}
			}
		}
		var parts []string
		for _, state := range []string{"ok", "submitted", "ready", "waiting", "failed", "skipped", "cancelled"} {
			if counts[state] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", counts[state], state))
			}
		}
		line := fmt.Sprintf("run %s %s: %s", info.Key, info.State, strings.Join(parts, ", "))
		if line != last {
			last = line
			fmt.Fprintln(w, line)
		}
	}
}
