package main

// This file owns `kolejka-server node`: listing the nodes the server has
// heard from, and draining (no new task; running tasks go on) or
// undraining one, in the database the running server uses; the server
// sees a drain within a second (docs/grid-node.md).
//
//	kolejka-server node ls [--json]
//	kolejka-server node drain NAME
//	kolejka-server node undrain NAME
//
// A NAME that is not a processor exits 2 and changes nothing.

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
)

func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "manage nodes: ls, drain, undrain",
		UsageText: "kolejka-server node ls [--json]\n" +
			"kolejka-server node drain|undrain NAME",
		Subcommands: []*cli.Command{nodeLsCommand(),
			nodeNameCommand("drain", "drain a node: it gets no new task; its running tasks go on", true),
			nodeNameCommand("undrain", "undrain a node: it gets tasks again", false),
		},
	}
}

func nodeLsCommand() *cli.Command {
	return &cli.Command{
		Name: "ls",
		Usage: "list the nodes: health (ok, warn, crit: the last contact's age against the lease time), " +
			"last seen, drained, running tasks, free and total cores and memory, tags, queues",
		UsageText: "kolejka-server node ls [--json]",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the nodes as GET /node/ does"}},
		Action: func(c *cli.Context) error {
			if err := cliexit.NoFlagsAfterArgs(c); err != nil {
				return err
			}
			if c.NArg() != 0 {
				return cliexit.UsageError("node ls takes no arguments (usage: %s)", c.Command.UsageText)
			}
			// The settings: health is measured against the lease time.
			return withAdminSettings(c, func(srv *server.Server) error {
				nodes, err := srv.Nodes(c.Context)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					enc := json.NewEncoder(c.App.Writer)
					enc.SetIndent("", "  ")
					return enc.Encode(nodes)
				}
				tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tHEALTH\tSEEN\tDRAINED\tRUNNING\tFREE\tCAPACITY\tTAGS\tQUEUES")
				for _, n := range nodes {
					seen := "never"
					if n.LastSeen != "" {
						seen = time.Duration(n.AgeSeconds*float64(time.Second)).Round(time.Second).String() + " ago"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", n.Name, n.Health, seen, yesNo(n.Drained), len(n.Running),
						shape(n.Free), shape(n.Capacity), orDash(strings.Join(n.Tags, ",")), orDash(strings.Join(n.Queues, ",")))
				}
				return tw.Flush()
			})
		},
	}
}

// shape is limits' cores and memory, e.g. "cpus=4 memory=8G" ("-" if
// neither is said).
func shape(l spec.Limits) string {
	if l.CPUs == nil && l.Memory == nil {
		return "-"
	}
	return spec.Limits{CPUs: l.CPUs, Memory: l.Memory}.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// nodeNameCommand is drain or undrain.
func nodeNameCommand(name, usage string, drained bool) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		UsageText: "kolejka-server node " + name + " NAME",
		Action: func(c *cli.Context) error {
			if err := cliexit.NeedArgs(c, 1, "NAME"); err != nil {
				return err
			}
			node := c.Args().First()
			return withAdmin(c, func(srv *server.Server) error {
				n, err := srv.SetNodeDrained(c.Context, node, drained)
				if errors.Is(err, server.ErrNotFound) {
					return cliexit.UsageError("NAME: no node (processor) named %q", node)
				}
				if err != nil {
					return err
				}
				if drained {
					fmt.Fprintf(c.App.Writer, "Node '%s' drained: it gets no new task; %d running go on.\n", n.Name, len(n.Running))
				} else {
					fmt.Fprintf(c.App.Writer, "Node '%s' undrained.\n", n.Name)
				}
				return nil
			})
		},
	}
}
