package server

// This file owns /image/ (extension "images"): images pushed to the
// server, which nodes fetch when a task names one they lack. Storage and
// ownership are the store's (store/images.go); a manifest's meaning is
// package api's.
//
//	GET    /image/          every image (api.ImagesAnswer)
//	POST   /image/          clients: push an image (api.ImagePut)
//	GET    /image/<name>/   the image and its manifest (api.ImageAnswer)
//	DELETE /image/<name>/   its owner, managers
//
// Names are global and normalized (docker.io/library/x:latest), as the
// node's image store keys them: any task may name any image, so every
// signed-in user may list and read manifests, and nodes (processors) may
// read the blobs of every image (blob_handlers.go). <name> is path-escaped
// ("/" as %2F).

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/worker/image"
)

func imageInfo(row store.ImageRow) api.ImageInfo {
	return api.ImageInfo{Name: row.Name, Owner: row.OwnerName, Size: row.Size, TimeCreate: djangoTime(row.TimeCreate)}
}

func (s *Server) handleImages(w http.ResponseWriter, r *http.Request) {
	if u := listOrPost(w, r, s.handleImagePut); u == nil {
		return
	}
	rows, err := s.db.Images(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := &api.ImagesAnswer{Images: make([]api.ImageInfo, 0, len(rows))}
	for _, row := range rows {
		out.Images = append(out.Images, imageInfo(row))
	}
	ok(w, out)
}

func (s *Server) handleImagePut(w http.ResponseWriter, r *http.Request) {
	u, body := s.postBody(w, r, store.RoleClient, "only clients push images", s.cfg.MaxJSONBody)
	if u == nil {
		return
	}
	var req api.ImagePut
	if err := api.Decode(body, &req); err != nil {
		fail(w, "image: %v", err)
		return
	}
	name, err := image.NormalizeName(req.Name)
	if err != nil {
		fail(w, "image: name: %v", err)
		return
	}
	if err := req.Manifest.Check(); err != nil {
		fail(w, "image %s: %v", name, err)
		return
	}
	manifest, err := json.Marshal(req.Manifest)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	blobs := make([]store.ImageBlob, len(req.Manifest.Blobs))
	for i, b := range req.Manifest.Blobs {
		blobs[i] = store.ImageBlob{Ref: b.Reference, Digest: b.Digest, Size: b.Size}
	}
	err = s.db.PutImage(r.Context(), store.NewImage{
		Owner: u.ID, ReadAll: overseer(u), Name: name, Manifest: manifest, Blobs: blobs, Now: s.now(),
	})
	var owned *store.ImageOwnedError
	var fe store.FileErrors
	switch {
	case errors.As(err, &owned):
		fail(w, "image: %v", owned)
	case errors.As(err, &fe):
		fail(w, "image %s: %v", name, fe)
	case err != nil:
		s.internal(w, r, err)
	default:
		s.log.Info("image pushed", "image", name, "user", u.Name)
		ok(w, &api.ImagePutAnswer{Name: name})
	}
}

func (s *Server) handleImage(w http.ResponseWriter, r *http.Request) {
	u := signedIn(w, r)
	if u == nil {
		return
	}
	name, err := image.NormalizeName(r.PathValue("name"))
	if err != nil {
		notFound(w) // no image can have it
		return
	}
	row, err := s.db.Image(r.Context(), name)
	if s.lookupFailed(w, r, err) {
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		var m api.ImageManifest
		if err := api.Decode(row.Manifest, &m); err != nil {
			s.internal(w, r, err) // this server wrote it
			return
		}
		ok(w, &api.ImageAnswer{Info: imageInfo(row), Manifest: m})
	case http.MethodDelete:
		if !ownerOrManager(w, u, row.Owner, "image") {
			return
		}
		err := s.db.RemoveImage(r.Context(), row.Name)
		if err == nil {
			s.log.Info("image removed", "image", row.Name, "user", u.Name)
		}
		s.answerDeleted(w, r, err)
	default:
		notAllowed(w, "GET", "HEAD", "DELETE")
	}
}
