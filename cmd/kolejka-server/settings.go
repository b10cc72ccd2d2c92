package main

// This file resolves the server's configuration: each setting comes from
// its flag, else its environment variable (KOLEJKA_SERVER_<NAME>), else the
// [server] section of kolejka.conf (--config-file, or the first of the
// usual places), else the server's default. Flags win.

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/internal/config"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
)

// section is the kolejka.conf section the server reads.
const section = "server"

// defaultData is the data folder when nothing names one.
const defaultData = "/var/lib/kolejka/server"

type kind int

const (
	kString kind = iota
	kTime
	kSize
	kInt
	kList
	kLimits
)

// setting is one configurable value of server.Config.
type setting struct {
	name  string // flag; INI key and env var derive from it
	kind  kind
	usage string
	apply func(c *server.Config, v any)
}

func (s setting) iniKey() string { return strings.ReplaceAll(s.name, "-", "_") }

func envVar(name string) string {
	return "KOLEJKA_SERVER_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// serverSettings lists what `serve` (and `config`) read.
func serverSettings() []setting {
	str := func(f func(*server.Config) *string) func(*server.Config, any) {
		return func(c *server.Config, v any) { *f(c) = v.(string) }
	}
	dur := func(f func(*server.Config) *time.Duration) func(*server.Config, any) {
		return func(c *server.Config, v any) { *f(c) = v.(time.Duration) }
	}
	i64 := func(f func(*server.Config) *int64) func(*server.Config, any) {
		return func(c *server.Config, v any) { *f(c) = v.(int64) }
	}
	num := func(f func(*server.Config) *int) func(*server.Config, any) {
		return func(c *server.Config, v any) { *f(c) = int(v.(int64)) }
	}
	list := func(f func(*server.Config) *[]string) func(*server.Config, any) {
		return func(c *server.Config, v any) { *f(c) = v.([]string) }
	}
	return []setting{
		{"prefix", kString, "URL path prefix of the API, e.g. /kolejka/ (default /)", str(func(c *server.Config) *string { return &c.Prefix })},
		{"tls-cert", kString, "TLS certificate file (with --tls-key: serve HTTPS)", str(func(c *server.Config) *string { return &c.TLSCert })},
		{"tls-key", kString, "TLS key file", str(func(c *server.Config) *string { return &c.TLSKey })},
		{"synchronous", kString, "SQLite synchronous mode: NORMAL (survives a server crash; default) or FULL (survives power loss, slower)", str(func(c *server.Config) *string { return &c.Synchronous })},
		{"max-json-body", kSize, "largest task/dequeue/heartbeat/login body (default 1M)", i64(func(c *server.Config) *int64 { return &c.MaxJSONBody })},
		{"max-result-body", kSize, "largest result body: it lists every output file (default 16M)", i64(func(c *server.Config) *int64 { return &c.MaxResultBody })},
		{"max-blob-size", kSize, "largest blob (default 1G)", i64(func(c *server.Config) *int64 { return &c.MaxBlobSize })},
		{"lease", kTime, "how long a heartbeating node keeps its tasks after a heartbeat (default 60s)", dur(func(c *server.Config) *time.Duration { return &c.LeaseTime })},
		{"lease-margin", kTime, "added to the lease of nodes that never heartbeat (default 10M)", dur(func(c *server.Config) *time.Duration { return &c.LeaseMargin })},
		{"default-task-time", kTime, "time limit given to tasks without one when handed out, unless defaults names one (default 1H)", dur(func(c *server.Config) *time.Duration { return &c.DefaultTaskTime })},
		{"max-attempts", kInt, "hand-outs before a lost lease gives the task an SE result (default 3)", num(func(c *server.Config) *int { return &c.MaxAttempts })},
		{"queue-timeout", kTime, "give an SE result to tasks no node took in this time (default: never)", dur(func(c *server.Config) *time.Duration { return &c.QueueTimeout })},
		{"scan-window", kInt, "oldest queued tasks one dequeue looks at (default 1000)", num(func(c *server.Config) *int { return &c.ScanWindow })},
		{"max-wait", kTime, "longest long poll (default 60s)", dur(func(c *server.Config) *time.Duration { return &c.MaxWait })},
		{"gc-interval", kTime, "how often unreferenced blobs are collected (default 1H)", dur(func(c *server.Config) *time.Duration { return &c.GCInterval })},
		{"session-age", kTime, "how long a login lasts (default 14D)", dur(func(c *server.Config) *time.Duration { return &c.SessionAge })},
		{"token-age", kTime, "how long a bearer token made by `token` lasts (default 365D)", dur(func(c *server.Config) *time.Duration { return &c.TokenAge })},
		{"upload-grace", kTime, "how long a node's upload may wait for its result; then, if no result or task holds it, it is removed (default 1D)", dur(func(c *server.Config) *time.Duration { return &c.UploadGrace })},
		{"trusted-origins", kList, "comma list of extra hosts accepted in Referer (behind a proxy)", list(func(c *server.Config) *[]string { return &c.TrustedOrigins })},
		{"callback-hosts", kList, "comma list of hosts task callbacks may go to (host, host:port, *.domain, *); default none: callbacks refused", list(func(c *server.Config) *[]string { return &c.CallbackHosts })},
		{"callback-attempts", kInt, "delivery attempts per callback (default 10)", num(func(c *server.Config) *int { return &c.CallbackAttempts })},
		{"callback-backoff", kTime, "first retry delay of a callback, doubled each time (default 1s)", dur(func(c *server.Config) *time.Duration { return &c.CallbackBackoff })},
		{"callback-timeout", kTime, "timeout of one callback attempt (default 10s)", dur(func(c *server.Config) *time.Duration { return &c.CallbackTimeout })},
		{"defaults", kLimits, `limits for tasks that omit them, e.g. "cpus=2,memory=2G" (cpus=1, memory=1G and time=default_task_time always apply where not named)`, func(c *server.Config, v any) { c.Defaults = v.(spec.Limits) }},
	}
}

func (s setting) flag() cli.Flag {
	return &cli.StringFlag{Name: s.name, Usage: s.usage, EnvVars: []string{envVar(s.name)}}
}

// parse reads one value of the setting's kind.
func (s setting) parse(v string) (any, error) {
	v = strings.TrimSpace(v)
	switch s.kind {
	case kTime:
		return spec.ParseTime(v)
	case kSize:
		return spec.ParseSize(v)
	case kInt:
		return strconv.ParseInt(v, 10, 64)
	case kList:
		return config.SplitList(v), nil
	case kLimits:
		return spec.ParseLimitList(v)
	}
	return v, nil
}

// globalFlags are the flags of every command.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "data", Usage: "data folder (database and blobs; default: [server] data, else " + defaultData + ")", EnvVars: []string{envVar("data")}},
		&cli.StringFlag{Name: "config-file", Usage: "kolejka.conf to read (default: the first of " + fmt.Sprint(config.SearchPath()) + ")", EnvVars: []string{envVar("config-file")}},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log requests and events (serve logs them anyway)"},
		&cli.BoolFlag{Name: "debug", Aliases: []string{"d"}, Usage: "log debugging output"},
	}
}

