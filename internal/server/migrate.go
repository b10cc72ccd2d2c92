package server

// This file owns moving an installation off SQLite (`kolejka-server
// migrate`): its blobs into another blob store (an S3 bucket), then its
// rows into an empty PostgreSQL database (store.CopySQLite), each verified.
// The source is only read, under its data folder's lock, so no server
// changes it meanwhile; blobs go first, so that no row of the target ever
// names a blob it lacks. A copy that failed may be run again: blobs already
// in the target are not copied twice, and the database copy is one
// transaction.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/kolejka-go/kolejka/internal/server/blobs"
	"github.com/kolejka-go/kolejka/internal/server/store"
)

// Migration is what Migrate moves, and where.
type Migration struct {
	// From is the installation: its data folder (and its blob store, the
	// folder unless From.Blobs names a bucket). Its database is SQLite.
	From Config
	// Database is the target PostgreSQL database, empty.
	Database string
	// Blobs, BlobsAccessKey and BlobsSecretKey are the target blob store,
	// as Config's; empty Blobs keeps the blobs where they are.
	Blobs, BlobsAccessKey, BlobsSecretKey string
}

// MigrationReport is what Migrate did.
type MigrationReport struct {
	Rows        map[string]int64 // per table
	BlobsCopied int64            // blobs written to the target
	BlobsThere  int64            // blobs the target held already
	Bytes       int64            // bytes copied
}

// Migrate copies the installation m.From into m.Database and, when m.Blobs
// is set, its blobs into m.Blobs, and verifies both: every blob's bytes
// hash to its name, every blob row has its blob in the target, and every
// table has as many rows in the target as in the source.
func Migrate(ctx context.Context, m Migration) (MigrationReport, error) {
	rep := MigrationReport{}
	from, err := m.From.WithDefaults()
	if err != nil {
		return rep, err
	}
	if from.Database != "" {
		return rep, fmt.Errorf("unable to migrate: %w: the installation's database is already %s", ErrConfig, store.Redact(from.Database))
	}
	if !store.IsPostgres(m.Database) {
		return rep, fmt.Errorf("unable to migrate: %w: --to must be a postgres:// URL, not %q", ErrConfig, store.Redact(m.Database))
	}
	src := filepath.Join(from.DataDir, DatabaseFile)
	lock, err := lockDir(from.DataDir)
	if err != nil {
		return rep, fmt.Errorf("unable to migrate (stop the server first): %w", err)
	}
	defer lock.Close()
	if m.Blobs != "" {
		source, err := openBlobs(from)
		if err != nil {
			return rep, fmt.Errorf("the installation's blob store: %w", err)
		}
		target, err := openBlobs(Config{DataDir: from.DataDir, Blobs: m.Blobs, BlobsAccessKey: m.BlobsAccessKey, BlobsSecretKey: m.BlobsSecretKey})
		if err != nil {
			return rep, fmt.Errorf("blobs setting: %w", err)
		}
		if err := copyBlobs(ctx, src, source, target, &rep); err != nil {
			return rep, err
		}
	}
	dst, err := store.Open(m.Database, store.Options{})
	if err != nil {
		return rep, fmt.Errorf("database setting: %w", err)
	}
	defer func() { _ = dst.Close() }() // the copy committed or rolled back whole
	copied, err := dst.CopySQLite(ctx, src)
	rep.Rows = copied.Rows
	return rep, err
}

// copyBlobs copies every blob row of the database file db from source to
// target, checking each one's bytes against its name.
func copyBlobs(ctx context.Context, db string, source, target blobs.Store, rep *MigrationReport) error {
	return store.SQLiteBlobs(ctx, db, func(hash string, size int64) error {
		there, err := target.Exists(ctx, hash)
		if err != nil {
			return fmt.Errorf("unable to read the target blob store: %w", err)
		}
		if there {
			rep.BlobsThere++
			return nil
		}
		r, err := source.Open(ctx, hash)
		if errors.Is(err, blobs.ErrNotFound) {
			return fmt.Errorf("unable to migrate: blob %s has a row but no file in the installation", hash)
		}
		if err != nil {
			return fmt.Errorf("unable to read blob %s: %w", hash, err)
		}
		tmp, err := target.Write(ctx, r, -1)
		r.Close()
		if err != nil {
			return fmt.Errorf("unable to copy blob %s: %w", hash, err)
		}
		if got := tmp.Blob(); got.Hash != hash || got.Size != size {
			tmp.Discard()
			return fmt.Errorf("unable to migrate: blob %s is damaged: its %d bytes hash to %s (its row says %d bytes)", hash, got.Size, got.Hash, size)
		}
		if err := tmp.Commit(ctx); err != nil {
			return fmt.Errorf("unable to copy blob %s: %w", hash, err)
		}
		rep.BlobsCopied++
		rep.Bytes += size
		return nil
	})
}
