package main

// This file owns the client's trigger commands (extension "triggers",
// docs/triggers.md): `trigger put|ls|show|pause|resume|rm|fire`, and what
// they share with the schedule commands (schedule.go): the target
// options, the listing and the description of one with its firings.

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/spec"
)

// targetFlags are the options naming what a schedule or trigger starts.
func targetFlags(queueUsage string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "task", Usage: "start the task folder `DIR` (its files are uploaded now)"},
		&cli.StringSliceFlag{Name: "type", Usage: "start a task made from type `NAME`"},
		&cli.StringSliceFlag{Name: "param", Aliases: []string{"p"}, Usage: "with a target --type: a value parameter, `NAME=VALUE` (repeat for more)"},
		&cli.StringSliceFlag{Name: "file", Aliases: []string{"f"}, Usage: "with a target --type: a file parameter, `NAME=PATH` of a local file, uploaded now (repeat for more)"},
		&cli.StringFlag{Name: "queue", Usage: queueUsage},
		&cli.StringFlag{Name: "workflow", Usage: "start a run of the workflow folder `DIR` (its files are uploaded now)"},
	}
}

// targetOptions are the target options as given.
type targetOptions struct {
	task, workflow string
	types          []string // --type, in the order given
	params, files  map[string]string
	queue          string
}

func readTarget(c *cli.Context) (targetOptions, error) {
	o := targetOptions{task: c.String("task"), workflow: c.String("workflow"), types: c.StringSlice("type"), queue: c.String("queue")}
	var err error
	if o.params, err = nameValues(c, "param"); err != nil {
		return o, err
	}
	if o.files, err = nameValues(c, "file"); err != nil {
		return o, err
	}
	if o.queue != "" {
		if err := spec.CheckName(o.queue); err != nil {
			return o, cliexit.UsageError("--queue: %v", err)
		}
	}
	return o, nil
}

// target is the target of o with typ the target's type (if any): exactly
// one of --task, a type and --workflow; -p and -f only with a type.
func (o targetOptions) target(typ string) (*client.Target, error) {
	var given []string
	for flag, v := range map[string]string{"--task": o.task, "--type": typ, "--workflow": o.workflow} {
		if v != "" {
			given = append(given, flag)
		}
	}
	slices.Sort(given)
	switch {
	case len(given) == 0:
		return nil, cliexit.UsageError("need a target: --task DIR, --type NAME or --workflow DIR")
	case len(given) > 1:
		return nil, cliexit.UsageError("%s: give one target", strings.Join(given, " and "))
	case typ == "" && (len(o.params) > 0 || len(o.files) > 0):
		return nil, cliexit.UsageError("--param and --file need a target --type NAME")
	}
	return &client.Target{Task: o.task, Type: typ, Params: o.params, Files: o.files, Workflow: o.workflow}, nil
}