// loadConfig resolves the configuration: flags (and their env vars) over
// the INI file over defaults.
func loadConfig(c *cli.Context, withSettings bool) (server.Config, error) {
	conf, err := loadINI(c)
	if err != nil {
		return server.Config{}, err
	}
	var cfg server.Config
	cfg.DataDir = defaultData
	if v, ok := conf.Get(section, "data"); ok && v != "" {
		cfg.DataDir = v
	}
	if c.IsSet("data") {
		cfg.DataDir = c.String("data")
	}
	cfg.Logger = slog.Default()
	if !withSettings {
		return cfg, nil
	}
	for _, s := range serverSettings() {
		raw, from := "", ""
		if c.IsSet(s.name) {
			raw, from = c.String(s.name), "--"+s.name+" (or "+envVar(s.name)+")"
		} else if v, ok := conf.Get(section, s.iniKey()); ok && v != "" {
			raw, from = v, conf.Path+": ["+section+"] "+s.iniKey()
		} else {
			continue
		}
		v, err := s.parse(raw)
		if err != nil {
			return cfg, cliexit.UsageError("%s: %v", from, err)
		}
		s.apply(&cfg, v)
	}
	// Caps: [server] limit keys, then the limit flags on top, key by key.
	if cfg.Limits, err = conf.Limits(section); err != nil {
		return cfg, cliexit.WithCode(cliexit.Usage, err)
	}
	for _, key := range spec.LimitKeys() {
		name := strings.ReplaceAll(key, "_", "-")
		if c.IsSet(name) {
			if err := spec.ParseLimit(&cfg.Limits, key, c.String(name)); err != nil {
				return cfg, cliexit.UsageError("--%s: %v", name, err)
			}
		}
	}
	return cfg, nil
}

