// Command kolejka-server runs Kolejka's server (package server) and its
// admin commands, all on one data folder (--data, KOLEJKA_SERVER_DATA,
// [server] data in kolejka.conf, else /var/lib/kolejka/server):
//
//	kolejka-server [--data DIR] serve [--listen ADDR] [--prefix P] [--tls-cert F --tls-key F] …
//	kolejka-server dev [--listen ADDR] [--testimage DIR]   (a whole grid on a temporary folder: dev.go)
//	kolejka-server adduser [--clients] [--processors] [--inspectors] [--managers] NAME PASSWORD
//	kolejka-server passwd NAME PASSWORD
//	kolejka-server token [create] [--age AGE] [--trigger TRIGGER] NAME
//	kolejka-server token list NAME
//	kolejka-server token revoke NAME ID|TOKEN... | --all NAME
//	kolejka-server lstask [--assigned[=false]] [--resolved[=false]] [--long]
//	kolejka-server rmtask KEY...
//	kolejka-server unassign AGE
//	kolejka-server queue add|ls|pause|resume|rm … (queue.go)
//	kolejka-server config
//
// The admin commands work next to a running server. Exit codes: 0 done, 2
// bad command line or input, 1 anything else.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/cmd/internal/settings"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
)

func main() {
	cliexit.Main(app(), nil)
}

func app() *cli.App {
	return &cli.App{
		Name:  "kolejka-server",
		Usage: "Kolejka's server: task queue, blob store and admin commands",
		Flags: globalFlags(),
		Before: func(c *cli.Context) error {
			level := slog.LevelWarn
			if c.Bool("verbose") || c.Args().First() == "serve" {
				level = slog.LevelInfo
			}
			if c.Bool("debug") {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level})))
			return nil
		},
		Commands: []*cli.Command{
			serveCommand(), devCommand(), configCommand(), adduserCommand(), passwdCommand(), tokenCommand(),
			lstaskCommand(), rmtaskCommand(), unassignCommand(),
			queueCommand(),
			nodeCommand(),
			migrateCommand(),
		},
	}
}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve the HTTP API until SIGTERM or SIGINT",
		UsageText: "kolejka-server [--data DIR] serve [options]",
		Flags:     serveFlags(),
		Action: func(c *cli.Context) error {
			if err := cliexit.NoFlagsAfterArgs(c); err != nil {
				return err
			}
			o, err := load(c, true)
			if err != nil {
				return err
			}
			srv, err := server.Open(o.Config)
			if err != nil {
				return cliexit.UsageIf(err, server.ErrConfig)
			}
			ln, err := net.Listen("tcp", o.Listen)
			if err != nil {
				_ = srv.Close() // nothing served: the listen error is the news
				return cliexit.WithCode(cliexit.Usage, fmt.Errorf("unable to listen: %w", err))
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			served := make(chan error, 1)
			go func() { served <- srv.Serve(context.Background(), ln) }()
			select {
			case err := <-served:
				return errors.Join(err, srv.Close())
			case <-ctx.Done():
			}
			slog.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				return fmt.Errorf("unable to shut down cleanly: %w", err)
			}
			return <-served
		},
	}
}

func configCommand() *cli.Command {
	return &cli.Command{
		Name:      "config",
		Usage:     "print the configuration serve would use (flags over env over kolejka.conf over defaults)",
		UsageText: "kolejka-server [--data DIR] config [serve options]",
		Flags:     serveFlags(),
		Action: func(c *cli.Context) error {
			o, err := load(c, true)
			if err != nil {
				return err
			}
			if o.Config, err = o.WithDefaults(); err != nil {
				return cliexit.WithCode(cliexit.Usage, err)
			}
			printConfig(c.App.Writer, o)
			return nil
		},
	}
}

// withAdmin opens the data folder for an admin command, runs do on it and
// closes it. Commands check their arguments before, so that bad ones touch
// nothing.
func withAdmin(c *cli.Context, do func(*server.Server) error) error {
	return openAdmin(c, false, do)
}

// withAdminSettings is withAdmin for commands that use the server's
// settings too (token: token_age), read from kolejka.conf and the
// environment as serve reads them.
func withAdminSettings(c *cli.Context, do func(*server.Server) error) error {
	return openAdmin(c, true, do)
}

func openAdmin(c *cli.Context, withSettings bool, do func(*server.Server) error) (err error) {
	o, err := load(c, withSettings)
	if err != nil {
		return err
	}
	srv, err := server.OpenAdmin(o.Config)
	if err != nil {
		return err
	}
	// The command's changes are committed; a database that fails to close
	// after them is still worth a word.
	defer func() { err = errors.Join(err, srv.Close()) }()
	return do(srv)
}

var roleFlags = map[string]server.Role{
	"--clients": server.Clients, "--processors": server.Processors,
	"--inspectors": server.Inspectors, "--managers": server.Managers,
}

