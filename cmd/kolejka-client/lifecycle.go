package main

// This file owns the task lifecycle's commands: `task ls`, `task show`,
// `task cancel`, `task clone`, and `result get --wait`. They need a server
// that announces the lifecycle's extensions (docs/lifecycle.md).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/spec"
)

// maxListLimit is the server's cap on a page of `task ls`.
const maxListLimit = 1000

func taskLsCommand() *cli.Command {
	c := cmd("ls", "", "list your tasks, newest first (a page at a time)", 0, []cli.Flag{
		&cli.StringFlag{Name: "state", Usage: "only tasks in this state: " + strings.Join(api.States, ", ")},
		&cli.StringFlag{Name: "queue", Usage: "only tasks of this queue"},
		&cli.StringFlag{Name: "type", Usage: "only tasks made from this task type"},
		&cli.BoolFlag{Name: "all", Usage: "every user's tasks (inspectors and managers)"},
		&cli.IntFlag{Name: "limit", Value: 50, Usage: fmt.Sprintf("tasks per page (1 to %d)", maxListLimit)},
		&cli.StringFlag{Name: "before", Usage: "the page after this task (as the previous page says)"},
		&cli.BoolFlag{Name: "json", Usage: "print JSON: {\"tasks\": [...], \"next\": KEY}"},
	}, taskLs)
	c.Before = checkLsFlags
	c.UsageText = "kolejka-client [global options] task ls [--state S] [--queue Q] [--type T] [--all] [--limit N] [--before KEY] [--json]"
	return c
}

// checkLsFlags refuses bad options before anything is sent.
func checkLsFlags(c *cli.Context) error {
	if s := c.String("state"); s != "" && !slices.Contains(api.States, s) {
		return cliexit.UsageError("--state: %q is not one of %s", s, strings.Join(api.States, ", "))
	}
	if n := c.Int("limit"); n < 1 || n > maxListLimit {
		return cliexit.UsageError("--limit: %d is not from 1 to %d", n, maxListLimit)
	}
	for _, name := range []string{"queue", "type"} {
		if v := c.String(name); v != "" {
			if err := spec.CheckName(v); err != nil {
				return cliexit.UsageError("--%s: %v", name, err)
			}
		}
	}
	return nil
}

