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
// filesystem tar, …) or an OCI layout folder, which is sent as a tar of
// it. The node detects the format when it imports the image: the server
// keeps bytes. If the server refuses the image, the reference uploaded
// for it is deleted again (best effort).
func (c *Client) ImagePush(ctx context.Context, name, path string) (string, error) {
	if err := c.needImages(); err != nil {
		return "", err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("unable to push %s: %w", path, err)
	}
	if fi.IsDir() {
		tmp, err := os.CreateTemp("", "kolejka-image-*.tar")
		if err != nil {
			return "", fmt.Errorf("unable to pack %s: %w", path, err)
		}
		defer os.Remove(tmp.Name())
		err = tarFolder(tmp, path)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("unable to pack %s: %w", path, err)
		}
		path = tmp.Name()
	}
	ref, err := c.BlobPut(ctx, path)
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(api.ImagePut{Name: name, Manifest: api.ImageManifest{
		Kind:  api.ImageArchive,
		Blobs: []api.ImageBlob{{Reference: ref.Key, Digest: "sha256:" + ref.Blob, Size: ref.Size}},
	}})
	if err != nil {
		return "", err
	}
	var out api.ImagePutAnswer
	if err := c.call(ctx, http.MethodPost, "image/", body, "application/json", &out); err != nil {
		c.discard(ctx, []string{ref.Key})
		return "", err
	}
	return out.Name, nil
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

// ImageFetch downloads the archive of the image m describes into path,
// checked against the manifest's digest (a mismatch is ErrIntegrity and
// leaves nothing at path).
func (c *Client) ImageFetch(ctx context.Context, m *api.ImageManifest, path string) error {
	if err := m.Check(); err != nil {
		return fmt.Errorf("the server's %v: %w", err, ErrProtocol)
	}
	b := m.Blobs[0]
	return c.BlobGetExpect(ctx, b.Reference, b.Digest[len("sha256:"):], path)
}