// triggerCommand is `trigger` and its subcommands.
func triggerCommand() *cli.Command {
	jsonOnly := []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}}
	put := &cli.Command{
		Name:  "put",
		Usage: "put a trigger (new, or its next version), print the version",
		UsageText: "kolejka-client [global options] trigger put (--on-result [--queue Q] [--type T] [--status OK,RE,…] | --on-run [--status ok,failed,cancelled] | --on-request)\n" +
			"      (--task DIR | --type T2 [-p NAME=VALUE]… [-f NAME=FILE]… | --workflow DIR) NAME",
		Description: "--queue is always a filter (the queue of the tasks that fire it). --type is both a filter and a target:\n" +
			"given twice, the first is the filter and the second the target type; given once, it is the target\n" +
			"when there is no --task or --workflow, else the filter. --on-run filters only by --status; --on-request\n" +
			"takes no filters (it fires on POST /trigger/NAME/: kolejka-client trigger fire NAME).",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "on-result", Usage: "fire when one of your tasks ends with a result"},
			&cli.BoolFlag{Name: "on-run", Usage: "fire when one of your workflow runs ends"},
			&cli.BoolFlag{Name: "on-request", Usage: "fire on a webhook request (trigger fire)"},
			&cli.StringSliceFlag{Name: "status", Usage: "fire only on these statuses, `S1,S2,…` (results: OK, RE, TLE, …; runs: ok, failed, cancelled)"},
		}, targetFlags("with --on-result: fire only on tasks in queue `QUEUE`")...),
		Action: func(c *cli.Context) error {
			if err := cliexit.NeedArgs(c, 1, "NAME"); err != nil {
				return err
			}
			o, err := readTriggerOptions(c)
			if err != nil {
				return err
			}
			put, target, err := triggerPutOf(c.Args().Get(0), o)
			if err != nil {
				return err
			}
			return connected(c, func(ctx context.Context, c *cli.Context, cl *client.Client) error {
				v, err := cl.TriggerPut(ctx, put, target)
				if err != nil {
					return err
				}
				fmt.Println(v)
				return nil
			})
		},
	}
	fire := cmd("fire", "NAME", "fire a request trigger (its webhook) with parameters, print the key of what it started", 1, []cli.Flag{
		&cli.StringSliceFlag{Name: "param", Aliases: []string{"p"}, Usage: "a parameter of the request, `NAME=VALUE` (repeat for more)"},
		&cli.StringFlag{Name: "idempotency-key", Usage: "send `KEY` as the Idempotency-Key: a repeat with it starts nothing new"},
	}, triggerFire)
	run := fire.Action
	fire.Action = func(c *cli.Context) error {
		if _, err := nameValues(c, "param"); err != nil {
			return err
		}
		return run(c)
	}
	return &cli.Command{Name: "trigger", Usage: "triggers: work started when your tasks or runs end, or by a webhook", Subcommands: []*cli.Command{
		put,
		cmd("ls", "", "list your triggers", 0, jsonOnly, func(ctx context.Context, c *cli.Context, cl *client.Client) error {
			list, err := cl.Triggers(ctx)
			return printTriggers(list, err, false, c.Bool("json"))
		}),
		cmd("show", "NAME", "show a trigger and its recent firings", 1, jsonOnly, func(ctx context.Context, c *cli.Context, cl *client.Client) error {
			t, err := cl.Trigger(ctx, c.Args().Get(0))
			return showTrigger(t, err, c.Bool("json"))
		}),
		cmd("pause", "NAME", "stop a trigger firing until resumed", 1, nil, func(ctx context.Context, c *cli.Context, cl *client.Client) error {
			return printPaused(cl.TriggerPause(ctx, c.Args().Get(0)))
		}),
		cmd("resume", "NAME", "let a paused trigger fire again", 1, nil, func(ctx context.Context, c *cli.Context, cl *client.Client) error {
			return printPaused(cl.TriggerResume(ctx, c.Args().Get(0)))
		}),
		cmd("rm", "NAME", "remove a trigger (what it started stays)", 1, nil, func(ctx context.Context, c *cli.Context, cl *client.Client) error {
			return cl.TriggerRemove(ctx, c.Args().Get(0))
		}),
		fire,
	}}
}

// triggerOptions are trigger put's options as given.
type triggerOptions struct {
	onResult, onRun, onRequest bool
	status                     []string // --status, split at commas
	target                     targetOptions
}

func readTriggerOptions(c *cli.Context) (triggerOptions, error) {
	o := triggerOptions{onResult: c.Bool("on-result"), onRun: c.Bool("on-run"), onRequest: c.Bool("on-request")}
	for _, s := range c.StringSlice("status") {
		for _, st := range strings.Split(s, ",") {
			if st = strings.TrimSpace(st); st == "" {
				return o, cliexit.UsageError("--status %q: an empty status", s)
			}
			o.status = append(o.status, st)
		}
	}
	var err error
	o.target, err = readTarget(c)
	return o, err
}

// runStates are the states a run ends in, what --on-run --status takes.
var runStates = []string{"ok", "failed", "cancelled"}

// triggerPutOf is the put of trigger name that o describe, and its target
// to build: --type given twice is the filter, then the target type; once,
// the target type when there is no --task or --workflow, else the filter.
// --queue is always the filter.
func triggerPutOf(name string, o triggerOptions) (api.TriggerPut, *client.Target, error) {
	put := api.TriggerPut{Name: name}
	var kinds []string
	for flag, on := range map[string]bool{"--on-result": o.onResult, "--on-run": o.onRun, "--on-request": o.onRequest} {
		if on {
			kinds = append(kinds, flag)
		}
	}
	slices.Sort(kinds)
	switch len(kinds) {
	case 0:
		return put, nil, cliexit.UsageError("need one of --on-result, --on-run and --on-request")
	case 1:
	default:
		return put, nil, cliexit.UsageError("%s: give one", strings.Join(kinds, " and "))
	}
	t := o.target
	var filterType, targetType string
	switch len(t.types) {
	case 0:
	case 1:
		if t.task == "" && t.workflow == "" {
			targetType = t.types[0]
		} else {
			filterType = t.types[0]
		}
	case 2:
		filterType, targetType = t.types[0], t.types[1]
	default:
		return put, nil, cliexit.UsageError("--type given %d times: at most twice (the filter, then the target type)", len(t.types))
	}
	switch {
	case o.onResult:
		put.Kind = api.TriggerResult
		if filterType != "" {
			if err := spec.CheckName(filterType); err != nil {
				return put, nil, cliexit.UsageError("--type: %v", err)
			}
		}
		if filterType != "" || t.queue != "" || len(o.status) > 0 {
			put.On = &api.TriggerOn{Queue: t.queue, Type: filterType, Status: o.status}
		}
	case o.onRun:
		put.Kind = api.TriggerRun
		switch {
		case t.queue != "":
			return put, nil, cliexit.UsageError("--queue: --on-run filters only by --status")
		case filterType != "":
			return put, nil, cliexit.UsageError("--type %s: --on-run filters only by --status (a --type given twice, or with --task or --workflow, is a filter)", filterType)
		}
		for _, s := range o.status {
			if !slices.Contains(runStates, s) {
				return put, nil, cliexit.UsageError("--status %s: a run ends %s", s, strings.Join(runStates, ", "))
			}
		}
		if len(o.status) > 0 {
			put.On = &api.TriggerOn{Status: o.status}
		}
	default:
		put.Kind = api.TriggerRequest
		switch {
		case t.queue != "":
			return put, nil, cliexit.UsageError("--queue: --on-request takes no filters")
		case filterType != "":
			return put, nil, cliexit.UsageError("--type %s: --on-request takes no filters (a --type given twice, or with --task or --workflow, is a filter)", filterType)
		case len(o.status) > 0:
			return put, nil, cliexit.UsageError("--status: --on-request takes no filters")
		}
	}
	target, err := t.target(targetType)
	return put, target, err
}

