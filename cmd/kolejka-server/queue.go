package main

// This file owns `kolejka-server queue`: adding, listing, pausing,
// resuming and removing named queues (docs/queues.md) in the database the
// running server uses; the server sees a change at its next dequeue.
//
//	kolejka-server queue add NAME [--private] [--submitters U1,U2] [--nodes N1,N2] [--priority N]
//	kolejka-server queue ls [--json]
//	kolejka-server queue pause NAME
//	kolejka-server queue resume NAME
//	kolejka-server queue rm NAME
//
// Bad input (a name that is not one, an unknown queue, a user who does not
// exist or lacks the role: submitters must be clients, nodes processors)
// exits 2 naming the option, and changes nothing.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/internal/queue"
	"github.com/kolejka-go/kolejka/internal/server"
)

func queueCommand() *cli.Command {
	return &cli.Command{
		Name:  "queue",
		Usage: "manage named queues: add, ls, pause, resume, rm",
		UsageText: "kolejka-server queue add NAME [--private] [--submitters U1,U2] [--nodes N1,N2] [--priority N]\n" +
			"kolejka-server queue ls [--json]\n" +
			"kolejka-server queue pause|resume|rm NAME",
		Subcommands: []*cli.Command{queueAddCommand(), queueLsCommand(),
			queueNameCommand("pause", "pause a queue: it keeps its tasks and hands none out", func(c *cli.Context, srv *server.Server, name string) error {
				if err := srv.SetQueuePaused(c.Context, name, true); err != nil {
					return queueErr(err, name)
				}
				fmt.Fprintf(c.App.Writer, "Queue '%s' paused.\n", name)
				return nil
			}),
			queueNameCommand("resume", "resume a paused queue", func(c *cli.Context, srv *server.Server, name string) error {
				if err := srv.SetQueuePaused(c.Context, name, false); err != nil {
					return queueErr(err, name)
				}
				fmt.Fprintf(c.App.Writer, "Queue '%s' resumed.\n", name)
				return nil
			}),
			queueNameCommand("rm", "remove a queue that holds no queued or running task (never the default queue)", func(c *cli.Context, srv *server.Server, name string) error {
				if err := srv.RemoveQueue(c.Context, name); err != nil {
					return queueErr(err, name)
				}
				fmt.Fprintf(c.App.Writer, "Queue '%s' removed.\n", name)
				return nil
			}),
		},
	}
}

// queueErr gives the admin's mistakes about queue name (unknown, still in
// use, the default queue, taken) exit code 2.
func queueErr(err error, name string) error {
	if errors.Is(err, server.ErrNotFound) {
		return cliexit.UsageError("NAME: no queue named %q", name)
	}
	return cliexit.UsageIf(err, server.ErrInUse, server.ErrInvalid, server.ErrExists)
}

func queueAddCommand() *cli.Command {
	usage := "kolejka-server queue add NAME [--private] [--submitters U1,U2] [--nodes N1,N2] [--priority N]"
	return &cli.Command{
		Name:  "add",
		Usage: "add a queue (private: only its submitters submit to it, only its nodes take from it)",
		UsageText: usage + "\n\n" +
			"   --private         only --submitters may submit and only --nodes take its tasks\n" +
			"   --submitters L    comma list of the client users who may submit (private queues)\n" +
			"   --nodes L         comma list of the processor users who take its tasks (private queues)\n" +
			"   --priority N      a node serving several queues takes from the higher first (default 0)",
		// Options go before or after NAME, as the issue writes them;
		// parsed below.
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			q, err := parseQueueAdd(c.Args().Slice())
			if errors.Is(err, flag.ErrHelp) {
				return cli.ShowSubcommandHelp(c)
			}
			if err != nil {
				return cliexit.UsageError("%v (usage: %s)", err, usage)
			}
			// The rules first: bad input touches no database.
			if err := q.Check(); err != nil {
				return optionErr(err)
			}
			return withAdmin(c, func(srv *server.Server) error {
				if err := srv.AddQueue(c.Context, q); err != nil {
					var fe *queue.FieldError
					if errors.As(err, &fe) {
						return optionErr(fe)
					}
					return queueErr(err, q.Name)
				}
				fmt.Fprintf(c.App.Writer, "Queue '%s' added (%s, priority %d).\n", q.Name, visibility(q.Private), q.Priority)
				return nil
			})
		},
	}
}

