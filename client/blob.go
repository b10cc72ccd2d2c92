package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/atomicfile"
)

// Reference is a server blob reference.
type Reference = api.Reference

// HashFile returns a file's SHA-256 in hex.
func HashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("unable to read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// BlobPut uploads a file and returns a new reference to it. It asks the
// server by hash first and sends the bytes only when the server lacks them.
func (c *Client) BlobPut(ctx context.Context, path string) (*Reference, error) {
	sum, size, err := HashFile(path)
	if err != nil {
		return nil, err
	}
	if ref, err := c.BlobByHash(ctx, sum); err == nil {
		return ref, nil
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	body := &fileBody{r: c.progress("upload "+filepath.Base(path), size, f), size: size}
	ref, err := c.referenceCall(ctx, http.MethodPost, "blob/reference/", body, "application/octet-stream")
	if err != nil {
		return nil, err
	}
	if ref.Blob != "" && ref.Blob != sum {
		return nil, fmt.Errorf("uploaded %s as %s but the server stored %s: %w", path, sum, ref.Blob, ErrIntegrity)
	}
	return ref, nil
}

// BlobByHash makes a new reference to bytes the server already has
// (ErrNotFound if it has not).
func (c *Client) BlobByHash(ctx context.Context, sum string) (*Reference, error) {
	return c.referenceCall(ctx, http.MethodPost, "blob/blob/"+sum+"/", bytes.NewReader(nil), "application/x-www-form-urlencoded")
}

// BlobInfo returns a reference's metadata (Kolejka answers a PUT with it).
func (c *Client) BlobInfo(ctx context.Context, ref string) (*Reference, error) {
	return c.referenceCall(ctx, http.MethodPut, "blob/reference/"+ref+"/", bytes.NewReader(nil), "")
}

// BlobGet downloads a reference into path. The bytes go to a temporary
// file beside it and are checked against the blob's SHA-256 before they
// take the final name: a failed or tampered download leaves nothing there.
func (c *Client) BlobGet(ctx context.Context, ref, path string) error {
	return c.download(ctx, "blob/reference/"+ref+"/", path, "")
}

// BlobGetExpect is BlobGet when the SHA-256 is already known (from the
// reference's metadata): no extra request to learn it.
func (c *Client) BlobGetExpect(ctx context.Context, ref, sum, path string) error {
	return c.download(ctx, "blob/reference/"+ref+"/", path, sum)
}

func (c *Client) download(ctx context.Context, urlPath, path, want string) error {
	resp, err := c.do(ctx, http.MethodGet, urlPath, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := checkStatus(resp, urlPath); err != nil {
		return err
	}
	if want == "" {
		// Our server names the hash in the ETag; Kolejka's needs asking.
		if et := strings.Trim(resp.Header.Get("ETag"), `"`); isHash(et) {
			want = et
		} else if ref, ok := strings.CutPrefix(urlPath, "blob/reference/"); ok {
			info, err := c.BlobInfo(ctx, strings.TrimSuffix(ref, "/"))
			if err != nil {
				return err
			}
			want = info.Blob
		} else if sum, ok := strings.CutPrefix(urlPath, "blob/blob/"); ok {
			want = strings.TrimSuffix(sum, "/")
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	// 0600: a download is readable by its owner only.
	f, err := atomicfile.Create(path, 0o600)
	if err != nil {
		return err
	}
	defer f.Abort() // a no-op once committed
	h := sha256.New()
	body := c.progress("download "+filepath.Base(path), resp.ContentLength, resp.Body)
	if _, err := io.Copy(io.MultiWriter(f, h), body); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("unable to download %s: %v: %w", path, err, ErrConnect)
	}
	if got := hex.EncodeToString(h.Sum(nil)); want != "" && got != want {
		return fmt.Errorf("%s: got SHA-256 %s, want %s: %w", path, got, want, ErrIntegrity)
	}
	return f.Commit()
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// BlobDelete deletes a reference.
func (c *Client) BlobDelete(ctx context.Context, ref string) error {
	return c.call(ctx, http.MethodDelete, "blob/reference/"+ref+"/", nil, "", nil)
}

// BlobExists reports whether a reference is readable (HEAD).
func (c *Client) BlobExists(ctx context.Context, ref string) (bool, error) {
	resp, err := c.do(ctx, http.MethodHead, "blob/reference/"+ref+"/", nil, "")
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound, http.StatusForbidden:
		return false, nil
	}
	// Anything else as every other call maps it: a 503 (the server's blob
	// store down) is ErrUnavailable, to be retried.
	return false, checkStatus(resp, "blob/reference/"+ref+"/")
}

// fileBody is an upload body of known size.
type fileBody struct {
	r    io.Reader
	size int64
}

func (b *fileBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *fileBody) Size() int64                { return b.size }

// referenceCall sends a blob request whose answer is a reference.
func (c *Client) referenceCall(ctx context.Context, method, path string, body io.Reader, contentType string) (*Reference, error) {
	var out api.ReferenceAnswer
	if err := c.callReader(ctx, method, path, body, contentType, &out); err != nil {
		return nil, err
	}
	return &out.Reference, nil
}