// printConfig writes the effective settings as a [server] section.
func printConfig(w io.Writer, cfg server.Config, listen string) {
	fmt.Fprintf(w, "[%s]\n", section)
	fmt.Fprintf(w, "data = %s\n", cfg.DataDir)
	fmt.Fprintf(w, "listen = %s\n", listen)
	fmt.Fprintf(w, "prefix = %s\n", cfg.Prefix)
	if cfg.TLSCert != "" {
		fmt.Fprintf(w, "tls_cert = %s\ntls_key = %s\n", cfg.TLSCert, cfg.TLSKey)
	}
	fmt.Fprintf(w, "synchronous = %s\n", cfg.Synchronous)
	fmt.Fprintf(w, "max_json_body = %s\n", spec.FormatSize(cfg.MaxJSONBody))
	fmt.Fprintf(w, "max_result_body = %s\n", spec.FormatSize(cfg.MaxResultBody))
	fmt.Fprintf(w, "max_blob_size = %s\n", spec.FormatSize(cfg.MaxBlobSize))
	fmt.Fprintf(w, "lease = %s\n", spec.FormatTime(cfg.LeaseTime))
	fmt.Fprintf(w, "lease_margin = %s\n", spec.FormatTime(cfg.LeaseMargin))
	fmt.Fprintf(w, "default_task_time = %s\n", spec.FormatTime(cfg.DefaultTaskTime))
	fmt.Fprintf(w, "max_attempts = %d\n", cfg.MaxAttempts)
	fmt.Fprintf(w, "queue_timeout = %s\n", spec.FormatTime(cfg.QueueTimeout))
	fmt.Fprintf(w, "scan_window = %d\n", cfg.ScanWindow)
	fmt.Fprintf(w, "max_wait = %s\n", spec.FormatTime(cfg.MaxWait))
	fmt.Fprintf(w, "gc_interval = %s\n", spec.FormatTime(cfg.GCInterval))
	fmt.Fprintf(w, "session_age = %s\n", spec.FormatTime(cfg.SessionAge))
	fmt.Fprintf(w, "token_age = %s\n", spec.FormatTime(cfg.TokenAge))
	fmt.Fprintf(w, "upload_grace = %s\n", spec.FormatTime(cfg.UploadGrace))
	fmt.Fprintf(w, "trusted_origins = %s\n", strings.Join(cfg.TrustedOrigins, ","))
	fmt.Fprintf(w, "callback_hosts = %s\n", strings.Join(cfg.CallbackHosts, ","))
	fmt.Fprintf(w, "callback_attempts = %d\n", cfg.CallbackAttempts)
	fmt.Fprintf(w, "callback_backoff = %s\n", spec.FormatTime(cfg.CallbackBackoff))
	fmt.Fprintf(w, "callback_timeout = %s\n", spec.FormatTime(cfg.CallbackTimeout))
	fmt.Fprintf(w, "limits = %s\n", cfg.Limits)
	fmt.Fprintf(w, "defaults = %s\n", cfg.Defaults)
}

// loadINI reads kolejka.conf (--config-file, or the first found).
func loadINI(c *cli.Context) (*config.File, error) {
	conf, err := config.Load(c.String("config-file"))
	if err != nil {
		return nil, cliexit.WithCode(cliexit.Usage, err)
	}
	return conf, nil
}
