package server

// This file owns the garbage collection of blobs no reference holds, of
// references nodes uploaded for results that never took them, and of
// expired sessions and tokens; the same pass writes down when bearer
// tokens were last used.
//
// The race it must not lose: a blob is garbage when its row has no
// reference, but an upload of the same bytes may be about to reference it
// again. Three paths touch a blob:
//
//   - upload (POST /blob/reference/): writes and fsyncs a temp file with no
//     lock, then, holding the blob's hash lock, moves it into place (or
//     finds the file there), and commits the blob row and the new reference;
//   - dedup (POST /blob/blob/<hash>/): one transaction that adds a
//     reference only if the blob row exists;
//   - collection: holding the hash lock, one transaction deletes the row
//     only if no reference points at it, then the file is removed, then
//     the lock is released.
//
// Transactions are serialised, so dedup either commits its reference first
// (the collector then sees it and keeps the blob) or finds no row (and
// answers 404: the client uploads). An upload and a collection hold the
// same hash lock across "file in place + row committed" and "row deleted +
// file removed", so an upload never commits a row for a file the collector
// is about to remove, and never finds a file the collector is removing.
// Replicas on one PostgreSQL database share the blob store: there the hash
// lock is also an advisory lock in the database (store.LockBlob).

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/internal/server/blobs"
)

// hashLocks is a striped lock over blob hashes.
type hashLocks struct {
	seed    maphash.Seed
	once    sync.Once
	stripes [256]sync.Mutex
}

func (l *hashLocks) of(hash string) *sync.Mutex {
	l.once.Do(func() { l.seed = maphash.MakeSeed() })
	return &l.stripes[maphash.String(l.seed, hash)%uint64(len(l.stripes))]
}

// lockBlob holds hash's lock: in this process (hashes) and, on a
// database replicas share, in every replica (store.LockBlob).
func (s *Server) lockBlob(ctx context.Context, hash string) (func(), error) {
	mu := s.hashes.of(hash)
	mu.Lock()
	unlock, err := s.db.LockBlob(ctx, hash)
	if err != nil {
		mu.Unlock()
		return nil, err
	}
	return func() {
		unlock()
		mu.Unlock()
	}, nil
}

// collect removes the blob of hash if no reference holds it.
//
// The blob store is asked first (blobAge): while it cannot answer (an S3
// outage) the row stays, so that a pass during an outage deletes nothing
// and the first pass after it collects the blob. Only a store that fails
// between that answer and the removal leaves an object without a row, which
// the next start-up's sweep removes.
func (s *Server) collect(ctx context.Context, hash string) (bool, error) {
	unlock, err := s.lockBlob(ctx, hash)
	if err != nil {
		return false, err
	}
	defer unlock()
	age, err := s.blobAge(ctx, hash)
	if err != nil {
		return false, err
	}
	deleted, err := s.db.DeleteBlobIfUnreferenced(ctx, hash)
	if err != nil || !deleted {
		return false, err
	}
	return true, s.removeOld(ctx, hash, age)
}

// dropBlob removes the blob of hash, whose row is gone, unless it was put
// in place less than BlobGrace ago (see removeOld).
func (s *Server) dropBlob(ctx context.Context, hash string) error {
	age, err := s.blobAge(ctx, hash)
	if err != nil {
		return err
	}
	return s.removeOld(ctx, hash, age)
}

// blobAge says how long ago the blob of hash was put in place: -1 when it
// is not in the store, 0 when the store keeps no age that matters here
// (BlobGrace 0: it is only checked to be reachable). An error is the store
// failing to answer.
func (s *Server) blobAge(ctx context.Context, hash string) (time.Duration, error) {
	if s.cfg.BlobGrace <= 0 {
		ok, err := s.blobs.Exists(ctx, hash)
		switch {
		case err != nil:
			return 0, err
		case !ok:
			return -1, nil
		}
		return 0, nil
	}
	r, err := s.blobs.Open(ctx, hash)
	if errors.Is(err, blobs.ErrNotFound) {
		return -1, nil
	}
	if err != nil {
		return 0, err
	}
	r.Close()
	return max(time.Since(r.Info().ModTime), 0), nil
}

