package main

// This file owns the client's task type commands: `type put|ls|get|rm`,
// and `--type NAME -p NAME=VALUE -f NAME=FILE` on `task put` and
// `execute`, which submit a task made from a type instead of a folder.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/cmd/internal/settings"
	"github.com/kolejka-go/kolejka/spec"
)

// typeCommand is `type` and its subcommands.
func typeCommand() *cli.Command {
	return &cli.Command{Name: "type", Usage: "task types: task folders with parameters", Subcommands: []*cli.Command{
		cmd("put", "NAME DIR", "put a type folder as a new version of type NAME, print the version", 2,
			[]cli.Flag{&cli.BoolFlag{Name: "public", Usage: "let every user use the type (all its versions)"}}, typePut),
		cmd("ls", "", "list the types you may use", 0,
			[]cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}}, typeList),
		cmdArgs("get", "NAME [DIR]", "download a type into a folder (no DIR: print its JSON)", 1, 2, nil, typeGet),
		cmd("rm", "NAME", "remove a type, every version", 1, nil, typeRemove),
	}}
}

// cmdArgs is cmd with between least and most positional arguments.
func cmdArgs(name, args, usage string, least, most int, flags []cli.Flag, run action) *cli.Command {
	c := cmd(name, args, usage, least, flags, run)
	c.Action = func(c *cli.Context) error {
		if err := cliexit.NoFlagsAfterArgs(c); err != nil {
			return err
		}
		if c.NArg() < least || c.NArg() > most {
			return cliexit.UsageError("need %s (usage: %s)", args, c.Command.UsageText)
		}
		return connected(c, run)
	}
	return c
}

func typePut(ctx context.Context, c *cli.Context, cl *client.Client) error {
	v, err := cl.TypePut(ctx, c.Args().Get(0), c.Args().Get(1), c.Bool("public"))
	if err != nil {
		return err
	}
	fmt.Println(v)
	return nil
}

func typeList(ctx context.Context, c *cli.Context, cl *client.Client) error {
	types, err := cl.Types(ctx)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		data, err := json.MarshalIndent(types, "", "  ")
		if err != nil {
			return err
		}
		fmt.Println(string(data))
		return nil
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tVERSION\tOWNER\tPUBLIC\tPARAMS")
	for _, t := range types {
		var params []string
		for _, name := range slices.Sorted(maps.Keys(t.Params)) {
			switch p := t.Params[name]; {
			case p.File:
				params = append(params, name+" (file)")
			case p.Default != nil:
				params = append(params, fmt.Sprintf("%s=%q", name, *p.Default))
			default:
				params = append(params, name+" (required)")
			}
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%v\t%s\n", t.Name, t.Version, t.Owner, t.Public, strings.Join(params, " "))
	}
	return w.Flush()
}

func typeGet(ctx context.Context, c *cli.Context, cl *client.Client) error {
	name := c.Args().Get(0)
	if c.NArg() == 2 {
		_, err := cl.TypeGet(ctx, name, c.Args().Get(1))
		return err
	}
	t, err := cl.Type(ctx, name, 0)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, t.Type, "", "  "); err != nil {
		return err
	}
	fmt.Println(out.String())
	return nil
}

func typeRemove(ctx context.Context, c *cli.Context, cl *client.Client) error {
	return cl.TypeRemove(ctx, c.Args().Get(0))
}

// typeFlags are the options that make `task put` and `execute` submit a
// task made from a type, and --queue, which both take with or without one.
func typeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "queue", Usage: "the `QUEUE` the task waits in (instead of its \"queue\" key, or the default queue)"},
		&cli.StringFlag{Name: "type", Usage: "submit a task made from type `NAME` (no TASK_DIR then)"},
		// Read (and refused) when the command runs, so that a malformed
		// one exits 2; a value is taken whole, commas and all (the app
		// sets DisableSliceFlagSeparator).
		&cli.StringSliceFlag{Name: "param", Aliases: []string{"p"}, Usage: "with --type: a value parameter, `NAME=VALUE` (repeat for more)"},
		&cli.StringSliceFlag{Name: "file", Aliases: []string{"f"}, Usage: "with --type: a file parameter, `NAME=PATH` of a local file (repeat for more)"},
	}
}

