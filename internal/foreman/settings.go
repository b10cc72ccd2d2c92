package foreman

// This file owns the node's settings as kolejka.conf gives them, and Open,
// which turns them into a running node's parts: the machine's capacity and
// tags, the runtime, the worker, the client and the image store.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/config"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/runtimes"
)

// Section is kolejka.conf's section of the foreman.
const Section = "foreman"

// DefaultDir is the node's folder when neither temp nor --temp names one.
const DefaultDir = "/var/lib/kolejka/foreman"

// Settings are a node's settings: the client section (how to reach the
// server) and [foreman] of kolejka.conf, with the command line on top.
type Settings struct {
	// The client section: server, username and password, or token.
	Server, Username, Password, Token string

	Runtime  string // runtime: runc (default), docker, host
	Images   string // images: the runc runtime's image store folder
	InitPath string // init_path: kolejka-init (default: beside the executable)
	Pull     bool   // pull: docker pulls the task's image before every run

	Dir         string        // temp: the node's folder (DefaultDir)
	Cache       string        // cache: the caches' folder (default <temp>/cache)
	CacheSize   int64         // cache_size: the blob cache's budget (default 1G; -1 unbounded)
	Interval    time.Duration // interval: pause between polls without long polling (10 s)
	Concurrency int           // concurency (sic): tasks at once (8)
	AutoTags    bool          // auto_tags: add the machine's tags (true)
	Tags        []string      // tags: comma list

	// Limits are the limit keys of [foreman]: caps of the node's capacity
	// (cpus, memory, swap, pids, storage, workspace, gpus) and per-task
	// maxima (time, image — also the image cache's budget —, network, …).
	Limits spec.Limits
	// MemoryReserve (memory_reserve) is memory never offered to tasks
	// (DefaultMemoryReserve; at most half the machine's).
	MemoryReserve int64
	// Defaults (defaults, e.g. "cpus=1,memory=1G") are given to tasks that
	// omit a limit the node declares (cpus=1; without memory, Open gives
	// memory a core's share of the node's: memory / cores).
	Defaults spec.Limits
	// OutputLimit (output_limit) caps each stdout/stderr file of a task
	// (worker.DefaultOutputLimit).
	OutputLimit int64
}

