package client

// This file owns images pushed to the server (extension "images",
// docs/images.md): `image push` uploads the file as one blob (found by
// hash first, so a second push of the same file sends nothing) and names
// it in a manifest; a node fetches it with ImageFetch.

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/kolejka-go/kolejka/api"
)

// ImageInfo describes an image on the server (api.ImageInfo).
type ImageInfo = api.ImageInfo

func (c *Client) needImages() error {
	if !c.Settings().Has(api.ExtImages) {
		return fmt.Errorf("images: %w", ErrUnsupported)
	}
	return nil
}

// imagePath is the URL path of the image name.
func imagePath(name string) string { return "image/" + url.PathEscape(name) + "/" }

// ImagePush stores the image in path under name on the server and returns
// the name as the server normalized it. path is any archive a node's
// image store imports (a `docker save` tar, an OCI layout tar, a root
// filesystem tar, …) or an OCI layout folder. A `docker save` or OCI
// layout of one image is sent as its blobs (manifest, config, layers:
// kind "oci"), each uploaded only when the server lacks it (found by
// hash), so layers shared between images are stored and sent once;
// anything else is sent whole (kind "archive") and the node detects its
// format when it imports it. If the server refuses the image, the
// references uploaded for it are deleted again (best effort).
func (c *Client) ImagePush(ctx context.Context, name, path string) (string, error) {
	if err := c.needImages(); err != nil {
		return "", err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("unable to push %s: %w", path, err)
	}
	tmp, err := os.MkdirTemp("", "kolejka-image-")
	if err != nil {
		return "", fmt.Errorf("unable to push %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	files, split, err := splitImage(path, tmp)
	if err != nil {
		return "", fmt.Errorf("unable to push %s: %w", path, err)
	}
	manifest := api.ImageManifest{Kind: api.ImageOCI}
	if !split {
		manifest.Kind = api.ImageArchive
		if fi.IsDir() {
			packed := filepath.Join(tmp, "image.tar")
			if err := tarFolderTo(packed, path); err != nil {
				return "", fmt.Errorf("unable to pack %s: %w", path, err)
			}
			path = packed
		}
		files = []layerFile{{path: path}}
	}
	var uploaded []string
	for _, f := range files {
		ref, err := c.BlobPut(ctx, f.path)
		if err != nil {
			c.discard(ctx, uploaded)
			return "", err
		}
		uploaded = append(uploaded, ref.Key)
		manifest.Blobs = append(manifest.Blobs, api.ImageBlob{Reference: ref.Key, Digest: "sha256:" + ref.Blob, Size: ref.Size})
	}
	body, err := json.Marshal(api.ImagePut{Name: name, Manifest: manifest})
	if err != nil {
		c.discard(ctx, uploaded)
		return "", err
	}
	var out api.ImagePutAnswer
	if err := c.call(ctx, http.MethodPost, "image/", body, "application/json", &out); err != nil {
		c.discard(ctx, uploaded)
		return "", err
	}
	return out.Name, nil
}

// tarFolderTo writes a tar of dir to the file dst.
func tarFolderTo(dst, dir string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	err = tarFolder(f, dir)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// tarFolder writes the regular files and folders under dir to w as a tar
// (an OCI layout has nothing else).
func tarFolder(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return fmt.Errorf("%s: only files and folders can be packed", p)
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// Images lists the images on the server by name.
func (c *Client) Images(ctx context.Context) ([]ImageInfo, error) {
	if err := c.needImages(); err != nil {
		return nil, err
	}
	var out api.ImagesAnswer
	if err := c.call(ctx, http.MethodGet, "image/", nil, "", &out); err != nil {
		return nil, err
	}
	return out.Images, nil
}

// Image reads the image name and its manifest (ErrNotFound if the server
// has no such image).
func (c *Client) Image(ctx context.Context, name string) (*api.ImageAnswer, error) {
	if err := c.needImages(); err != nil {
		return nil, err
	}
	var out api.ImageAnswer
	if err := c.call(ctx, http.MethodGet, imagePath(name), nil, "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ImageRemove removes the image name (its owner, managers); its blob's
// reference stays the pusher's.
func (c *Client) ImageRemove(ctx context.Context, name string) error {
	if err := c.needImages(); err != nil {
		return err
	}
	return c.call(ctx, http.MethodDelete, imagePath(name), nil, "", nil)
}
