package server

// This file owns /blob/: uploading content (POST /blob/reference/, the raw
// bytes as body), Kolejka's dedup path (POST /blob/blob/<sha256>/ makes a
// new reference to content the server has, 404 if it has not: the client
// then uploads), and reading, querying (PUT) and deleting references and
// blobs.
//
// Who may do what:
//
//	upload, dedup                       clients, processors
//	reference GET/HEAD/PUT              its owner, inspectors, managers, and a
//	                                    processor that holds a task using it
//	reference DELETE                    its owner, managers
//	blob GET/HEAD/PUT                   inspectors, managers
//	blob DELETE                         managers
//
// A reference or blob a task or result uses cannot be deleted (FAIL naming
// the task): deleting it would make the task unrunnable or the result
// unreadable. Delete the task (or result) first.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/auth"
	"github.com/kolejka-go/kolejka/internal/server/blobs"
	"github.com/kolejka-go/kolejka/internal/server/store"
)

// referenceAnswer is a reference's metadata as an answer.
func referenceAnswer(r store.Reference) *api.ReferenceAnswer {
	return &api.ReferenceAnswer{Reference: api.Reference{
		Blob:       r.Blob,
		Key:        r.Key,
		Size:       r.Size,
		TimeAccess: djangoTime(r.TimeAccess),
		TimeCreate: djangoTime(r.TimeCreate),
	}}
}

// handleReferenceNew stores an uploaded blob and gives the caller a new
// reference to it. The bytes are durable before the row is committed; a
// body over MaxBlobSize gets 413, one cut short stores nothing.
func (s *Server) handleReferenceNew(w http.ResponseWriter, r *http.Request) {
	u := postBy(w, r, store.RoleClient|store.RoleProcessor, "only clients and processors upload blobs")
	if u == nil {
		return
	}
	limit := s.cfg.MaxBlobSize
	if r.ContentLength > limit {
		tooLarge(w, limit)
		return
	}
	tmp, err := s.blobs.Write(r.Context(), r.Body, limit)
	if errors.Is(err, blobs.ErrTooLarge) {
		tooLarge(w, limit)
		return
	}
	if errors.Is(err, blobs.ErrBackend) {
		s.blobsUnavailable(w, r, err)
		return
	}
	if storageFull(err) {
		s.outOfStorage(w, r, err)
		return
	}
	if err != nil {
		s.log.Warn("upload cut short, nothing stored", "user", u.Name, "error", err)
		plain(w, http.StatusBadRequest, "unable to read the upload")
		return
	}
	ref, err := s.commitBlob(r, tmp, u.ID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	ok(w, referenceAnswer(ref))
}

// commitBlob moves an uploaded blob into place and records it with a new
// reference, holding the hash lock across both (see gc.go).
func (s *Server) commitBlob(r *http.Request, tmp blobs.Temp, owner int64) (store.Reference, error) {
	b := tmp.Blob()
	unlock, err := s.lockBlob(r.Context(), b.Hash)
	if err != nil {
		tmp.Discard()
		return store.Reference{}, err
	}
	defer unlock()
	if err := tmp.Commit(r.Context()); err != nil {
		return store.Reference{}, err
	}
	ref, err := s.db.AddReference(r.Context(), b.Hash, b.Size, auth.RandomKey(16), owner, s.now())
	if err != nil {
		// Keep the file only if an earlier upload's row holds it. The
		// check must not die with the request: a client gone (a node
		// killed mid-upload) cancels it, and the file would stay in the
		// store with no row, until the next start.
		ctx := context.WithoutCancel(r.Context())
		if known, kerr := s.db.BlobKnown(ctx, b.Hash); kerr == nil && !known {
			if err := s.dropBlob(ctx, b.Hash); err != nil {
				s.log.Warn("unable to remove an unrecorded blob; the next start will", "blob", b.Hash, "error", err)
			}
		}
		return store.Reference{}, err
	}
	return ref, nil
}

func (s *Server) handleReference(w http.ResponseWriter, r *http.Request) {
	u, key, ref := lookup(s, w, r, "ref", s.db.Reference)
	if u == nil {
		return
	}
	readable := ref.Owner == u.ID || overseer(u)
	if !readable && u.Roles.Has(store.RoleProcessor) {
		var err error
		if readable, err = s.db.ReferenceUsedByAssignee(r.Context(), key, u.ID); err != nil {
			s.internal(w, r, err)
			return
		}
		// Any task may name any image: a node fetches its blobs before
		// the task that needs them runs.
		if !readable && r.Method != http.MethodDelete {
			if readable, err = s.db.ReferenceOfImage(r.Context(), key); err != nil {
				s.internal(w, r, err)
				return
			}
		}
	}
	if !readable {
		// A shared type's files are part of it: `type get` reads them.
		var err error
		if readable, err = s.db.ReferenceOfPublicType(r.Context(), key); err != nil {
			s.internal(w, r, err)
			return
		}
	}
	if !readable {
		forbidden(w, "the reference belongs to another user")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if s.now().Sub(ref.TimeAccess) > time.Minute {
			if err := s.db.TouchReference(r.Context(), key, s.now()); err != nil {
				s.log.Warn("unable to record access", "reference", key, "error", err)
			}
		}
		s.serveBlob(w, r, ref.Blob)
	case http.MethodPut:
		ok(w, referenceAnswer(ref))
	case http.MethodDelete:
		if !ownerOrManager(w, u, ref.Owner, "reference") {
			return
		}
		hash, err := s.db.DeleteReference(r.Context(), key)
		if err == nil {
			s.collectSoon(hash)
		}
		s.answerDeleted(w, r, err)
	default:
		notAllowed(w, "GET", "HEAD", "PUT", "DELETE")
	}
}

// serveBlob answers the blob's bytes (HEAD: headers only), with ranges. A
// store that cannot open the blob is 503 (internal). One that fails once
// the answer has begun (S3 gone mid-stream) aborts it: the connection is
// cut short of the Content-Length, so no client takes the part it got for
// the whole blob.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, hash string) {
	f, err := s.blobs.Open(r.Context(), hash)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+hash+`"`)
	body := &readErr{Reader: f}
	http.ServeContent(w, r, "", f.Info().ModTime, body)
	if body.err != nil && r.Context().Err() == nil {
		s.log.Error("blob download aborted: the blob store failed mid-stream", "path", r.URL.Path, "blob", hash, "error", body.err)
		panic(http.ErrAbortHandler) // net/http closes the connection, quietly
	}
}

