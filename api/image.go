package api

// This file owns the messages of /image/ (our extension "images"): images
// pushed to the server so that any node can run tasks naming them without
// a registry. An image is a manifest of content-addressed blobs the server
// keeps as references; a node fetches the blobs, checks their digests and
// imports them into its own image store (docs/images.md).

import (
	"fmt"
	"strings"
)

// Kinds of image manifest.
const (
	// ImageArchive: the pushed file itself, one blob, in any format the
	// node's image store imports (a root filesystem tar, a SIF file, an
	// archive of several images, …; the node detects which).
	ImageArchive = "archive"
	// ImageOCI: an OCI image split into blobs, each stored once however
	// many images share it: blobs[0] the OCI image manifest, blobs[1] its
	// config, then its layers in order. The node assembles an OCI layout
	// from them and imports it, which checks every digest.
	ImageOCI = "oci"
)

// ImageBlob is one blob of an image: the reference the server keeps it
// under and its content digest and size, which the node checks.
type ImageBlob struct {
	Reference string `json:"reference"`
	Digest    string `json:"digest"` // "sha256:<hex>"
	Size      int64  `json:"size"`
}

// ImageManifest says what an image is made of.
type ImageManifest struct {
	Kind  string      `json:"kind"` // ImageArchive, ImageOCI
	Blobs []ImageBlob `json:"blobs"`
}

// Check reports the first problem of a manifest as sent by a client.
func (m *ImageManifest) Check() error {
	switch m.Kind {
	case ImageArchive:
		if len(m.Blobs) != 1 {
			return fmt.Errorf("manifest: blobs: an %q manifest has exactly one blob, not %d", ImageArchive, len(m.Blobs))
		}
	case ImageOCI:
		if len(m.Blobs) < 2 {
			return fmt.Errorf("manifest: blobs: an %q manifest has its image manifest, its config and its layers, not %d blobs", ImageOCI, len(m.Blobs))
		}
	default:
		return fmt.Errorf("manifest: kind: %q is not known (known: %q, %q)", m.Kind, ImageArchive, ImageOCI)
	}
	for i, b := range m.Blobs {
		hex, found := strings.CutPrefix(b.Digest, "sha256:")
		if !found || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
			return fmt.Errorf("manifest: blobs[%d].digest: %q is not sha256:<64 lowercase hex digits>", i, b.Digest)
		}
		if b.Reference == "" {
			return fmt.Errorf("manifest: blobs[%d].reference: missing (upload the blob first)", i)
		}
		if b.Size < 0 {
			return fmt.Errorf("manifest: blobs[%d].size: %d is negative", i, b.Size)
		}
	}
	return nil
}

// ImagePut is the body of POST /image/: the image Name (pushed again by
// its owner, it replaces the manifest).
type ImagePut struct {
	Name     string        `json:"name"`
	Manifest ImageManifest `json:"manifest"`
}

// ImageInfo is one image as listed.
type ImageInfo struct {
	Name       string `json:"name"` // normalized: docker.io/library/busybox:latest
	Owner      string `json:"owner"`
	Size       int64  `json:"size"` // the blobs' bytes
	TimeCreate string `json:"time_create"`
}

// ImagePutAnswer answers POST /image/.
type ImagePutAnswer struct {
	Envelope
	Name string `json:"name"`
}

// ImagesAnswer answers GET /image/: every image.
type ImagesAnswer struct {
	Envelope
	Images []ImageInfo `json:"images"`
}

// ImageAnswer answers GET /image/<name>/: the image and its manifest.
type ImageAnswer struct {
	Envelope
	Info     ImageInfo     `json:"info"`
	Manifest ImageManifest `json:"manifest"`
}
