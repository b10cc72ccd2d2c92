package main

// This file owns the client's schedule commands (extension "triggers",
// docs/triggers.md): `schedule put|ls|show|pause|resume|rm`. The server
// starts a schedule's target at its ticks; these commands put it and
// look at it. The target options and the printing are trigger.go's.

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/spec"
)

// scheduleCommand is `schedule` and its subcommands.
func scheduleCommand() *cli.Command {
	jsonOnly := []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}}
	put := &cli.Command{
		Name:  "put",
		Usage: "put a schedule (new, or its next version), print the version",
		UsageText: "kolejka-client [global options] schedule put (--cron \"*/5 * * * *\" [--tz ZONE] | --every 30s) [--overlap allow|forbid|replace]\n" +
			"      (--task DIR | --type NAME [-p NAME=VALUE]… [-f NAME=FILE]… | --workflow DIR) [--queue QUEUE] NAME",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "cron", Usage: "fire at the ticks of cron `EXPR` (minute hour day month weekday, or @hourly, @daily, …)"},
			&cli.StringFlag{Name: "tz", Usage: "with --cron: read it in IANA time zone `ZONE` (default UTC)"},
			&cli.StringFlag{Name: "every", Usage: "fire every `TIME` (a Kolejka time: 30s, 5m; at least 1s)"},
			&cli.StringFlag{Name: "overlap", Usage: "`POLICY` of a tick while the previous tick's work goes on: allow (start anyway, the default), forbid (skip the tick) or replace (cancel it)"},
		}, targetFlags("with --task or --type: the `QUEUE` the tasks wait in")...),
		Action: func(c *cli.Context) error {
			if err := cliexit.NeedArgs(c, 1, "NAME"); err != nil {
				return err
			}
			target, err := readTarget(c)
			if err != nil {
				return err
			}
			put, tgt, err := schedulePutOf(c.Args().Get(0), scheduleOptions{cron: c.String("cron"), tz: c.String("tz"), every: c.String("every"), overlap: c.String("overlap"), target: target})
			if err != nil {
				return err
			}
			return connected(c, func(ctx context.Context, c *cli.Context, cl *client.Client) error {
				v, err := cl.SchedulePut(ctx, put, tgt)
				if err != nil {
					return err
				}
				fmt.Println(v)
				return nil
			})
		},
	}
	return &cli.Command{Name: "schedule", Usage: "schedules: work started at cron ticks or every fixed time", Subcommands: []*cli.Command{
		put,
		cmd("ls", "", "list your schedules", 0, jsonOnly, func(ctx context.Context, c *cli.Context, cl *client.Client) error {
			list, err := cl.Schedules(ctx)
			return printTriggers(list, err, true, c.Bool("json"))
		}),
		cmd("show", "NAME", "show a schedule and its recent firings", 1, jsonOnly, func(ctx context.Context, c *cli.Context, cl *client.Client) error {
			t, err := cl.Schedule(ctx, c.Args().Get(0))
			return showTrigger(t, err, c.Bool("json"))
		}),
		cmd("pause", "NAME", "stop a schedule firing until resumed", 1, nil, func(ctx context.Context, c *cli.Context, cl *client.Client) error {
			return printPaused(cl.SchedulePause(ctx, c.Args().Get(0)))
		}),
		cmd("resume", "NAME", "let a paused schedule fire again (from its next tick)", 1, nil, func(ctx context.Context, c *cli.Context, cl *client.Client) error {
			return printPaused(cl.ScheduleResume(ctx, c.Args().Get(0)))
		}),
		cmd("rm", "NAME", "remove a schedule (what it started stays)", 1, nil, func(ctx context.Context, c *cli.Context, cl *client.Client) error {
			return cl.ScheduleRemove(ctx, c.Args().Get(0))
		}),
	}}
}

// scheduleOptions are schedule put's options as given.
type scheduleOptions struct {
	cron, tz, every, overlap string
	target                   targetOptions
}

// overlaps are the values of --overlap.
var overlaps = []string{api.OverlapAllow, api.OverlapForbid, api.OverlapReplace}

// schedulePutOf is the put of schedule name that o describe, and its
// target to build: one of --cron and --every, --tz only with --cron, one
// target; --queue is the target's (a task's or a type's).
func schedulePutOf(name string, o scheduleOptions) (api.TriggerPut, *client.Target, error) {
	put := api.TriggerPut{Kind: api.TriggerSchedule, Name: name, Cron: o.cron, Every: o.every, TZ: o.tz, Overlap: o.overlap}
	switch {
	case o.cron != "" && o.every != "":
		return put, nil, cliexit.UsageError("--cron and --every: give one")
	case o.cron == "" && o.every == "":
		return put, nil, cliexit.UsageError("need --cron EXPR or --every TIME")
	case o.tz != "" && o.cron == "":
		return put, nil, cliexit.UsageError("--tz: only with --cron")
	}
	if o.every != "" {
		d, err := spec.ParseTime(o.every)
		if err != nil {
			return put, nil, cliexit.UsageError("--every: %v", err)
		}
		if d < time.Second {
			return put, nil, cliexit.UsageError("--every %s: at least 1s", o.every)
		}
	}
	if o.overlap != "" && !slices.Contains(overlaps, o.overlap) {
		return put, nil, cliexit.UsageError("--overlap %s: expected allow, forbid or replace", o.overlap)
	}
	t := o.target
	if len(t.types) > 1 {
		return put, nil, cliexit.UsageError("--type given %d times: a schedule's target is one type", len(t.types))
	}
	typ := ""
	if len(t.types) == 1 {
		typ = t.types[0]
	}
	target, err := t.target(typ)
	if err != nil {
		return put, nil, err
	}
	if t.queue != "" && t.workflow != "" {
		return put, nil, cliexit.UsageError("--queue: a workflow's steps name their queues")
	}
	target.Queue = t.queue
	return put, target, nil
}
