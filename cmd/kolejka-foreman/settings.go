package main

// This file declares the node's settings: the client section of
// kolejka.conf (how to reach the server) and [foreman], with the options
// on top (package settings resolves them).

import (
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/settings"
	"github.com/kolejka-go/kolejka/internal/foreman"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker/image"
	"github.com/kolejka-go/kolejka/worker/runtimes"
)

// section is kolejka.conf's section of the foreman.
const section = "foreman"

// defaultDir is the node's folder when neither temp nor --temp names one.
const defaultDir = "/var/lib/kolejka/foreman"

// options are a node's settings.
type options struct {
	// The client section: server, username and password, or token.
	Server, Username, Password, Token string

	Runtime  string // runtime: runc (default), docker, host
	Images   string // images: the runc runtime's image store folder
	InitPath string // init_path: kolejka-init (default: beside the executable)
	Pull     bool   // pull: pull the task's image before every run (docker; runc from its registry)
	// Registry (registry_auth, registry_ca, registry_insecure): how the
	// runc runtime reaches registries for images it lacks.
	Registry image.RegistryConfig

	// State (state) holds the worker's run registry (State/worker) and
	// the runc runtime's container state (State/runc); "" is /run/kolejka.
	State string
	// CgroupRoot (cgroup_root) is the cgroup every run's group goes under
	// ("": kolejka below the node's delegated group). A node of its own
	// there, as `kolejka-server dev` makes, can be removed whole after.
	CgroupRoot string

	Dir         string        // temp: the node's folder (defaultDir)
	Cache       string        // cache: the caches' folder (default <temp>/cache)
	CacheSize   int64         // cache_size: the blob cache's budget (default 1G; -1 unbounded)
	Interval    time.Duration // interval: pause between polls without long polling (10 s)
	Concurrency int           // concurency (sic): tasks at once (8)
	Warm        int           // warm: containers kept prepared per task shape (0: off)
	AutoTags    bool          // auto_tags: add the machine's tags (true)
	Tags        []string      // tags: comma list
	Queues      []string      // queues: comma list of named queues to serve (none: the default queue)

	// Limits are the limit keys of [foreman]: caps of the node's capacity
	// (cpus, memory, swap, pids, storage, workspace, gpus) and per-task
	// maxima (time, image — also the image cache's budget —, network, …).
	Limits spec.Limits
	// MemoryReserve (memory_reserve) is memory never offered to tasks
	// (foreman.DefaultMemoryReserve; at most half the machine's).
	MemoryReserve int64
	// Defaults (defaults, e.g. "cpus=1,memory=1G") are given to tasks that
	// omit a limit the node declares (cpus=1; without memory, openNode
	// gives memory a core's share of the node's: memory / cores).
	Defaults spec.Limits
	// OutputLimit (output_limit) caps each stdout/stderr file of a task
	// (worker.DefaultOutputLimit).
	OutputLimit int64
	// PassEnv (pass_env, comma list) are the node's environment variables
	// a task made from a type may take, when its type names them too.
	PassEnv []string
}

// defaults are the options no source names: Kolejka's and ours.
func defaults() options {
	one := int64(1)
	return options{
		Dir:           defaultDir,
		Interval:      foreman.DefaultInterval,
		Concurrency:   foreman.DefaultConcurrency,
		Warm:          foreman.DefaultWarm,
		AutoTags:      true,
		MemoryReserve: foreman.DefaultMemoryReserve,
		Defaults:      spec.Limits{CPUs: &one},
	}
}