// typeOptions reads --param and --file: a usage error naming the option
// for one without "=", an empty name, or a name given twice.
func typeOptions(c *cli.Context) (values, files map[string]string, err error) {
	if values, err = nameValues(c, "param"); err != nil {
		return nil, nil, err
	}
	if files, err = nameValues(c, "file"); err != nil {
		return nil, nil, err
	}
	if c.String("type") == "" && (len(values) > 0 || len(files) > 0) {
		return nil, nil, cliexit.UsageError("--param and --file need --type NAME")
	}
	if q := c.String("queue"); q != "" {
		if err := spec.CheckName(q); err != nil {
			return nil, nil, cliexit.UsageError("--queue: %v", err)
		}
	}
	return values, files, nil
}

// nameValues reads the NAME=VALUE values of the repeated option flag: a
// usage error naming the option for one without "=", an empty name, or a
// name given twice.
func nameValues(c *cli.Context, flag string) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range c.StringSlice(flag) {
		name, value, found := strings.Cut(s, "=")
		if !found || name == "" {
			return nil, cliexit.UsageError("--%s %q: expected NAME=VALUE", flag, s)
		}
		if _, dup := out[name]; dup {
			return nil, cliexit.UsageError("--%s %s: parameter %q given more than once", flag, s, name)
		}
		out[name] = value
	}
	return out, nil
}

// withType gives command c (task put, execute) the type options: with
// --type, it takes typedArgs (typedN of them) instead of its own and runs
// typed; without, it runs as before.
func withType(c *cli.Command, typedN int, typedArgs string, typed action) *cli.Command {
	plain := c.Action
	c.Flags = append(c.Flags, typeFlags()...)
	c.UsageText += "\n   kolejka-client [global options] " + c.Name + " --type NAME [-p NAME=VALUE]… [-f NAME=FILE]… [options] " + typedArgs
	c.Action = func(ctx *cli.Context) error {
		if _, _, err := typeOptions(ctx); err != nil {
			return err
		}
		if ctx.String("type") == "" {
			return plain(ctx)
		}
		if err := cliexit.NeedArgs(ctx, typedN, strings.TrimSpace(typedArgs+" (with --type, no TASK_DIR)")); err != nil {
			return err
		}
		return connected(ctx, typed)
	}
	return c
}

// typeTask is the task the type options describe, with the limit options
// as caps.
func typeTask(c *cli.Context) (*client.TypeTask, error) {
	values, files, err := typeOptions(c)
	if err != nil {
		return nil, err
	}
	return &client.TypeTask{Type: c.String("type"), Params: values, Files: files, Queue: c.String("queue")}, nil
}

func typeTaskPut(ctx context.Context, c *cli.Context, cl *client.Client) error {
	tt, err := typeTask(c)
	if err != nil {
		return err
	}
	if tt.Caps, err = settings.LimitOptions(c); err != nil {
		return err
	}
	t, err := cl.TypeTaskPut(ctx, *tt)
	if err != nil {
		return err
	}
	fmt.Println(t.ID)
	return nil
}

func typeExecute(ctx context.Context, c *cli.Context, cl *client.Client) error {
	if c.Bool("consume") {
		return cliexit.UsageError("--consume removes a task folder: there is none with --type")
	}
	tt, err := typeTask(c)
	if err != nil {
		return err
	}
	var caps spec.Limits
	interval := 5 * time.Second
	if err := settings.Resolve(c, nil, executeSettings(&caps, &interval)); err != nil {
		return err
	}
	return runExecute(ctx, cl, "", c.Args().Get(0), client.ExecuteOptions{Caps: caps, Interval: interval, Type: tt})
}