func triggerFire(ctx context.Context, c *cli.Context, cl *client.Client) error {
	params, err := nameValues(c, "param")
	if err != nil {
		return err
	}
	out, err := cl.TriggerFire(ctx, c.Args().Get(0), params, c.String("idempotency-key"))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "started a %s\n", out.Started)
	fmt.Println(out.Key)
	return nil
}

// printTriggers prints a listing of schedules or triggers: a table, or
// JSON.
func printTriggers(list []client.TriggerInfo, err error, schedules, asJSON bool) error {
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(list)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	if schedules {
		fmt.Fprintln(w, "NAME\tSCHEDULE\tOVERLAP\tTARGET\tNEXT FIRE\tPAUSED")
	} else {
		fmt.Fprintln(w, "NAME\tON\tTARGET\tPAUSED")
	}
	for _, t := range list {
		if schedules {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%v\n", t.Name, when(&t), overlap(&t), t.Target, t.NextFire, t.Paused)
		} else {
			fmt.Fprintf(w, "%s\t%s\t%s\t%v\n", t.Name, on(&t), t.Target, t.Paused)
		}
	}
	return w.Flush()
}

// when is a schedule's ticks in words: `cron "0 3 * * *" (Europe/Warsaw)`
// or "every 30s".
func when(t *client.TriggerInfo) string {
	if t.Every != "" {
		return "every " + t.Every
	}
	s := fmt.Sprintf("cron %q", t.Cron)
	if t.TZ != "" {
		s += " (" + t.TZ + ")"
	}
	return s
}

// overlap is a schedule's overlap policy, the default named.
func overlap(t *client.TriggerInfo) string {
	if t.Overlap == "" {
		return api.OverlapAllow
	}
	return t.Overlap
}

// on is what a trigger fires on in words: "result queue=q type=t
// status=OK,RE", "run status=failed", "request".
func on(t *client.TriggerInfo) string {
	parts := []string{t.Kind}
	if t.On != nil {
		if t.On.Queue != "" {
			parts = append(parts, "queue="+t.On.Queue)
		}
		if t.On.Type != "" {
			parts = append(parts, "type="+t.On.Type)
		}
		if len(t.On.Status) > 0 {
			parts = append(parts, "status="+strings.Join(t.On.Status, ","))
		}
	}
	return strings.Join(parts, " ")
}

// showTrigger prints a schedule or trigger (formatTrigger), or its JSON.
func showTrigger(t *client.TriggerInfo, err error, asJSON bool) error {
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(t)
	}
	return formatTrigger(os.Stdout, t)
}

// formatTrigger writes a schedule or trigger to w: its fields, one a
// line, then its recent firings (newest first), a table.
func formatTrigger(w io.Writer, t *client.TriggerInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", name, value)
		}
	}
	field("name", t.Name)
	field("owner", t.Owner)
	field("version", fmt.Sprint(t.Version))
	if t.Kind == api.TriggerSchedule {
		field("schedule", when(t))
		field("overlap", overlap(t))
		field("next fire", t.NextFire)
	} else {
		field("on", on(t))
	}
	field("target", t.Target)
	field("paused", fmt.Sprint(t.Paused))
	field("created", t.TimeCreate)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(t.Fires) == 0 {
		_, err := fmt.Fprintln(w, "\nno firings yet")
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "TIME\tFIRE\tSTATE\tSTARTED\tKEY\tSTATUS\tREASON")
	for _, f := range t.Fires {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Time, f.Fire, f.State, f.Started, f.Key, f.Status, f.Reason)
	}
	return tw.Flush()
}

// printPaused prints whether a schedule or trigger is paused now.
func printPaused(t *client.TriggerInfo, err error) error {
	if err != nil {
		return err
	}
	if t.Paused {
		fmt.Println("paused")
	} else {
		fmt.Println("active")
	}
	return nil
}
