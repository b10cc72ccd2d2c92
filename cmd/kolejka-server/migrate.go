package main

// This file owns `kolejka-server migrate`: moving a stopped installation
// from SQLite (and its blob folder) to PostgreSQL (and an S3 bucket).

import (
	"fmt"
	"maps"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/server/store"
)

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "copy a stopped installation to PostgreSQL (and its blobs to an S3 bucket), verified; the data folder is left as it was",
		UsageText: "kolejka-server [--data DIR] migrate --to postgres://… [--blobs s3://BUCKET?endpoint=…] " +
			"[--blobs-access-key K --blobs-secret-key S]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "to", Usage: "the PostgreSQL database to copy into (it must exist and hold nothing)"},
			&cli.StringFlag{Name: "blobs", Usage: "the S3 bucket to copy the blobs into (default: they stay in the data folder)"},
			&cli.StringFlag{Name: "blobs-access-key", Usage: "the bucket's access key (default: AWS_ACCESS_KEY_ID)"},
			&cli.StringFlag{Name: "blobs-secret-key", Usage: "the bucket's secret key (default: AWS_SECRET_ACCESS_KEY)"},
		},
		Action: func(c *cli.Context) error {
			if err := cliexit.NoFlagsAfterArgs(c); err != nil {
				return err
			}
			if c.NArg() > 0 || c.String("to") == "" {
				return cliexit.UsageError("need --to and no arguments (usage: %s)", c.Command.UsageText)
			}
			o, err := load(c, true)
			if err != nil {
				return err
			}
			m := server.Migration{From: o.Config, Database: c.String("to"), Blobs: c.String("blobs"),
				BlobsAccessKey: c.String("blobs-access-key"), BlobsSecretKey: c.String("blobs-secret-key")}
			rep, err := server.Migrate(c.Context, m)
			if err != nil {
				return cliexit.UsageIf(err, server.ErrConfig, server.ErrLocked, store.ErrNotEmpty)
			}
			w := c.App.Writer
			if m.Blobs != "" {
				fmt.Fprintf(w, "blobs: %d copied (%d bytes), %d already there, each checked against its hash\n", rep.BlobsCopied, rep.Bytes, rep.BlobsThere)
			}
			for _, t := range slices.Sorted(maps.Keys(rep.Rows)) {
				fmt.Fprintf(w, "%-16s %d rows\n", t, rep.Rows[t])
			}
			fmt.Fprintf(w, "copied into %s; every table compared. Serve from there with [server] database", store.Redact(m.Database))
			if m.Blobs != "" {
				fmt.Fprint(w, " and blobs")
			}
			fmt.Fprintln(w, " set; the data folder is unchanged.")
			return nil
		},
	}
}
