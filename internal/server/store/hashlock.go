package store

// This file owns the blob locks between processes. The server holds a
// blob's lock across "file in place + row committed" (an upload) and "row
// deleted + file removed" (a collection), so that neither sees the other
// half done (internal/server/gc.go). Within one process an in-memory lock
// does that; replicas on one PostgreSQL database share a blob store, so
// there the lock is also a session-level advisory lock, held on a
// connection of its own for as long as the caller holds it.

import (
	"context"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
)

// blobLockConns bounds the connections blob locks hold at once; a lock
// beyond them waits for one.
const blobLockConns = 32

// LockBlob takes the lock of blob hash among processes sharing the
// database, and returns its release. On SQLite (one server process) it
// does nothing.
func (s *Store) LockBlob(ctx context.Context, hash string) (func(), error) {
	if s.locks == nil {
		return func() {}, nil
	}
	k1, k2, err := blobLockKeys(hash)
	if err != nil {
		return nil, err
	}
	conn, err := s.locks.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("unable to lock blob %s: %w", hash, err)
	}
	// The two-key form: a key space apart from the write lock's one key.
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(?, ?)`, k1, k2); err != nil {
		_ = conn.Close() // the lock was not taken
		return nil, fmt.Errorf("unable to lock blob %s: %w", hash, err)
	}
	return func() {
		if _, err := conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock(?, ?)`, k1, k2); err != nil {
			// Not sure the lock went: end the session, which ends it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		_ = conn.Close()
	}, nil
}

// blobLockKeys are the two 32-bit keys of hash's advisory lock: its first
// eight bytes. Two hashes sharing them share a lock, which only costs
// waiting.
func blobLockKeys(hash string) (int32, int32, error) {
	if len(hash) < 16 {
		return 0, 0, fmt.Errorf("unable to lock blob %q: not a hash", hash)
	}
	b, err := hex.DecodeString(hash[:16])
	if err != nil {
		return 0, 0, fmt.Errorf("unable to lock blob %q: not a hash", hash)
	}
	k1 := int32(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
	k2 := int32(uint32(b[4])<<24 | uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7]))
	return k1, k2, nil
}
