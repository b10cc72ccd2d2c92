// Command kolejka-client uses a Kolejka server from the command line:
// blobs, tasks and results, and `execute` (submit a task folder, wait,
// fetch its result folder). Its arguments and outputs are Kolejka's.
//
// Exit codes: 0 done; 1 anything else; 2 bad command line or input; 4
// cannot connect; 5 login failed or not allowed; 6 not found; 7 the server
// refused (its message is printed); 8 a download did not match its hash;
// 9 the task waited on (execute, result get) was cancelled; 130
// interrupted (execute prints the task's key; it stays on the grid).
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
	"github.com/kolejka-go/kolejka/cmd/internal/settings"
	"github.com/kolejka-go/kolejka/spec"
)

// Exit codes beyond cliexit's.
const (
	exitConnect     = 4
	exitLogin       = 5
	exitNotFound    = 6
	exitRefused     = 7
	exitIntegrity   = 8
	exitCancelled   = 9
	exitInterrupted = 130
)

func main() {
	cliexit.Main(app(), nil)
}

func app() *cli.App {
	return &cli.App{
		Name:  "kolejka-client",
		Usage: "use a Kolejka server: blobs, tasks, results, execute",
		// -p NAME=a,b is one value (type.go).
		DisableSliceFlagSeparator: true,
		Flags: append(cliexit.LogFlags(), settings.Flags(append([]settings.Setting{
			settings.File(new(string), fileEnv),
			settings.Config(new(string), sectionEnv),
		}, clientSettings(new(client.Config), "")...))...),
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
				withType(cmd("put", "TASK_DIR", "submit a task folder, print its key", 1, settings.LimitFlags(), taskPut), 0, "", typeTaskPut),
				cmd("get", "KEY DIR", "download a task into a folder", 2, nil, taskGet),
				cmd("delete", "KEY", "delete a task", 1, nil, taskDelete),
				taskLsCommand(),
				cmd("show", "KEY", "show a task's state, queue, type, node, attempts, times and verdict", 1, jsonFlag(), taskShow),
				taskCancelCommand(),
				cmd("clone", "KEY", "submit a task again (same spec and files), print the new key", 1, nil, taskClone),
			}},
			{Name: "result", Usage: "results", Subcommands: []*cli.Command{
				cmd("put", "RESULT_DIR", "post a result folder (for nodes)", 1, nil, resultPut),
				cmd("get", "KEY DIR", "download a task's result into a folder", 2, resultWaitFlags(), resultGet),
				cmd("delete", "KEY", "delete a task's result", 1, nil, resultDelete),
			}},
			withType(cmd("execute", "TASK_DIR RESULT_DIR", "submit a task, wait for it, download its result", 2,
				append(settings.Flags(executeSettings(new(spec.Limits), new(time.Duration))),
					&cli.BoolFlag{Name: "consume", Usage: "remove the task folder once the result is saved"},
				), execute), 1, "RESULT_DIR", typeExecute),
			typeCommand(),
			imageCommand(),
			workflowCommand(),
			scheduleCommand(),
			triggerCommand(),
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
			if err := cliexit.NeedArgs(c, nargs, args); err != nil {
				return err
			}
			return connected(c, run)
		},
	}
}

// connected runs run with a client, interruptible, its error classified.
func connected(c *cli.Context, run action) error {
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cl, err := connect(ctx, c)
	if err != nil {
		return classify(err)
	}
	return classify(run(ctx, c, cl))
}

// The variables naming kolejka.conf and its client section.
const (
	fileEnv    = "KOLEJKA_CONFIG_FILE"
	sectionEnv = "KOLEJKA_CONFIG"
)

// clientSettings are the client's settings: the keys of the client
// section of kolejka.conf, the environment and the command line on top
// (the section's limits are caps of every task, the limit options of
// task put and execute the task's own).
func clientSettings(cfg *client.Config, section string) []settings.Setting {
	key := func(name, env, usage string, dst *string) settings.Setting {
		return settings.Setting{Flag: &cli.StringFlag{Name: name, Usage: usage}, Env: env, Section: section, Key: name, Value: settings.String(dst)}
	}
	return append([]settings.Setting{
		key("server", "KOLEJKA_SERVER", "server URL (https:// is assumed)", &cfg.Server),
		key("username", "KOLEJKA_USERNAME", "", &cfg.Username),
		key("password", "KOLEJKA_PASSWORD", "", &cfg.Password),
		key("token", "KOLEJKA_TOKEN", "bearer token (our servers: kolejka-server token NAME)", &cfg.Token),
	}, settings.FileLimits(&cfg.Limits, section)...)
}

// connect builds the client from its settings.
func connect(ctx context.Context, c *cli.Context) (*client.Client, error) {
	f, err := settings.Load(c, fileEnv)
	if err != nil {
		return nil, err
	}
	section, err := settings.ClientSection(c, f, sectionEnv)
	if err != nil {
		return nil, err
	}
	cfg := client.Config{Progress: client.TerminalProgress(os.Stderr)}
	if err := settings.Resolve(c, f, clientSettings(&cfg, section)); err != nil {
		return nil, err
	}
	return client.New(ctx, cfg)
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
	case errors.Is(err, client.ErrCancelled):
		return cliexit.WithCode(exitCancelled, fmt.Errorf("%w; no result will come", err))
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
	caps, err := settings.LimitOptions(c)
	if err != nil {
		return err
	}
	t, err := cl.TaskSubmit(ctx, c.Args().Get(0), client.TaskOptions{Caps: caps, Queue: c.String("queue")})
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
	wait, err := resultWait(c)
	if err != nil {
		return err
	}
	return resultGetWaiting(ctx, cl, c.Args().Get(0), c.Args().Get(1), wait)
}

func resultDelete(ctx context.Context, c *cli.Context, cl *client.Client) error {
	return cl.ResultDelete(ctx, c.Args().Get(0))
}

// executeSettings are execute's own: the task's limit options and the
// pause between polls.
func executeSettings(caps *spec.Limits, interval *time.Duration) []settings.Setting {
	return append(settings.Limits(caps, ""), settings.Setting{
		Flag:  &cli.Float64Flag{Name: "interval", Value: 5, Usage: "seconds between polls on servers without long polling"},
		Value: settings.PositiveDuration(interval),
	})
}

func execute(ctx context.Context, c *cli.Context, cl *client.Client) error {
	var caps spec.Limits
	interval := 5 * time.Second
	if err := settings.Resolve(c, nil, executeSettings(&caps, &interval)); err != nil {
		return err
	}
	return runExecute(ctx, cl, c.Args().Get(0), c.Args().Get(1), client.ExecuteOptions{Caps: caps, Interval: interval, Consume: c.Bool("consume"), Queue: c.String("queue")})
}

// runExecute is execute's run, of a task folder or (o.Type) a type's task.
func runExecute(ctx context.Context, cl *client.Client, dir, resultDir string, o client.ExecuteOptions) error {
	o.OnState = func(s client.State) {
		switch {
		case s.Phase == "done":
			fmt.Fprintf(os.Stderr, "task %s done: %s\n", s.Key, s.Status)
		case s.Node != "":
			fmt.Fprintf(os.Stderr, "task %s running on %s\n", s.Key, s.Node)
		default:
			fmt.Fprintf(os.Stderr, "task %s %s\n", s.Key, s.Phase)
		}
	}
	r, err := cl.Execute(ctx, dir, resultDir, o)
	if err != nil {
		return err
	}
	slog.Info("result saved", "task", r.ID, "status", r.Status)
	return nil
}