// parseQueueAdd reads queue add's arguments: NAME and the options, in any
// order.
func parseQueueAdd(args []string) (queue.Queue, error) {
	fs := flag.NewFlagSet("queue add", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	private := fs.Bool("private", false, "")
	submitters := fs.String("submitters", "", "")
	nodes := fs.String("nodes", "", "")
	priority := fs.Int("priority", 0, "")
	var names []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return queue.Queue{}, err
			}
			return queue.Queue{}, fmt.Errorf("%s", strings.Replace(err.Error(), " -", " --", 1))
		}
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(names) != 1 {
		return queue.Queue{}, fmt.Errorf("need NAME, once")
	}
	q := queue.Queue{Name: names[0], Private: *private, Priority: *priority}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "submitters":
			q.Submitters = userList(*submitters)
		case "nodes":
			q.Nodes = userList(*nodes)
		}
	})
	return q, nil
}

// userList is a comma list option's names (spaces around them dropped);
// an empty item stays, for the rules to name.
func userList(list string) []string {
	var out []string
	for _, u := range strings.Split(list, ",") {
		out = append(out, strings.TrimSpace(u))
	}
	return out
}

// optionErr is a rule's complaint about a field as a usage error naming
// the option (or NAME); other errors pass unchanged.
func optionErr(err error) error {
	var fe *queue.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	opt := "--" + fe.Field
	if fe.Field == "name" {
		opt = "NAME"
	}
	return cliexit.UsageError("%s: %s", opt, fe.Problem)
}

func visibility(private bool) string {
	if private {
		return "private"
	}
	return "public"
}

// queueJSON is one queue of `queue ls --json`.
type queueJSON struct {
	Name             string   `json:"name"`
	Priority         int      `json:"priority"`
	Private          bool     `json:"private"`
	Paused           bool     `json:"paused"`
	Submitters       []string `json:"submitters"`
	Nodes            []string `json:"nodes"`
	Depth            int64    `json:"depth"`
	Running          int64    `json:"running"`
	OldestAgeSeconds float64  `json:"oldest_age_seconds"`
}

func queueLsCommand() *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list the queues: priority, private, paused, depth (queued tasks), running, the oldest queued task's wait",
		UsageText: "kolejka-server queue ls [--json]",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print a JSON list"}},
		Action: func(c *cli.Context) error {
			if err := cliexit.NoFlagsAfterArgs(c); err != nil {
				return err
			}
			if c.NArg() != 0 {
				return cliexit.UsageError("queue ls takes no arguments (usage: %s)", c.Command.UsageText)
			}
			return withAdmin(c, func(srv *server.Server) error {
				qs, err := srv.Queues(c.Context)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					out := make([]queueJSON, 0, len(qs))
					for _, q := range qs {
						out = append(out, queueJSON{Name: q.Name, Priority: q.Priority, Private: q.Private, Paused: q.Paused,
							Submitters: nonNil(q.Submitters), Nodes: nonNil(q.Nodes), Depth: q.Depth, Running: q.Running,
							OldestAgeSeconds: srv.OldestAge(q).Seconds()})
					}
					enc := json.NewEncoder(c.App.Writer)
					enc.SetIndent("", "  ")
					return enc.Encode(out)
				}
				tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tPRIORITY\tPRIVATE\tPAUSED\tDEPTH\tRUNNING\tOLDEST")
				for _, q := range qs {
					oldest := "-"
					if !q.Oldest.IsZero() {
						oldest = srv.OldestAge(q).Round(time.Second).String()
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%s\n", q.Name, q.Priority, yesNo(q.Private), yesNo(q.Paused), q.Depth, q.Running, oldest)
				}
				return tw.Flush()
			})
		},
	}
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// queueNameCommand is a subcommand taking one queue NAME.
func queueNameCommand(name, usage string, do func(*cli.Context, *server.Server, string) error) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		UsageText: "kolejka-server queue " + name + " NAME",
		Action: func(c *cli.Context) error {
			if err := cliexit.NeedArgs(c, 1, "NAME"); err != nil {
				return err
			}
			return withAdmin(c, func(srv *server.Server) error { return do(c, srv, c.Args().First()) })
		},
	}
}
