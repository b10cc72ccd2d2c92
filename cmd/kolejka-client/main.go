// Command kolejka-client uses a Kolejka server from the command line:
// blobs, tasks and results, and `execute` (submit a task folder, wait,
// fetch its result folder). Its arguments and outputs are Kolejka's.
//
// Exit codes: 0 done; 1 anything else; 2 bad command line or input; 4
// cannot connect; 5 login failed or not allowed; 6 not found; 7 the server
// refused (its message is printed); 8 a download did not match its hash;
// 130 interrupted (execute prints the task's key; it stays on the grid).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/cmd/internal/limitflags"
	"github.com/kolejka-go/kolejka/internal/config"
	"github.com/kolejka-go/kolejka/spec"
)

// Exit codes beyond cliexit's.
const (
	exitConnect     = 4
	exitLogin       = 5
	exitNotFound    = 6
	exitRefused     = 7
	exitIntegrity   = 8
	exitInterrupted = 130
)

func main() {
	os.Exit(cliexit.Run(app(), os.Args))
}

func app() *cli.App {
	return &cli.App{
		Name:  "kolejka-client",
		Usage: "use a Kolejka server: blobs, tasks, results, execute",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "show progress"},
			&cli.BoolFlag{Name: "debug", Aliases: []string{"d"}, Usage: "show debugging output"},
			&cli.StringFlag{Name: "config-file", EnvVars: []string{"KOLEJKA_CONFIG_FILE"}, Usage: "kolejka.conf to read (default: the first of " + fmt.Sprint(config.SearchPath()) + ")"},
			&cli.StringFlag{Name: "config", EnvVars: []string{"KOLEJKA_CONFIG"}, Usage: "client section of kolejka.conf (default: [default] config, else client)"},
			&cli.StringFlag{Name: "server", EnvVars: []string{"KOLEJKA_SERVER"}, Usage: "server URL (https:// is assumed)"},
			&cli.StringFlag{Name: "username", EnvVars: []string{"KOLEJKA_USERNAME"}},
			&cli.StringFlag{Name: "password", EnvVars: []string{"KOLEJKA_PASSWORD"}},
			&cli.StringFlag{Name: "token", EnvVars: []string{"KOLEJKA_TOKEN"}, Usage: "bearer token (our servers: kolejka-server token NAME)"},
		},
		Before: func(c *cli.Context) error {
			cliexit.SetLogger(c, slog.LevelWarn)
			return nil
		},
		Commands: []*cli.Command{
			{Name: "blob", Usage: "blobs", Subcommands: []*cli.Command{
				cmd("put", "FILE", "upload a file, print its reference", 1, nil, blobPut),
				cmd("get", "REF PATH", "download a reference into PATH", 2, nil, blobGet),
				cmd("delete", "REF", "delete a reference", 1, nil, blobDelete),
			}},
			{Name: "task", Usage: "tasks", Subcommands: []*cli.Command{
				cmd("put", "TASK_DIR", "submit a task folder, print its key", 1, limitflags.Flags(), taskPut),
				cmd("get", "KEY DIR", "download a task into a folder", 2, nil, taskGet),
				cmd("delete", "KEY", "delete a task", 1, nil, taskDelete),
			}},
			{Name: "result", Usage: "results", Subcommands: []*cli.Command{
				cmd("put", "RESULT_DIR", "post a result folder (for nodes)", 1, nil, resultPut),
				cmd("get", "KEY DIR", "download a task's result into a folder", 2, nil, resultGet),
				cmd("delete", "KEY", "delete a task's result", 1, nil, resultDelete),
			}},
			cmd("execute", "TASK_DIR RESULT_DIR", "submit a task, wait for it, download its result", 2,
				append([]cli.Flag{
					&cli.Float64Flag{Name: "interval", Value: 5, Usage: "seconds between polls on servers without long polling"},
					&cli.BoolFlag{Name: "consume", Usage: "remove the task folder once the result is saved"},
				}, limitflags.Flags()...), execute),
		},
	}
}

type action func(ctx context.Context, c *cli.Context, cl *client.Client) error

// cmd makes a command with nargs positional arguments.
func cmd(name, args, usage string, nargs int, flags []cli.Flag, run action) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		UsageText: "kolejka-client [global options] " + name + " [options] " + args,
		Flags:     flags,
		Action: func(c *cli.Context) error {
			if err := cliexit.NoFlagsAfterArgs(c); err != nil {
				return err
			}
			if c.NArg() != nargs {
				return cliexit.UsageError("need %s (usage: %s)", args, c.Command.UsageText)
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			cl, err := connect(ctx, c)
			if err != nil {
				return classify(err)
			}
			return classify(run(ctx, c, cl))
		},
	}
}