// table is the node's settings: the client section clientSection's keys
// and [foreman]'s, each with its option.
func (o *options) table(clientSection string) []settings.Setting {
	client := func(name, usage string, dst *string) settings.Setting {
		return settings.Setting{Flag: &cli.StringFlag{Name: name, Usage: usage}, Section: clientSection, Key: name, Value: settings.String(dst)}
	}
	node := func(flag cli.Flag, key string, v settings.Value) settings.Setting {
		return settings.Setting{Flag: flag, Section: section, Key: key, Value: v}
	}
	str := func(name, usage string) cli.Flag { return &cli.StringFlag{Name: name, Usage: usage} }
	return append([]settings.Setting{
		client("server", "server URL (https:// is assumed); [client] server", &o.Server),
		client("username", "the node's processor account; [client] username", &o.Username),
		client("password", "[client] password", &o.Password),
		client("token", "bearer token of the node's account (kolejka-server token NAME); [client] token", &o.Token),
		node(str("runtime", "runc (default), docker or host; [foreman] runtime"), "runtime", settings.String(&o.Runtime)),
		node(str("images", "the runc runtime's image store (default "+runtimes.DefaultImageRoot+"); [foreman] images"), "images", settings.String(&o.Images)),
		node(nil, "init_path", settings.String(&o.InitPath)),
		node(nil, "registry_auth", settings.String(&o.Registry.AuthFile)),
		node(nil, "registry_ca", settings.String(&o.Registry.CAFile)),
		node(nil, "registry_insecure", settings.List(&o.Registry.Insecure)),
		node(nil, "state", settings.String(&o.State)),
		node(nil, "cgroup_root", cgroupPath(&o.CgroupRoot)),
		node(&cli.BoolFlag{Name: "pull", Usage: "pull the task's image before every run (docker; runc: from its registry, reusing what the store holds); [foreman] pull"}, "pull", settings.Bool(&o.Pull)),
		node(str("temp", "the node's folder: tasks in progress, caches (default "+defaultDir+"); [foreman] temp"), "temp", settings.String(&o.Dir)),
		node(str("cache", "the caches' folder (default TEMP/cache); [foreman] cache"), "cache", settings.String(&o.Cache)),
		node(str("cache-size", "budget of the input file cache (default 1G; -1 unbounded); [foreman] cache_size"), "cache_size", settings.SizeOrUnbounded(&o.CacheSize)),
		node(&cli.Float64Flag{Name: "interval", Value: foreman.DefaultInterval.Seconds(), Usage: "seconds between polls on servers without long polling; [foreman] interval"},
			"interval", settings.PositiveDuration(&o.Interval)),
		node(&cli.IntFlag{Name: "concurency", Aliases: []string{"concurrency"}, Value: foreman.DefaultConcurrency, Usage: "most tasks at once; [foreman] concurency"},
			"concurency", settings.IntAtLeast(&o.Concurrency, 1)),
		node(&cli.IntFlag{Name: "warm", Value: foreman.DefaultWarm, Usage: "containers kept prepared ahead of tasks, per task shape (image, network), made while no task runs (default 1; 0: none); [foreman] warm"},
			"warm", settings.IntAtLeast(&o.Warm, 0)),
		node(&cli.BoolFlag{Name: "auto-tags", Value: true, Usage: "add the machine's tags (cpu, cpus, gpu, hostname, kernel); --auto-tags=false to not; [foreman] auto_tags"},
			"auto_tags", settings.Bool(&o.AutoTags)),
		node(str("tags", "comma list of the node's tags (replaces [foreman] tags)"), "tags", settings.List(&o.Tags)),
		node(str("queues", "comma list of the named queues the node takes tasks from (default: the default queue); [foreman] queues"), "queues", settings.List(&o.Queues)),
		node(str("output-limit", "cap of each stdout/stderr file of a task (default 64M); [foreman] output_limit"), "output_limit", settings.SizeOrUnbounded(&o.OutputLimit)),
		node(str("memory-reserve", "memory never offered to tasks (default 512M, at most half); [foreman] memory_reserve"), "memory_reserve", settings.SizeOrUnbounded(&o.MemoryReserve)),
		node(str("defaults", `limits for tasks that omit one the node declares (default "cpus=1"); [foreman] defaults`), "defaults", settings.LimitList(&o.Defaults)),
		node(str("pass-env", "comma list of this node's environment variables a task may take when its type names them too; [foreman] pass_env"), "pass_env", settings.List(&o.PassEnv)),
	}, settings.Limits(&o.Limits, section)...)
}

// flags are the options of the node's settings.
func flags() []cli.Flag {
	return settings.Flags(append([]settings.Setting{
		settings.File(new(string), ""),
		settings.Config(new(string), ""),
	}, new(options).table("")...))
}

// load reads kolejka.conf and resolves the node's options: each from its
// option, else the file (the client section --config names, else
// [default] config, else client; and [foreman]), else its default.
func load(c *cli.Context) (options, error) {
	o := defaults()
	f, err := settings.Load(c, "")
	if err != nil {
		return o, err
	}
	clientSection, err := settings.ClientSection(c, f, "")
	if err != nil {
		return o, err
	}
	return o, settings.Resolve(c, f, o.table(clientSection))
}

// cgroupPath stores a cgroup's path: absolute and clean, not the root.
func cgroupPath(dst *string) settings.Value {
	return func(v string) error {
		v = strings.TrimSpace(v)
		if !strings.HasPrefix(v, "/") || path.Clean(v) != v || v == "/" {
			return fmt.Errorf("%q is not a cgroup below the root: want a clean absolute path such as /kolejka-node", v)
		}
		*dst = v
		return nil
	}
}
