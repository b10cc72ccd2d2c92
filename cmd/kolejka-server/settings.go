package main

// This file declares the server's settings: each comes from its flag, else
// its environment variable (KOLEJKA_SERVER_<NAME>), else the [server]
// section of kolejka.conf (--config-file, or the first of the usual
// places), else the server's default (package settings resolves them).

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/settings"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/spec"
)

// section is the kolejka.conf section the server reads.
const section = "server"

// Defaults of what server.Config does not default itself.
const (
	defaultData   = "/var/lib/kolejka/server"
	defaultListen = "127.0.0.1:8000"
)

// options are what the server's commands read: the server's
// configuration and, for serve, the address to listen on.
type options struct {
	server.Config
	Listen string
}

// field is one of the options. Its name gives the flag (--name), the
// environment variable (envVar) and the key of [server] (name with "_"
// for "-"); value stores a setting's text into the options, show writes
// the options' value as `config` prints it.
type field struct {
	name, usage string
	value       func(*options) settings.Value
	show        func(*options) string
}

func envVar(name string) string {
	return "KOLEJKA_SERVER_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// setting is the field's setting, storing into o.
func (f field) setting(o *options) settings.Setting {
	return settings.Setting{
		Flag:    &cli.StringFlag{Name: f.name, Usage: f.usage},
		Env:     envVar(f.name),
		Section: section,
		Key:     strings.ReplaceAll(f.name, "-", "_"),
		Value:   f.value(o),
	}
}

// Fields of each kind; the server's own values are trimmed, as the file's
// are.
func text(name, usage string, p func(*options) *string) field {
	return field{name, usage,
		func(o *options) settings.Value { return settings.Trim(settings.String(p(o))) },
		func(o *options) string { return *p(o) }}
}

// secret is a text field that `config` does not print.
func secret(name, usage string, p func(*options) *string) field {
	return field{name, usage,
		func(o *options) settings.Value { return settings.Trim(settings.String(p(o))) },
		func(o *options) string {
			if *p(o) == "" {
				return ""
			}
			return "(set, not shown)"
		}}
}

func size(name, usage string, p func(*options) *int64) field {
	return field{name, usage,
		func(o *options) settings.Value { return settings.Size(p(o)) },
		func(o *options) string { return spec.FormatSize(*p(o)) }}
}

func duration(name, usage string, p func(*options) *time.Duration) field {
	return field{name, usage,
		func(o *options) settings.Value { return settings.Duration(p(o)) },
		func(o *options) string { return spec.FormatTime(*p(o)) }}
}

func count(name, usage string, p func(*options) *int) field {
	return field{name, usage,
		func(o *options) settings.Value { return settings.Int(p(o)) },
		func(o *options) string { return strconv.Itoa(*p(o)) }}
}

func list(name, usage string, p func(*options) *[]string) field {
	return field{name, usage,
		func(o *options) settings.Value { return settings.List(p(o)) },
		func(o *options) string { return strings.Join(*p(o), ",") }}
}

// dataField is --data, a flag of every command (they all open the data
// folder).
var dataField = field{"data", "data folder (database and blobs; default: [server] data, else " + defaultData + ")",
	func(o *options) settings.Value { return settings.String(&o.DataDir) },
	func(o *options) string { return o.DataDir }}

// databaseField is --database, a flag of every command too: the admin
// commands open the database the server uses.
var databaseField = field{"database", "PostgreSQL database, postgres://user:password@host:port/db (default: the SQLite file kolejka.sqlite3 in the data folder)",
	func(o *options) settings.Value { return settings.String(&o.Database) },
	func(o *options) string { return store.Redact(o.Database) }}

// limitsField is the caps: the limit keys of [server] and the limit flags
// on top, key by key (settings.Limits); `config` prints them in one line.
var limitsField = field{name: "limits", show: func(o *options) string { return o.Limits.String() }}

// serveFields are the options serve reads besides data, in the order
// `config` prints them.
func serveFields() []field {
	return []field{
		{"listen", "address to listen on (default " + defaultListen + "; [server] listen)",
			func(o *options) settings.Value { return settings.String(&o.Listen) },
			func(o *options) string { return o.Listen }},
		text("prefix", "URL path prefix of the API, e.g. /kolejka/ (default /)", func(o *options) *string { return &o.Prefix }),
		text("tls-cert", "TLS certificate file (with --tls-key: serve HTTPS)", func(o *options) *string { return &o.TLSCert }),
		text("tls-key", "TLS key file", func(o *options) *string { return &o.TLSKey }),
		text("blobs", "where blobs are kept: empty for the data folder's blobs/ (default), or s3://BUCKET?endpoint=http(s)://HOST:PORT&region=REGION", func(o *options) *string { return &o.Blobs }),
		text("blobs-access-key", "S3 access key of blobs (default: AWS_ACCESS_KEY_ID)", func(o *options) *string { return &o.BlobsAccessKey }),
		secret("blobs-secret-key", "S3 secret key of blobs (default: AWS_SECRET_ACCESS_KEY)", func(o *options) *string { return &o.BlobsSecretKey }),
		duration("blobs-grace", "how old a blob without a database row must be before it is removed (default 0 for the folder, 1H for S3)", func(o *options) *time.Duration { return &o.BlobGrace }),
		text("synchronous", "SQLite synchronous mode: NORMAL (survives a server crash; default) or FULL (survives power loss, slower)", func(o *options) *string { return &o.Synchronous }),
		size("max-json-body", "largest task/dequeue/heartbeat/login body (default 1M)", func(o *options) *int64 { return &o.MaxJSONBody }),
		size("max-result-body", "largest result body: it lists every output file (default 16M)", func(o *options) *int64 { return &o.MaxResultBody }),
		size("max-blob-size", "largest blob (default 1G)", func(o *options) *int64 { return &o.MaxBlobSize }),
		duration("lease", "how long a heartbeating node keeps its tasks after a heartbeat (default 60s)", func(o *options) *time.Duration { return &o.LeaseTime }),
		duration("lease-margin", "added to the lease of nodes that never heartbeat (default 10M)", func(o *options) *time.Duration { return &o.LeaseMargin }),
		duration("default-task-time", "time limit given to tasks without one when handed out, unless defaults names one (default 1H)", func(o *options) *time.Duration { return &o.DefaultTaskTime }),
		count("max-attempts", "hand-outs before a lost lease gives the task an SE result (default 3)", func(o *options) *int { return &o.MaxAttempts }),
		duration("queue-timeout", "give an SE result to tasks no node took in this time (default: never)", func(o *options) *time.Duration { return &o.QueueTimeout }),
		count("scan-window", "oldest queued tasks one dequeue looks at (default 1000)", func(o *options) *int { return &o.ScanWindow }),
		duration("max-wait", "longest long poll (default 60s)", func(o *options) *time.Duration { return &o.MaxWait }),
		duration("gc-interval", "how often unreferenced blobs are collected (default 1H)", func(o *options) *time.Duration { return &o.GCInterval }),
		duration("session-age", "how long a login lasts (default 14D)", func(o *options) *time.Duration { return &o.SessionAge }),
		duration("token-age", "how long a bearer token made by `token` lasts (default 365D)", func(o *options) *time.Duration { return &o.TokenAge }),
		duration("upload-grace", "how long a node's upload may wait for its result; then, if no result or task holds it, it is removed (default 1D)", func(o *options) *time.Duration { return &o.UploadGrace }),
		list("trusted-origins", "comma list of extra hosts accepted in Referer (behind a proxy)", func(o *options) *[]string { return &o.TrustedOrigins }),
		list("callback-hosts", "comma list of hosts task callbacks may go to (host, host:port, *.domain, *); default none: callbacks refused", func(o *options) *[]string { return &o.CallbackHosts }),
		count("callback-attempts", "delivery attempts per callback (default 10)", func(o *options) *int { return &o.CallbackAttempts }),
		duration("callback-backoff", "first retry delay of a callback, doubled each time (default 1s)", func(o *options) *time.Duration { return &o.CallbackBackoff }),
		duration("callback-timeout", "timeout of one callback attempt (default 10s)", func(o *options) *time.Duration { return &o.CallbackTimeout }),
		limitsField,
		{"defaults", `limits for tasks that omit them, e.g. "cpus=2,memory=2G" (cpus=1, memory=1G and time=default_task_time always apply where not named)`,
			func(o *options) settings.Value { return settings.LimitList(&o.Defaults) },
			func(o *options) string { return o.Defaults.String() }},
	}
}

// table is the settings of fields, storing into o.
func table(o *options, fields []field) []settings.Setting {
	var t []settings.Setting
	for _, f := range fields {
		if f.name == limitsField.name {
			t = append(t, settings.Limits(&o.Limits, section)...)
			continue
		}
		t = append(t, f.setting(o))
	}
	return t
}

// globalFlags are the flags of every command.
func globalFlags() []cli.Flag {
	return append(settings.Flags([]settings.Setting{
		dataField.setting(new(options)),
		databaseField.setting(new(options)),
		settings.File(new(string), envVar("config-file")),
	}),
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log requests and events (serve logs them anyway)"},
		&cli.BoolFlag{Name: "debug", Aliases: []string{"d"}, Usage: "log debugging output"},
	)
}

// serveFlags are the flags of serve and config.
func serveFlags() []cli.Flag {
	return settings.Flags(table(new(options), serveFields()))
}

// load resolves the data folder and, with serve, every option serve
// reads (config shows them; token uses token_age): flags over environment
// variables over kolejka.conf over defaults.
func load(c *cli.Context, serve bool) (options, error) {
	o := options{Config: server.Config{DataDir: defaultData, Logger: slog.Default()}, Listen: defaultListen}
	f, err := settings.Load(c, envVar("config-file"))
	if err != nil {
		return o, err
	}
	fields := []field{dataField, databaseField}
	if serve {
		fields = append(fields, serveFields()...)
	}
	return o, settings.Resolve(c, f, table(&o, fields))
}

// printConfig writes the effective options as a [server] section.
func printConfig(w io.Writer, o options) {
	fmt.Fprintf(w, "[%s]\n", section)
	for _, f := range append([]field{dataField, databaseField}, serveFields()...) {
		if strings.HasPrefix(f.name, "tls-") && o.TLSCert == "" {
			continue // no TLS: no TLS lines
		}
		fmt.Fprintf(w, "%s = %s\n", strings.ReplaceAll(f.name, "-", "_"), f.show(&o))
	}
}