func taskLs(ctx context.Context, c *cli.Context, cl *client.Client) error {
	list, err := cl.Tasks(ctx, client.TaskFilter{
		State: c.String("state"), Queue: c.String("queue"), Type: c.String("type"),
		All: c.Bool("all"), Before: c.String("before"), Limit: c.Int("limit"),
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(struct {
			Tasks []api.TaskSummary `json:"tasks"`
			Next  string            `json:"next"`
		}{list.Tasks, list.Next})
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 8, 2, ' ', 0)
	header := "KEY\tSTATE\tQUEUE\tTYPE\tNODE\tSUBMITTED"
	if c.Bool("all") {
		header += "\tOWNER"
	}
	fmt.Fprintln(tw, header)
	for _, t := range list.Tasks {
		line := strings.Join([]string{t.Key, t.State, t.Queue, dash(t.Type), dash(t.Node), t.TimeCreate}, "\t")
		if c.Bool("all") {
			line += "\t" + t.Owner
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if list.Next != "" {
		fmt.Fprintf(os.Stderr, "more: kolejka-client task ls --before %s (with the same options)\n", list.Next)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// shown is `task show --json`: the task's lifecycle under the names the
// command documents (docs/lifecycle.md).
type shown struct {
	Key       string          `json:"key"`
	State     string          `json:"state"`
	Queue     string          `json:"queue"`
	Type      string          `json:"type"`
	Node      string          `json:"node"`
	Attempts  []api.Attempt   `json:"attempts"`
	Status    string          `json:"status"` // the result's verdict, "" without one
	Submitted string          `json:"submitted"`
	Started   string          `json:"started"`
	Finished  string          `json:"finished"`
	Origin    json.RawMessage `json:"origin,omitempty"`
	Task      json.RawMessage `json:"task"`
}

func jsonFlag() []cli.Flag {
	return []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON (key, state, queue, type, node, attempts, status, times, task)"}}
}

func taskShow(ctx context.Context, c *cli.Context, cl *client.Client) error {
	key := c.Args().Get(0)
	d, err := cl.TaskDetail(ctx, key)
	if err != nil {
		return err
	}
	s := shown{Key: key, State: d.State, Queue: d.Queue, Type: d.Type, Node: d.Node, Attempts: d.Assignments, Status: d.ResultStatus,
		Submitted: d.TimeCreate, Started: d.TimeStart, Finished: d.TimeFinish, Origin: d.Origin, Task: d.Task}
	if s.Attempts == nil {
		s.Attempts = []api.Attempt{}
	}
	if c.Bool("json") {
		return printJSON(s)
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 8, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"key", s.Key}, {"state", s.State}, {"queue", s.Queue}, {"type", dash(s.Type)}, {"node", dash(s.Node)},
		{"status", dash(s.Status)}, {"submitted", s.Submitted}, {"started", dash(s.Started)}, {"finished", dash(s.Finished)},
		{"attempts", fmt.Sprint(len(s.Attempts))},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	for _, a := range s.Attempts {
		fmt.Fprintf(tw, "  #%d\t%s at %s\n", a.Attempt, a.Node, a.TimeAssign)
	}
	if len(s.Origin) > 0 {
		fmt.Fprintf(tw, "origin:\t%s\n", s.Origin)
	}
	return tw.Flush()
}

func taskCancelCommand() *cli.Command {
	return &cli.Command{
		Name:      "cancel",
		Usage:     "cancel tasks: a queued one never runs, a running one is killed on its node",
		UsageText: "kolejka-client [global options] task cancel KEY…",
		Action: func(c *cli.Context) error {
			if err := cliexit.NoFlagsAfterArgs(c); err != nil {
				return err
			}
			if c.NArg() == 0 {
				return cliexit.UsageError("need KEY… (usage: %s)", c.Command.UsageText)
			}
			return connected(c, taskCancel)
		},
	}
}

func taskCancel(ctx context.Context, c *cli.Context, cl *client.Client) error {
	keys := c.Args().Slice()
	was, err := cl.Cancel(ctx, keys...)
	for i, k := range keys {
		switch was[i] {
		case "":
		case api.StateCancelled:
			fmt.Printf("%s was already cancelled\n", k)
		default:
			fmt.Printf("%s cancelled (it was %s)\n", k, was[i])
		}
	}
	return err
}

func taskClone(ctx context.Context, c *cli.Context, cl *client.Client) error {
	t, err := cl.Clone(ctx, c.Args().Get(0))
	if err != nil {
		return err
	}
	fmt.Println(t.ID)
	return nil
}

// resultWaitFlags are `result get`'s: how long to wait for the result.
func resultWaitFlags() []cli.Flag {
	return []cli.Flag{&cli.Float64Flag{Name: "wait", Usage: "seconds to wait for the result if it is not there yet (0: do not wait)"}}
}

// resultWait reads --wait.
func resultWait(c *cli.Context) (time.Duration, error) {
	w := c.Float64("wait")
	if w < 0 || w > 1e9 {
		return 0, cliexit.UsageError("--wait: %v is not a number of seconds from 0", w)
	}
	return time.Duration(w * float64(time.Second)), nil
}

// resultGetWaiting is `result get`: the result of task key into dir,
// waiting up to wait for it, in long polls of at most the server's
// max_wait each. A cancelled task ends the wait at once (ErrCancelled).
func resultGetWaiting(ctx context.Context, cl *client.Client, key, dir string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		_, err := cl.ResultGet(ctx, key, dir, time.Until(deadline))
		if err == nil || !errors.Is(err, client.ErrNotFound) || !time.Now().Before(deadline) {
			return err
		}
		if !cl.Settings().Has(api.ExtLongPoll) {
			// A server that cannot hold the request: ask again a second later.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(min(time.Second, time.Until(deadline))):
			}
		}
	}
}