// connect builds the client from kolejka.conf's client section, then the
// environment and flags on top.
func connect(ctx context.Context, c *cli.Context) (*client.Client, error) {
	conf, err := config.Load(c.String("config-file"))
	if err != nil {
		return nil, cliexit.WithCode(cliexit.Usage, err)
	}
	section := conf.ClientSection(c.String("config"))
	get := func(flag, key string) string {
		if c.IsSet(flag) {
			return c.String(flag)
		}
		v, _ := conf.Get(section, key)
		return v
	}
	caps, err := conf.Limits(section)
	if err != nil {
		return nil, cliexit.WithCode(cliexit.Usage, err)
	}
	return client.New(ctx, client.Config{
		Server:   get("server", "server"),
		Username: get("username", "username"),
		Password: get("password", "password"),
		Token:    get("token", "token"),
		Limits:   caps,
		Progress: client.TerminalProgress(os.Stderr),
	})
}

// classify gives errors their exit codes.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var se *client.ServerError
	var ie *client.InterruptedError
	var fe *spec.Error
	var ce *cliexit.Error
	switch {
	case errors.As(err, &ce):
		return err
	case errors.As(err, &ie):
		return cliexit.WithCode(exitInterrupted, err)
	case errors.Is(err, context.Canceled):
		return cliexit.WithCode(exitInterrupted, errors.New("interrupted"))
	case errors.Is(err, client.ErrNotFound):
		// Before refusals: Kolejka's server says an unknown task's result
		// is missing with a FAIL ("Task X is unknown"), which means not
		// found all the same.
		return cliexit.WithCode(exitNotFound, err)
	case errors.As(err, &se), errors.Is(err, client.ErrUnavailable):
		return cliexit.WithCode(exitRefused, err)
	case errors.Is(err, client.ErrConnect):
		return cliexit.WithCode(exitConnect, err)
	case errors.Is(err, client.ErrLogin), errors.Is(err, client.ErrForbidden):
		return cliexit.WithCode(exitLogin, err)
	case errors.Is(err, client.ErrIntegrity):
		return cliexit.WithCode(exitIntegrity, err)
	case errors.As(err, &fe), errors.Is(err, os.ErrNotExist), errors.Is(err, client.ErrLocal):
		return cliexit.WithCode(cliexit.Usage, err)
	}
	return err
}

func blobPut(ctx context.Context, c *cli.Context, cl *client.Client) error {
	ref, err := cl.BlobPut(ctx, c.Args().Get(0))
	if err != nil {
		return err
	}
	fmt.Println(ref.Key)
	return nil
}

func blobGet(ctx context.Context, c *cli.Context, cl *client.Client) error {
	return cl.BlobGet(ctx, c.Args().Get(0), c.Args().Get(1))
}

func blobDelete(ctx context.Context, c *cli.Context, cl *client.Client) error {
	return cl.BlobDelete(ctx, c.Args().Get(0))
}

func taskPut(ctx context.Context, c *cli.Context, cl *client.Client) error {
	caps, err := limitflags.Parse(c)
	if err != nil {
		return err
	}
	t, err := cl.TaskPut(ctx, c.Args().Get(0), caps)
	if err != nil {
		return err
	}
	fmt.Println(t.ID)
	return nil
}

func taskGet(ctx context.Context, c *cli.Context, cl *client.Client) error {
	_, err := cl.TaskGet(ctx, c.Args().Get(0), c.Args().Get(1))
	return err
}

func taskDelete(ctx context.Context, c *cli.Context, cl *client.Client) error {
	return cl.TaskDelete(ctx, c.Args().Get(0))
}

func resultPut(ctx context.Context, c *cli.Context, cl *client.Client) error {
	_, err := cl.ResultPut(ctx, c.Args().Get(0))
	return err
}

func resultGet(ctx context.Context, c *cli.Context, cl *client.Client) error {
	_, err := cl.ResultGet(ctx, c.Args().Get(0), c.Args().Get(1), 0)
	return err
}

func resultDelete(ctx context.Context, c *cli.Context, cl *client.Client) error {
	return cl.ResultDelete(ctx, c.Args().Get(0))
}

func execute(ctx context.Context, c *cli.Context, cl *client.Client) error {
	caps, err := limitflags.Parse(c)
	if err != nil {
		return err
	}
	interval := time.Duration(c.Float64("interval") * float64(time.Second))
	if interval <= 0 {
		return cliexit.UsageError("--interval must be positive")
	}
	r, err := cl.Execute(ctx, c.Args().Get(0), c.Args().Get(1), client.ExecuteOptions{
		Caps:     caps,
		Interval: interval,
		Consume:  c.Bool("consume"),
		OnState: func(s client.State) {
			switch {
			case s.Phase == "done":
				fmt.Fprintf(os.Stderr, "task %s done: %s\n", s.Key, s.Status)
			case s.Node != "":
				fmt.Fprintf(os.Stderr, "task %s running on %s\n", s.Key, s.Node)
			default:
				fmt.Fprintf(os.Stderr, "task %s %s\n", s.Key, s.Phase)
			}
		},
	})
	if err != nil {
		return err
	}
	slog.Info("result saved", "task", r.ID, "status", r.Status)
	return nil
}