// removeOld removes the blob of hash, whose row is gone and which was put
// in place age ago, unless that is less than BlobGrace: with a shared
// store (S3) another replica may have just committed it and be about to
// commit its row, which no lock of this process orders. A blob kept so is
// an orphan the next start-up's sweep removes.
func (s *Server) removeOld(ctx context.Context, hash string, age time.Duration) error {
	if age < 0 {
		return nil
	}
	if s.cfg.BlobGrace > 0 && age < s.cfg.BlobGrace {
		s.log.Info("kept a young unreferenced blob", "blob", hash, "age", age.Round(time.Second))
		return nil
	}
	return s.blobs.Remove(ctx, hash)
}

// collectGarbage removes expired sessions and tokens, the firings of each
// trigger past its latest keepFires, stale node uploads
// (store.SweepUploads) and every unreferenced blob.
func (s *Server) collectGarbage(ctx context.Context) {
	now := s.now()
	s.recordTokenUses(ctx)
	if n, err := s.db.DeleteExpiredSessions(ctx, now); err != nil {
		s.log.Error("garbage collection", "error", err)
	} else if n > 0 {
		s.log.Info("removed expired sessions", "count", n)
	}
	if n, err := s.db.DeleteExpiredTokens(ctx, now); err != nil {
		s.log.Error("garbage collection", "error", err)
	} else if n > 0 {
		s.log.Info("removed expired bearer tokens", "count", n)
	}
	if n, err := s.db.PruneFires(ctx, keepFires); err != nil {
		s.log.Error("garbage collection", "error", err)
	} else if n > 0 {
		s.log.Info("removed old firings of triggers", "count", n)
	}
	s.sweepUploads(ctx, now)
	total := 0
	for {
		hashes, err := s.db.UnreferencedBlobs(ctx, 500)
		if err != nil {
			s.log.Error("garbage collection", "error", err)
			return
		}
		removed := 0
		for _, h := range hashes {
			ok, err := s.collect(ctx, h)
			if err != nil {
				s.log.Error("garbage collection", "blob", h, "error", err)
				return
			}
			if ok {
				removed++
			}
		}
		total += removed
		if len(hashes) < 500 || removed == 0 {
			break
		}
	}
	if total > 0 {
		s.log.Info("removed unreferenced blobs", "count", total)
	}
}

// sweepUploads removes the references nodes uploaded more than
// UploadGrace ago that no result or task took (what a failed result post
// left behind, even by a node killed before it could clean up), then
// their blobs if nothing else holds them.
func (s *Server) sweepUploads(ctx context.Context, now time.Time) {
	total := 0
	for {
		hashes, err := s.db.SweepUploads(ctx, now.Add(-s.cfg.UploadGrace), 500)
		if err != nil {
			s.log.Error("garbage collection", "error", err)
			return
		}
		total += len(hashes)
		for _, h := range hashes {
			if _, err := s.collect(ctx, h); err != nil {
				s.log.Error("garbage collection", "blob", h, "error", err)
				return
			}
		}
		if len(hashes) < 500 {
			break
		}
	}
	if total > 0 {
		s.log.Info("removed node uploads no result took", "count", total, "grace", s.cfg.UploadGrace.String())
	}
}

// recordTokenUses writes down the bearer token uses noted since the last
// call; on failure they are kept for the next.
func (s *Server) recordTokenUses(ctx context.Context) {
	uses := s.tokenUses.take()
	if err := s.db.RecordTokenUses(ctx, uses); err != nil {
		s.log.Warn("unable to record bearer token uses", "error", err)
		for d, at := range uses {
			s.tokenUses.note(d, at)
		}
	}
}

// gcLoop collects all garbage every GCInterval, and the blob of each
// deleted reference as soon as it is deleted.
func (s *Server) gcLoop() {
	ctx, cancel := s.stopContext()
	defer cancel()
	s.collectGarbage(ctx)
	t := time.NewTicker(s.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.collectGarbage(ctx)
			if s.cfg.collected != nil {
				s.cfg.collected()
			}
		case h := <-s.gc:
			if _, err := s.collect(ctx, h); err != nil && ctx.Err() == nil {
				s.log.Error("garbage collection", "blob", h, "error", err)
			}
		}
	}
}

// collectSoon asks the collector to look at hash (after a delete).
func (s *Server) collectSoon(hash string) {
	select {
	case s.gc <- hash:
	default: // the periodic pass will find it
	}
}