func adduserCommand() *cli.Command {
	usage := "kolejka-server adduser [--clients] [--processors] [--inspectors] [--managers] NAME PASSWORD"
	return &cli.Command{
		Name:            "adduser",
		Usage:           "add a user with a password and roles (role options may also follow NAME PASSWORD, as in Kolejka)",
		UsageText:       usage,
		SkipFlagParsing: true, // role options go anywhere; parsed below
		Action: func(c *cli.Context) error {
			var roles server.Role
			var args []string
			for _, a := range c.Args().Slice() {
				if r, ok := roleFlags[a]; ok {
					roles |= r
				} else if len(a) > 1 && a[0] == '-' {
					return cliexit.UsageError("unknown option %q (usage: %s)", a, usage)
				} else {
					args = append(args, a)
				}
			}
			if len(args) != 2 {
				return cliexit.UsageError("need NAME and PASSWORD (usage: %s)", usage)
			}
			return withAdmin(c, func(srv *server.Server) error {
				if err := srv.AddUser(c.Context, args[0], args[1], roles); err != nil {
					return cliexit.UsageIf(err, server.ErrExists, server.ErrInvalid)
				}
				fmt.Fprintf(c.App.Writer, "User '%s' created successfully (%s).\n", args[0], roles)
				return nil
			})
		},
	}
}

func passwdCommand() *cli.Command {
	return &cli.Command{
		Name:      "passwd",
		Usage:     "set a user's password (ends the user's sessions and revokes its bearer tokens)",
		UsageText: "kolejka-server passwd NAME PASSWORD",
		Action: func(c *cli.Context) error {
			if err := cliexit.NeedArgs(c, 2, "NAME and PASSWORD"); err != nil {
				return err
			}
			return withAdmin(c, func(srv *server.Server) error {
				sessions, tokens, err := srv.SetPassword(c.Context, c.Args().Get(0), c.Args().Get(1))
				if err != nil {
					return cliexit.UsageIf(err, server.ErrNotFound, server.ErrInvalid)
				}
				fmt.Fprintf(c.App.Writer, "Password of '%s' changed; %d sessions ended, %d bearer tokens revoked.\n", c.Args().Get(0), sessions, tokens)
				return nil
			})
		},
	}
}

func tokenCommand() *cli.Command {
	// --age, else the variable of token_age; the file's token_age is the
	// server's default age.
	ageSetting := func(age *time.Duration) settings.Setting {
		return settings.Setting{
			Flag:  &cli.StringFlag{Name: "age", Usage: "how long the token lasts, e.g. 30D, 1W (default: [server] token_age, else 365D)"},
			Env:   envVar("token-age"),
			Value: settings.PositiveDuration(age),
		}
	}
	ageFlags := func() []cli.Flag {
		return append(settings.Flags([]settings.Setting{ageSetting(nil)}), &cli.StringFlag{
			Name:  "trigger",
			Usage: "a token that may only fire the user's trigger `TRIGGER` (its webhook, POST /trigger/TRIGGER/) and do nothing else",
		})
	}
	createUsage := "kolejka-server token [create] [--age AGE] [--trigger TRIGGER] NAME"
	create := func(c *cli.Context) error {
		// Not NeedArgs: token's own usage lists list and revoke too.
		if err := cliexit.NoFlagsAfterArgs(c); err != nil {
			return err
		}
		if c.NArg() != 1 {
			return cliexit.UsageError("need NAME (usage: %s)", createUsage)
		}
		var age time.Duration
		if err := settings.Resolve(c, nil, []settings.Setting{ageSetting(&age)}); err != nil {
			return err
		}
		return withAdminSettings(c, func(srv *server.Server) error {
			tok, row, err := srv.NewScopedToken(c.Context, c.Args().Get(0), c.String("trigger"), age)
			if err != nil {
				return cliexit.UsageIf(err, server.ErrNotFound, server.ErrInvalid)
			}
			fmt.Fprintln(c.App.Writer, tok)
			scope := ""
			if row.Scope != "" {
				scope = " (it may only fire " + row.Scope + ")"
			}
			fmt.Fprintf(c.App.ErrWriter, "Token %s of '%s' expires %s%s.\n", row.ID, row.User, row.TimeExpire.Format(time.RFC3339), scope)
			return nil
		})
	}
	return &cli.Command{
		Name: "token",
		Usage: "create a bearer token for a user and print it (it cannot be shown again); " +
			"list a user's tokens; revoke one or all",
		UsageText: createUsage + "\n" +
			"kolejka-server token list NAME\n" +
			"kolejka-server token revoke NAME ID|TOKEN...\n" +
			"kolejka-server token revoke --all NAME",
		Flags:  ageFlags(),
		Action: create,
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a bearer token for a user and print it (it cannot be shown again)",
				UsageText: createUsage,
				Flags:     ageFlags(),
				Action:    create,
			},
			{
				Name:      "list",
				Usage:     "list a user's bearer tokens: id, the token's first characters, created, expires, last used",
				UsageText: "kolejka-server token list NAME",
				Action: func(c *cli.Context) error {
					if err := cliexit.NeedArgs(c, 1, "NAME"); err != nil {
						return err
					}
					return withAdmin(c, func(srv *server.Server) error {
						tokens, err := srv.ListTokens(c.Context, c.Args().Get(0))
						if err != nil {
							return cliexit.UsageIf(err, server.ErrNotFound)
						}
						stamp := func(t time.Time, zero string) string {
							if t.IsZero() {
								return zero
							}
							return t.Format(time.RFC3339)
						}
						tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "ID\tTOKEN\tCREATED\tEXPIRES\tLAST USED\tSCOPE")
						now := time.Now()
						for _, t := range tokens {
							prefix := "?"
							if t.Prefix != "" {
								prefix = t.Prefix + "…"
							}
							expires := stamp(t.TimeExpire, "never")
							if !t.TimeExpire.IsZero() && !t.TimeExpire.After(now) {
								expires += " (expired)"
							}
							fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, prefix, stamp(t.TimeCreate, "-"), expires, stamp(t.TimeUsed, "-"), cmp.Or(t.Scope, "all"))
						}
						return tw.Flush()
					})
				},
			},
			{
				Name:      "revoke",
				Usage:     "revoke a user's bearer tokens by id (as list shows it) or by the token itself, or all with --all",
				UsageText: "kolejka-server token revoke NAME ID|TOKEN...\nkolejka-server token revoke --all NAME",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "all", Usage: "revoke every token of the user"}},
				Action: func(c *cli.Context) error {
					if err := cliexit.NoFlagsAfterArgs(c); err != nil {
						return err
					}
					all := c.Bool("all")
					switch {
					case all && c.NArg() != 1:
						return cliexit.UsageError("--all takes only NAME (usage: %s)", c.Command.UsageText)
					case !all && c.NArg() < 2:
						return cliexit.UsageError("need NAME and the ids of the tokens, or --all (usage: %s)", c.Command.UsageText)
					}
					name, ids := c.Args().First(), c.Args().Tail()
					return withAdmin(c, func(srv *server.Server) error {
						n, err := srv.RevokeTokens(c.Context, name, ids...)
						if err != nil {
							return cliexit.UsageIf(err, server.ErrNotFound)
						}
						fmt.Fprintf(c.App.Writer, "Revoked %d tokens of '%s'.\n", n, name)
						return nil
					})
				},
			},
		},
	}
}

