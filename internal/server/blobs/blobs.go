// Package blobs is the server's content-addressed file store: every blob is
// named by the SHA-256 of its bytes, so one content is stored once however
// many references point at it. Store is the role the server uses; Folder
// (this package) keeps blobs in a local folder, the default, and package
// blobs/s3 keeps them in an S3 bucket. blobstest is the conformance suite
// both pass.
//
// Lifecycle of a blob, whatever the store:
//
//  1. Write streams the bytes somewhere temporary, hashing them on the way
//     and refusing more than the size limit.
//  2. Temp.Commit moves them under their hash: a partial blob never lives
//     under its hash, even after a crash.
//  3. The caller records the blob in its database only after Commit, so a
//     database row always has its blob. A crash between the two leaves a
//     blob without a row; Walk lists the blobs so the caller can remove
//     those at start-up.
//  4. Remove deletes a blob nothing refers to any more. Deciding that is
//     the caller's job (see the server's garbage collector and its per-hash
//     lock).
//
// CleanTemp removes temporary uploads a crashed process left behind.
package blobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// Errors of the stores.
var (
	// ErrTooLarge is returned by Write when the content exceeds the limit.
	ErrTooLarge = errors.New("blob exceeds the size limit")
	// ErrBadHash is a hash that is not 64 lower-case hex digits.
	ErrBadHash = errors.New("not a SHA-256 hex digest")
	// ErrNotFound is a blob that is not in the store (errors.Is also
	// matches fs.ErrNotExist for the folder).
	ErrNotFound = errors.New("blob not found")
	// ErrBackend is a failure of the storage behind the store (an S3
	// request that failed), as opposed to the upload's body.
	ErrBackend = errors.New("blob storage failed")
)

// Store is a content-addressed blob store. It is safe for concurrent use;
// two uploads of the same content both succeed and leave one blob.
type Store interface {
	// Write streams r somewhere temporary, hashing it. More than limit
	// bytes is ErrTooLarge (limit < 0: no limit). A read error (a client
	// that went away mid-upload) is returned wrapped. On any error nothing
	// is left behind.
	Write(ctx context.Context, r io.Reader, limit int64) (Temp, error)
	// Open opens the blob of hash for reading; a missing one is
	// ErrNotFound, a malformed hash ErrBadHash.
	Open(ctx context.Context, hash string) (Reader, error)
	// Exists reports whether the blob is in place.
	Exists(ctx context.Context, hash string) (bool, error)
	// Remove deletes the blob; a missing blob is not an error.
	Remove(ctx context.Context, hash string) error
	// Walk calls fn with every blob in place, in no particular order.
	// Entries that are not blobs (wrong name or place) are reported in
	// bad, never deleted by the store.
	Walk(ctx context.Context, fn func(Info) error) (bad []string, err error)
	// CleanTemp removes the temporary uploads last written before
	// before, and says how many. Only uploads that cannot be running may
	// be removed: the caller picks before accordingly.
	CleanTemp(ctx context.Context, before time.Time) (int, error)
}

// Temp is a blob written but not yet in place. Exactly one of Commit and
// Discard must be called.
type Temp interface {
	// Blob is what was written.
	Blob() Blob
	// Commit moves the bytes under their hash, durably. If the blob
	// already exists the result is the same blob. The caller must hold
	// whatever lock keeps a garbage collector off this hash until its
	// database row is committed.
	Commit(ctx context.Context) error
	// Discard drops the temporary bytes.
	Discard()
}

// Reader is an open blob: what http.ServeContent needs.
type Reader interface {
	io.ReadSeekCloser
	Info() Info
}

// Blob names stored content.
type Blob struct {
	Hash string // SHA-256, 64 lower-case hex digits
	Size int64
}

// Info is a blob in place.
type Info struct {
	Blob
	// ModTime is when the blob was last put in place (the time of its
	// latest Commit, where the store can tell).
	ModTime time.Time
}

// ValidHash reports whether h is 64 lower-case hex digits.
func ValidHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Hasher returns a new SHA-256 state and the way to name its digest.
func Hasher() hash.Hash { return sha256.New() }

// Digest is the hex digest of h.
func Digest(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// LimitReader reads r, failing with ErrTooLarge once more than limit
// bytes came (limit < 0: no limit), so a streaming upload is cut as soon
// as it is too large.
func LimitReader(r io.Reader, limit int64) io.Reader {
	if limit < 0 {
		return r
	}
	return &limitReader{r: r, left: limit}
}

type limitReader struct {
	r    io.Reader
	left int64 // bytes still allowed
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, ErrTooLarge
	}
	// Read one byte past the limit to tell "exactly the limit" from more.
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, ErrTooLarge
	}
	return n, err
}

// Verify re-reads the blob of hash and reports whether its bytes match
// its name.
func Verify(ctx context.Context, s Store, hash string) (bool, error) {
	f, err := s.Open(ctx, hash)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, fmt.Errorf("unable to read blob: %w", err)
	}
	return Digest(h) == hash, nil
}
