package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/cmd/internal/settings"
	"github.com/kolejka-go/kolejka/internal/observer/daemon"
	"github.com/kolejka-go/kolejka/observer"
)

// defaultPidFile is where --detach writes the daemon's pid unless told.
const defaultPidFile = "/var/run/kolejka/observer/pid"

// app wires the command line; exit receives run's exit code.
func app(exit *int) *cli.App {
	return &cli.App{
		Name:      "kolejka-observer",
		Usage:     "serve cgroup sessions to Kolejka tasks, or run one command in a session",
		UsageText: "kolejka-observer [options]\nkolejka-observer run [limits] -- COMMAND [ARGS...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "socket", Aliases: []string{"s"}, Value: observer.DefaultSocket, Usage: "the unix socket to serve (and to reach, for run)"},
			&cli.StringFlag{Name: "state", Value: daemon.DefaultStateDir, Usage: "the folder recording the sessions across restarts"},
			&cli.BoolFlag{Name: "detach", Usage: "run in the background; return once the socket answers"},
			&cli.StringFlag{Name: "pid-file", Usage: "write the daemon's pid here (with --detach default " + defaultPidFile + ")"},
			&cli.StringFlag{Name: "sweep", Value: "/", Usage: "at start, kill and remove the session cgroups below this cgroup path that no record knows"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "show what happens to sessions"},
			&cli.BoolFlag{Name: "debug", Aliases: []string{"d"}, Usage: "show every request"},
		},
		Before: func(c *cli.Context) error {
			cliexit.SetLogger(c, slog.LevelWarn)
			return nil
		},
		Action: func(c *cli.Context) error {
			if err := cliexit.NoFlagsAfterArgs(c); err != nil {
				return err
			}
			if c.NArg() > 0 {
				return cliexit.UsageError("unexpected argument %q (commands: run)", c.Args().First())
			}
			return serve(c)
		},
		Commands: []*cli.Command{runCommand(exit)},
	}
}

// serve runs the daemon, in the foreground or detached.
func serve(c *cli.Context) error {
	pidFile := c.String("pid-file")
	ready, failed, inBackground := detached()
	if c.Bool("detach") && !inBackground {
		pid, err := detach(os.Args)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "kolejka-observer: serving in the background as process %d\n", pid)
		return nil
	}
	if inBackground && pidFile == "" {
		pidFile = defaultPidFile
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := daemon.Run(ctx, daemon.RunOptions{
		Socket:   c.String("socket"),
		StateDir: c.String("state"),
		Sweep:    c.String("sweep"),
		PidFile:  pidFile,
		Logger:   slog.Default(),
		Ready:    ready,
	})
	if err != nil && inBackground {
		failed(err)
	}
	return err
}

func runCommand(exit *int) *cli.Command {
	flags := append(settings.LimitFlags(),
		&cli.Int64Flag{Name: "cpus-offset", Usage: "the first of the cores to pin to", Category: "limits"},
		&cli.StringFlag{Name: "stats-file", Usage: "write the stats here instead of to stdout"},
	)
	return &cli.Command{
		Name:      "run",
		Usage:     "run one command in a fresh session and print its stats",
		UsageText: "kolejka-observer run [--cpus N] [--memory SIZE] [--swap SIZE] [--pids N] [--time T] ... -- COMMAND [ARGS...]",
		Description: "Options go before the command. The command is measured from its first instruction;\n" +
			"its final stats are printed as JSON on stdout (or to --stats-file) and run exits with\n" +
			"the command's exit code (128+N for signal N). A running observer daemon (--socket)\n" +
			"measures it; without one, run measures it itself (root needed).",
		Flags: flags,
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cliexit.UsageError("no command (usage: %s)", c.Command.UsageText)
			}
			limits, err := settings.LimitOptions(c)
			if err != nil {
				return err
			}
			if c.IsSet("cpus-offset") {
				off := c.Int64("cpus-offset")
				limits.CPUsOffset = &off
			}
			res, err := runMeasured(c.Context, runOptions{
				Args:           c.Args().Slice(),
				Limits:         limits,
				Socket:         c.String("socket"),
				ForwardSignals: true,
				Logger:         slog.Default(),
			})
			if err != nil {
				if errors.Is(err, observer.ErrBadRequest) || errors.Is(err, observer.ErrUnsupported) {
					return cliexit.WithCode(cliexit.Usage, err)
				}
				if res != nil && errors.Is(err, errCannotRun) {
					*exit = res.Exit
					fmt.Fprintf(os.Stderr, "kolejka-observer run: %v\n", err)
					return nil
				}
				return err
			}
			slog.Info("command ended", "exit", res.Exit, "daemon", res.Daemon, "pre_exec_cpu", res.PreExec)
			b, err := json.MarshalIndent(res.Stats, "", "  ")
			if err != nil {
				return err
			}
			b = append(b, '\n')
			if f := c.String("stats-file"); f != "" {
				err = os.WriteFile(f, b, 0o644)
			} else {
				_, err = os.Stdout.Write(b)
			}
			if err != nil {
				return fmt.Errorf("unable to write the stats: %w", err)
			}
			*exit = res.Exit
			return nil
		},
	}
}