func lstaskCommand() *cli.Command {
	return &cli.Command{
		Name:      "lstask",
		Usage:     "list task keys (--assigned: has a node, resolved ones included, as Kolejka; --resolved: has had a result)",
		UsageText: "kolejka-server lstask [--assigned[=false]] [--resolved[=false]] [--long]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "assigned", Usage: "only tasks with (=false: without) a node"},
			&cli.BoolFlag{Name: "resolved", Usage: "only tasks with (=false: without) a result"},
			&cli.BoolFlag{Name: "long", Aliases: []string{"l"}, Usage: "also show state, owner, node, attempts and submission time"},
		},
		Action: func(c *cli.Context) error {
			if err := cliexit.NoFlagsAfterArgs(c); err != nil {
				return err
			}
			var f server.TaskFilter
			if c.IsSet("assigned") {
				v := c.Bool("assigned")
				f.Assigned = &v
			}
			if c.IsSet("resolved") {
				v := c.Bool("resolved")
				f.Resolved = &v
			}
			return withAdmin(c, func(srv *server.Server) error {
				tasks, err := srv.ListTasks(c.Context, f)
				if err != nil {
					return err
				}
				if !c.Bool("long") {
					for _, t := range tasks {
						fmt.Fprintln(c.App.Writer, t.Key)
					}
					return nil
				}
				tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KEY\tSTATE\tOWNER\tNODE\tATTEMPTS\tSUBMITTED")
				for _, t := range tasks {
					node := t.AssigneeName
					if node == "" {
						node = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", t.Key, t.State, t.OwnerName, node, t.Attempts, t.TimeCreate.Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
}

func rmtaskCommand() *cli.Command {
	return &cli.Command{
		Name:      "rmtask",
		Usage:     "delete tasks and their results",
		UsageText: "kolejka-server rmtask KEY...",
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cliexit.UsageError("need task keys (usage: %s)", c.Command.UsageText)
			}
			return withAdmin(c, func(srv *server.Server) error {
				n, err := srv.RemoveTasks(c.Context, c.Args().Slice()...)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "Successfully deleted %d tasks\n", n)
				return nil
			})
		},
	}
}

func unassignCommand() *cli.Command {
	return &cli.Command{
		Name:      "unassign",
		Usage:     "return to the queue the unresolved tasks assigned longer than AGE ago (e.g. 10M, 2H)",
		UsageText: "kolejka-server unassign AGE",
		Action: func(c *cli.Context) error {
			if err := cliexit.NeedArgs(c, 1, "AGE"); err != nil {
				return err
			}
			age, err := spec.ParseTime(c.Args().First())
			if err != nil {
				return cliexit.UsageError("AGE: %v", err)
			}
			return withAdmin(c, func(srv *server.Server) error {
				keys, err := srv.Unassign(c.Context, age)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "Successfully unassigned %d tasks\n", len(keys))
				return nil
			})
		},
	}
}