// ReadSettings reads the node's settings from kolejka.conf: the client
// section clientSection ("" for [default] config, else client) and
// [foreman], each key falling back to [default]. Errors name the file,
// section and key.
func ReadSettings(f *config.File, clientSection string) (Settings, error) {
	s := Settings{
		Dir:           DefaultDir,
		Interval:      DefaultInterval,
		Concurrency:   DefaultConcurrency,
		AutoTags:      true,
		MemoryReserve: DefaultMemoryReserve,
	}
	one := int64(1)
	s.Defaults.CPUs = &one
	cs := f.ClientSection(clientSection)
	get := func(section, key string) string { v, _ := f.Get(section, key); return v }
	s.Server, s.Username, s.Password, s.Token = get(cs, "server"), get(cs, "username"), get(cs, "password"), get(cs, "token")

	var errs []error
	bad := func(key string, err error) { errs = append(errs, f.Error(Section, key, err)) }
	str := func(key string, dst *string) {
		if v := get(Section, key); v != "" {
			*dst = v
		}
	}
	str("runtime", &s.Runtime)
	str("images", &s.Images)
	str("init_path", &s.InitPath)
	str("temp", &s.Dir)
	str("cache", &s.Cache)
	boolean := func(key string, dst *bool) {
		if v := get(Section, key); v != "" {
			b, err := spec.ParseBool(v)
			if err != nil {
				bad(key, err)
			}
			*dst = b
		}
	}
	boolean("pull", &s.Pull)
	boolean("auto_tags", &s.AutoTags)
	size := func(key string, dst *int64) {
		if v := get(Section, key); v != "" {
			if v == "-1" {
				*dst = -1
				return
			}
			n, err := spec.ParseSize(v)
			if err != nil {
				bad(key, err)
			}
			*dst = n
		}
	}
	size("cache_size", &s.CacheSize)
	size("memory_reserve", &s.MemoryReserve)
	size("output_limit", &s.OutputLimit)
	if v := get(Section, "interval"); v != "" {
		d, err := spec.ParseTime(v)
		if err == nil && d <= 0 {
			err = errors.New("must be positive")
		}
		if err != nil {
			bad("interval", err)
		}
		s.Interval = d
	}
	if v := get(Section, "concurency"); v != "" {
		n, err := strconv.Atoi(v)
		if err == nil && n < 1 {
			err = errors.New("must be at least 1")
		}
		if err != nil {
			bad("concurency", err)
		}
		s.Concurrency = n
	}
	s.Tags = config.SplitList(get(Section, "tags"))
	if v := get(Section, "defaults"); v != "" {
		l, err := spec.ParseLimitList(v)
		if err != nil {
			bad("defaults", err)
		}
		s.Defaults = l
	}
	var err error
	if s.Limits, err = f.Limits(Section); err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

// Open makes the node these settings describe: it finds the machine's
// cores, memory and GPUs and makes the capacity and tags of them, opens the
// runtime and a worker on it (which sweeps what killed workers left), signs
// in to the server (waiting, while ctx lasts, for a server that cannot be
// reached yet: a node may boot before it) and returns the foreman, not yet
// running.
func Open(ctx context.Context, s Settings, log *slog.Logger) (*Foreman, error) {
	if log == nil {
		log = slog.Default()
	}
	m, err := DetectMachine(ctx)
	if err != nil {
		return nil, err
	}
	rt, err := runtimes.Open(s.Runtime, runtimes.Options{ImageRoot: s.Images, Pull: s.Pull})
	if err != nil {
		return nil, fmt.Errorf("unable to open the runtime: %w", err)
	}
	// The worker gives tasks no GPUs yet (it refuses a gpus limit with
	// every runtime): offer none, so that no GPU task comes here to fail.
	const gpus = false
	if len(m.GPUs) > 0 {
		log.Warn("GPUs found but the worker cannot give them to tasks: offering none", "gpus", len(m.GPUs))
	}
	capacity, cores := m.Capacity(s.MemoryReserve, s.Limits, gpus)
	defaults := s.Defaults.Clone()
	if defaults.Memory == nil && capacity.Memory != nil && len(cores) > 0 {
		// A task without a memory limit gets a core's share of the node's
		// memory, not all of it (which would keep every other task out).
		share := *capacity.Memory / int64(len(cores))
		defaults.Memory = &share
	}
	tags := s.Tags
	if s.AutoTags {
		auto, err := AutoTags(m.GPUs)
		if err != nil {
			return nil, err
		}
		tags = append(tags, auto...)
	}
	tags = NormalizeTags(tags)
	dir := s.Dir
	if dir == "" {
		dir = DefaultDir
	}
	scratch := filepath.Join(dir, "scratch")
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return nil, fmt.Errorf("unable to create %s: %w", scratch, err)
	}
	w, err := worker.New(ctx, worker.Config{
		Temp:        scratch,
		Tags:        tags,
		OutputLimit: s.OutputLimit,
		InitPath:    s.InitPath,
		Logger:      log,
	}, rt)
	if err != nil {
		return nil, fmt.Errorf("unable to prepare the worker: %w", err)
	}
	var images ImageStore
	switch rt.Name() {
	case "runc":
		st, err := runtimes.OpenImages(runtimes.Options{ImageRoot: s.Images})
		if err != nil {
			return nil, err
		}
		images = RuncImages{Store: st}
	case "docker":
		if images, err = NewDockerImages(); err != nil {
			return nil, err
		}
	}
	cl, err := Connect(ctx, client.Config{Server: s.Server, Username: s.Username, Password: s.Password, Token: s.Token}, log)
	if err != nil {
		return nil, err
	}
	var login func(context.Context) error
	if s.Token == "" && s.Username != "" {
		login = cl.Login
	}
	return New(Config{
		Client:      cl,
		Login:       login,
		Executor:    w,
		Images:      images,
		Dir:         dir,
		CacheDir:    s.Cache,
		CacheSize:   s.CacheSize,
		Capacity:    capacity,
		Cores:       cores,
		Defaults:    defaults,
		Tags:        tags,
		Concurrency: s.Concurrency,
		Interval:    s.Interval,
		Logger:      log,
	})
}

// Connect signs in to the server, retrying while it cannot be reached
// (until ctx ends); a refused sign-in is an error at once.
func Connect(ctx context.Context, cfg client.Config, log *slog.Logger) (*client.Client, error) {
	if strings.TrimSpace(cfg.Server) == "" {
		return nil, fmt.Errorf("no server configured (server in the client section of kolejka.conf): %w", ErrConfig)
	}
	bo := Retry{Max: 30 * time.Second}.backoff()
	for {
		cl, err := client.New(ctx, cfg)
		if err == nil {
			return cl, nil
		}
		if !errors.Is(err, client.ErrConnect) || ctx.Err() != nil {
			return nil, err
		}
		d := bo.delay()
		log.Warn("unable to reach the server; retrying", "error", err, "in", d.Round(time.Millisecond))
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
	}
}
