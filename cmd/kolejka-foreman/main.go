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
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/cmd/internal/limitflags"
	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/config"
	"github.com/kolejka-go/kolejka/internal/foreman"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker/runc"
	"github.com/kolejka-go/kolejka/worker/runtimes"
)

func main() {
	// First, before any parsing: in the process the embedded runc starts
	// a container with (this binary as `<self> init`), become the
	// container's init; elsewhere this returns at once.
	runc.MaybeInit()
	// In a delegated cgroup (systemd's Delegate=yes), first re-executed
	// where /sys/fs/cgroup is that group alone: the embedded runc must not
	// touch the system manager's groups above it.
	if err := cgroup.Confine(); err != nil {
		fmt.Fprintln(os.Stderr, "kolejka-foreman:", err)
		os.Exit(cliexit.Failure)
	}
	os.Exit(cliexit.Run(app(), os.Args))
}

func app() *cli.App {
	flags := []cli.Flag{
		&cli.BoolFlag{Name: "debug", Aliases: []string{"d"}, Usage: "log debugging output (the default logs each task taken, run and posted, and problems)"},
		&cli.StringFlag{Name: "config-file", Usage: "kolejka.conf to read (default: the first of " + fmt.Sprint(config.SearchPath()) + ")"},
		&cli.StringFlag{Name: "config", Usage: "client section of kolejka.conf (default: [default] config, else client)"},
		&cli.StringFlag{Name: "server", Usage: "server URL (https:// is assumed); [client] server"},
		&cli.StringFlag{Name: "username", Usage: "the node's processor account; [client] username"},
		&cli.StringFlag{Name: "password", Usage: "[client] password"},
		&cli.StringFlag{Name: "token", Usage: "bearer token of the node's account (kolejka-server token NAME); [client] token"},
		&cli.StringFlag{Name: "runtime", Usage: "runc (default), docker or host; [foreman] runtime"},
		&cli.StringFlag{Name: "images", Usage: "the runc runtime's image store (default " + runtimes.DefaultImageRoot + "); [foreman] images"},
		&cli.StringFlag{Name: "temp", Usage: "the node's folder: tasks in progress, caches (default " + foreman.DefaultDir + "); [foreman] temp"},
		&cli.StringFlag{Name: "cache", Usage: "the caches' folder (default TEMP/cache); [foreman] cache"},
		&cli.StringFlag{Name: "cache-size", Usage: "budget of the input file cache (default 1G; -1 unbounded); [foreman] cache_size"},
		&cli.StringFlag{Name: "tags", Usage: "comma list of the node's tags (replaces [foreman] tags)"},
		&cli.BoolFlag{Name: "auto-tags", Value: true, Usage: "add the machine's tags (cpu, cpus, gpu, hostname, kernel); --auto-tags=false to not; [foreman] auto_tags"},
		&cli.IntFlag{Name: "concurency", Aliases: []string{"concurrency"}, Value: foreman.DefaultConcurrency, Usage: "most tasks at once; [foreman] concurency"},
		&cli.Float64Flag{Name: "interval", Value: foreman.DefaultInterval.Seconds(), Usage: "seconds between polls on servers without long polling; [foreman] interval"},
		&cli.BoolFlag{Name: "pull", Usage: "docker runtime: pull the task's image before every run; [foreman] pull"},
		&cli.StringFlag{Name: "output-limit", Usage: "cap of each stdout/stderr file of a task (default 64M); [foreman] output_limit"},
		&cli.StringFlag{Name: "memory-reserve", Usage: "memory never offered to tasks (default 512M, at most half); [foreman] memory_reserve"},
		&cli.StringFlag{Name: "defaults", Usage: `limits for tasks that omit one the node declares (default "cpus=1"); [foreman] defaults`},
	}
	return &cli.App{
		Name:      "kolejka-foreman",
		Usage:     "run a Kolejka grid node: take tasks from the server, run them, post their results",
		UsageText: "kolejka-foreman [options] (limit options cap what the node offers: --cpus, --memory, …; --time, --image cap each task)",
		Flags:     append(flags, limitflags.Flags()...),
		Action:    run,
	}
}

// settings reads kolejka.conf and puts the command line on top.
func settings(c *cli.Context) (foreman.Settings, error) {
	conf, err := config.Load(c.String("config-file"))
	if err != nil {
		return foreman.Settings{}, cliexit.WithCode(cliexit.Usage, err)
	}
	s, err := foreman.ReadSettings(conf, c.String("config"))
	if err != nil {
		return s, cliexit.WithCode(cliexit.Usage, err)
	}
	str := map[string]*string{
		"server": &s.Server, "username": &s.Username, "password": &s.Password, "token": &s.Token,
		"runtime": &s.Runtime, "images": &s.Images, "temp": &s.Dir, "cache": &s.Cache,
	}
	for name, dst := range str {
		if c.IsSet(name) {
			*dst = c.String(name)
		}
	}
	sizes := map[string]*int64{"cache-size": &s.CacheSize, "output-limit": &s.OutputLimit, "memory-reserve": &s.MemoryReserve}
	for name, dst := range sizes {
		if !c.IsSet(name) {
			continue
		}
		if v := c.String(name); v == "-1" {
			*dst = -1
		} else if *dst, err = spec.ParseSize(v); err != nil {
			return s, cliexit.UsageError("--%s: %v", name, err)
		}
	}
	if c.IsSet("tags") {
		s.Tags = config.SplitList(c.String("tags"))
	}
	if c.IsSet("auto-tags") {
		s.AutoTags = c.Bool("auto-tags")
	}
	if c.IsSet("pull") {
		s.Pull = c.Bool("pull")
	}
	if c.IsSet("concurency") {
		if s.Concurrency = c.Int("concurency"); s.Concurrency < 1 {
			return s, cliexit.UsageError("--concurency: must be at least 1")
		}
	}
	if c.IsSet("interval") {
		if v := c.Float64("interval"); v > 0 {
			s.Interval = time.Duration(v * float64(time.Second))
		} else {
			return s, cliexit.UsageError("--interval: must be positive")
		}
	}
	if c.IsSet("defaults") {
		if s.Defaults, err = spec.ParseLimitList(c.String("defaults")); err != nil {
			return s, cliexit.UsageError("--defaults: %v", err)
		}
	}
	// A limit option replaces the file's value, larger or smaller.
	for _, key := range spec.LimitKeys() {
		name := strings.ReplaceAll(key, "_", "-")
		if c.IsSet(name) {
			if err := spec.ParseLimit(&s.Limits, key, c.String(name)); err != nil {
				return s, cliexit.UsageError("--%s: %v", name, err)
			}
		}
	}
	return s, nil
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
	s, err := settings(c)
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
		f, err := foreman.Open(openCtx, s, log)
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