// readErr keeps the first read error of a blob being served, which
// http.ServeContent drops.
type readErr struct {
	blobs.Reader
	err error
}

func (b *readErr) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err != nil && err != io.EOF && b.err == nil { //nolint:errorlint // io.EOF is returned bare by contract
		b.err = err
	}
	return n, err
}

func (s *Server) handleBlob(w http.ResponseWriter, r *http.Request) {
	u := signedIn(w, r)
	if u == nil {
		return
	}
	hash := r.PathValue("hash")
	if !blobs.ValidHash(hash) {
		notFound(w)
		return
	}
	switch r.Method {
	case http.MethodPost:
		if !u.Roles.Any(store.RoleClient | store.RoleProcessor) {
			forbidden(w, "only clients and processors make references")
			return
		}
		ref, err := s.db.ReferenceBlob(r.Context(), hash, auth.RandomKey(16), u.ID, s.now())
		if s.lookupFailed(w, r, err) {
			return
		}
		ok(w, referenceAnswer(ref))
		return
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
	default:
		notAllowed(w, "GET", "HEAD", "POST", "PUT", "DELETE")
		return
	}
	b, err := s.db.Blob(r.Context(), hash)
	if s.lookupFailed(w, r, err) {
		return
	}
	if !overseer(u) {
		forbidden(w, "only inspectors and managers read blobs by hash")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.serveBlob(w, r, hash)
	case http.MethodPut:
		ok(w, &api.BlobAnswer{Blob: api.Blob{
			Key:        b.Hash,
			References: b.References,
			Size:       b.Size,
			TimeAccess: djangoTime(b.TimeAccess),
			TimeCreate: djangoTime(b.TimeCreate),
		}})
	case http.MethodDelete:
		if !u.Roles.Has(store.RoleManager) {
			forbidden(w, "only managers delete blobs")
			return
		}
		s.answerDeleted(w, r, s.deleteBlob(r, hash))
	}
}

// deleteBlob removes a blob and all its references, holding its lock. The
// store is asked first, so that one that does not answer (503) leaves the
// rows; once they are deleted the blob is, for the caller, and an object a
// store failing just then keeps is an orphan the next start-up removes.
func (s *Server) deleteBlob(r *http.Request, hash string) error {
	unlock, err := s.lockBlob(r.Context(), hash)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := s.blobs.Exists(r.Context(), hash); err != nil {
		return err
	}
	if err := s.db.DeleteBlob(r.Context(), hash); err != nil {
		return err
	}
	if err := s.blobs.Remove(r.Context(), hash); err != nil {
		s.log.Warn("blob deleted, its file not: the next start removes it", "blob", hash, "error", err)
	}
	return nil
}
