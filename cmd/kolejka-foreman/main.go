// Command kolejka-foreman runs a Kolejka grid node (package foreman): it
// takes tasks from the server that fit this machine and its tags, runs them
// in containers and posts their results, until stopped.
//
//	kolejka-foreman [--config-file F] [--config NAME] [--runtime runc|docker|host] [--tags a,b]
//	                [--concurency N] [--temp DIR] [--cpus N --memory SIZE …]
//
// Settings come from kolejka.conf (the client section for the server and
// credentials, [foreman] for the node); options win over the file.
//
// Signals: the first SIGTERM (or SIGINT) drains — no new tasks, running
// ones finish and their results are posted — then the foreman exits 0; a
// second one kills the running tasks and hands them back to the queue, and
// the foreman exits 1. Exit codes: 0 drained; 1 stopped before its tasks
// finished, or failed; 2 bad command line or configuration.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/foreman"
	"github.com/kolejka-go/kolejka/worker/runc"
)

func main() {
	// First, before any parsing: in the process the embedded runc starts
	// a container with (this binary as `<self> init`), become the
	// container's init; elsewhere this returns at once.
	runc.MaybeInit()
	// In a delegated cgroup (systemd's Delegate=yes), first re-executed
	// where /sys/fs/cgroup is that group alone: the embedded runc must not
	// touch the system manager's groups above it.
	confined := cgroup.Confine()
	cliexit.Main(app(), confined)
}

func app() *cli.App {
	debug := &cli.BoolFlag{Name: "debug", Aliases: []string{"d"}, Usage: "log debugging output (the default logs each task taken, run and posted, and problems)"}
	return &cli.App{
		Name:      "kolejka-foreman",
		Usage:     "run a Kolejka grid node: take tasks from the server, run them, post their results",
		UsageText: "kolejka-foreman [options] (limit options cap what the node offers: --cpus, --memory, …; --time, --image cap each task)",
		Flags:     append([]cli.Flag{debug}, flags()...),
		Action:    run,
	}
}

func run(c *cli.Context) error {
	if c.NArg() > 0 {
		return cliexit.UsageError("unexpected arguments %q (usage: %s)", c.Args().Slice(), c.App.UsageText)
	}
	level := slog.LevelInfo
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	o, err := load(c)
	if err != nil {
		return err
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	// Opening may wait for the server; a signal meanwhile ends it.
	openCtx, cancelOpen := context.WithCancel(c.Context)
	defer cancelOpen()
	type opened struct {
		f   *foreman.Foreman
		err error
	}
	oc := make(chan opened, 1)
	go func() {
		f, err := openNode(openCtx, o, log)
		oc <- opened{f, err}
	}()
	var f *foreman.Foreman
	select {
	case o := <-oc:
		if o.err != nil {
			if errors.Is(o.err, foreman.ErrConfig) {
				return cliexit.WithCode(cliexit.Usage, o.err)
			}
			return o.err
		}
		f = o.f
	case sig := <-sigs:
		log.Info("stopping before the node started", "signal", sig.String())
		cancelOpen()
		if o := <-oc; o.f != nil {
			_ = o.f.Shutdown(context.Background()) // not running: nothing to drain, nil
		}
		return nil
	}

	ran := make(chan error, 1)
	go func() { ran <- f.Run(context.Background()) }()
	select {
	case err := <-ran:
		return err // only on a failure: nothing else ends Run without a signal
	case sig := <-sigs:
		log.Info("draining: running tasks finish and post their results; signal again to stop now", "signal", sig.String())
	}
	drain, force := context.WithCancel(context.Background())
	defer force()
	go func() {
		select {
		case sig := <-sigs:
			log.Warn("stopping now: killing running tasks and handing them back to the queue", "signal", sig.String())
			force()
		case <-drain.Done():
		}
	}()
	err = f.Shutdown(drain)
	runErr := <-ran
	if err != nil {
		return fmt.Errorf("stopped before its tasks finished; they were handed back to the queue")
	}
	// After a Shutdown Run returns ErrStopped; anything else is a failure
	// of its own that came with the signal.
	if runErr != nil && !errors.Is(runErr, foreman.ErrStopped) {
		return runErr
	}
	log.Info("drained")
	return nil
}
