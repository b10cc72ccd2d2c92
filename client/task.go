package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"golang.org/x/sync/errgroup"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
	"github.com/kolejka-go/kolejka/spec"
)

// uploadConcurrency bounds parallel blob uploads and downloads of one task.
const uploadConcurrency = 4

// TaskPut submits the task folder dir: its limits capped by the client's
// and caps, each file uploaded unless the server already holds its bytes
// (or it already carries a valid reference). It returns the stored task,
// whose ID is the key the server assigned. If the task is not stored, the
// references uploaded for it are deleted again (best effort).
func (c *Client) TaskPut(ctx context.Context, dir string, caps spec.Limits) (*spec.Task, error) {
	return c.TaskSubmit(ctx, dir, TaskOptions{Caps: caps})
}

// TaskOptions are what a submission adds to a task folder's own
// kolejka_task.json.
type TaskOptions struct {
	Caps spec.Limits // caps of its limits, beside the client's own
	// Queue, if set, replaces the task's "queue" (a server without the
	// extension "queues" takes only the default queue).
	Queue string
}

// TaskSubmit is TaskPut with options.
func (c *Client) TaskSubmit(ctx context.Context, dir string, o TaskOptions) (*spec.Task, error) {
	t, err := spec.LoadTask(dir)
	if err != nil {
		return nil, err
	}
	if o.Queue != "" {
		t.Queue = o.Queue
	}
	if t.Queue != "" && t.Queue != spec.DefaultQueue && !c.Settings().Has(api.ExtQueues) {
		return nil, fmt.Errorf("queue %q: this server has only the default queue: %w", t.Queue, ErrUnsupported)
	}
	t.Limits = t.Limits.Merge(c.cfg.Limits, o.Caps)
	t.ID = "" // the server assigns keys
	files, uploaded, err := c.uploadFiles(ctx, dir, t.Files)
	if err != nil {
		return nil, err
	}
	t.Files = files
	return postStored(ctx, c, "task/task/", "task", t.Encode, uploaded, spec.ParseTask)
}

// postStored posts a task or result whose files are now references (encode
// makes the body) to path, and reads with parse what the server stored: the
// answer's key. If the server does not store it, the references uploaded
// for it are deleted again (best effort).
func postStored[T any](ctx context.Context, c *Client, path, key string, encode func() ([]byte, error), uploaded []string, parse func([]byte, string) (T, error)) (T, error) {
	var zero T
	body, err := encode()
	if err != nil {
		c.discard(ctx, uploaded)
		return zero, err
	}
	var out map[string]json.RawMessage
	if err := c.call(ctx, http.MethodPost, path, body, "application/json", &out); err != nil {
		c.discard(ctx, uploaded)
		return zero, err
	}
	stored, err := parse(out[key], "the server's "+key)
	if err != nil {
		return zero, fmt.Errorf("%v: %w", err, ErrProtocol)
	}
	return stored, nil
}

// uploadFiles turns local file specs into server references. uploaded
// lists the references it made (not those the files already carried); on
// failure it has deleted them again.
func (c *Client) uploadFiles(ctx context.Context, dir string, in map[string]spec.File) (out map[string]spec.File, uploaded []string, err error) {
	out = make(map[string]spec.File, len(in))
	var mu sync.Mutex
	err = forEachFile(slices.Sorted(maps.Keys(in)), func(name string) error {
		key, made, err := c.ensureReference(ctx, dir, in[name])
		mu.Lock()
		defer mu.Unlock()
		if made {
			uploaded = append(uploaded, key)
		}
		if err == nil {
			out[name] = spec.File{Reference: key}
		}
		return err
	})
	if err != nil {
		c.discard(ctx, uploaded)
		return nil, nil, err
	}
	return out, uploaded, nil
}

// discardTimeout bounds the clean-up after a request the server did not
// store; what a node leaves, the server's sweep of stale uploads removes
// (server/README.md).
const discardTimeout = time.Minute

// discard deletes references this client made for a task or result the
// server did not store, so that nothing of it stays behind. Best effort:
// it stops at the first sign the server is unreachable, and a reference
// the request did store after all (an answer lost on the way) is refused
// deletion by the server (it is in use, or passed to the task's owner).
// It runs even when ctx was cancelled (an interrupt), for a bounded time.
func (c *Client) discard(ctx context.Context, keys []string) {
	if len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discardTimeout)
	defer cancel()
	var (
		g       errgroup.Group
		mu      sync.Mutex
		away    bool
		deleted int
	)
	g.SetLimit(uploadConcurrency)
	for _, k := range keys {
		mu.Lock()
		stop := away
		mu.Unlock()
		if stop || ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			err := c.BlobDelete(ctx, k)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				deleted++
			case errors.Is(err, ErrConnect), errors.Is(err, ErrUnavailable):
				away = true
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines return nil: deletion is best effort
	slog.Debug("deleted the uploads of a request the server did not store", "uploaded", len(keys), "deleted", deleted)
}

// ensureReference keeps a file's reference when the server still has it,
// else uploads the file; made says it uploaded (a new reference).
func (c *Client) ensureReference(ctx context.Context, dir string, f spec.File) (key string, made bool, err error) {
	if f.Reference != "" {
		ok, err := c.BlobExists(ctx, f.Reference)
		if err != nil {
			return "", false, err
		}
		if ok {
			return f.Reference, false, nil
		}
	}
	if f.Path == "" {
		return "", false, fmt.Errorf("reference %q is gone and there is no local path to upload", f.Reference)
	}
	ref, err := c.BlobPut(ctx, filepath.Join(dir, f.Path))
	if err != nil {
		return "", false, err
	}
	return ref.Key, true, nil
}

// Task returns a stored task.
func (c *Client) Task(ctx context.Context, key string) (*spec.Task, error) {
	var out api.TaskAnswer
	if err := c.call(ctx, http.MethodGet, "task/task/"+key+"/", nil, "", &out); err != nil {
		return nil, err
	}
	t, err := spec.ParseTask(out.Task, "task "+key)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrProtocol)
	}
	return t, nil
}

// TaskGet downloads a stored task into the folder dir (which must not
// exist or be empty): its files by name, and kolejka_task.json naming them
// by path and by reference, as Kolejka's client writes it.
func (c *Client) TaskGet(ctx context.Context, key, dir string) (*spec.Task, error) {
	t, err := c.Task(ctx, key)
	if err != nil {
		return nil, err
	}
	err = c.intoFolder(dir, func(stage string) error {
		files, err := c.downloadFiles(ctx, stage, t.Files)
		if err != nil {
			return err
		}
		local := *t
		local.Files = files
		return spec.WriteTask(stage, &local)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// downloadFiles fetches every referenced file into dir under its name.
func (c *Client) downloadFiles(ctx context.Context, dir string, in map[string]spec.File) (map[string]spec.File, error) {
	out := make(map[string]spec.File, len(in))
	for name, f := range in {
		if f.Reference == "" {
			return nil, fmt.Errorf("file %s has no reference: %w", name, ErrProtocol)
		}
	}
	var mu sync.Mutex
	err := forEachFile(slices.Sorted(maps.Keys(in)), func(name string) error {
		ref := in[name].Reference
		if err := c.BlobGet(ctx, ref, filepath.Join(dir, filepath.FromSlash(name))); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		out[name] = spec.File{Path: name, Reference: ref}
		return nil
	})
	return out, err
}

// forEachFile runs fn for every name, uploadConcurrency at a time. Every
// name is tried, whatever fails: the errors are joined, each prefixed with
// its name.
func forEachFile(names []string, fn func(name string) error) error {
	errs := make([]error, len(names))
	var g errgroup.Group
	g.SetLimit(uploadConcurrency)
	for i, name := range names {
		g.Go(func() error {
			if err := fn(name); err != nil {
				errs[i] = fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	_ = g.Wait() // fn's errors are in errs
	return errors.Join(errs...)
}

// intoFolder fills a staging folder beside dir and renames it into place:
// dir appears complete or not at all. dir must not exist or be empty.
func (c *Client) intoFolder(dir string, fill func(stage string) error) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty; choose a new folder: %w", dir, ErrLocal)
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".part-")
	if err != nil {
		return err
	}
	if err := fill(stage); err != nil {
		os.RemoveAll(stage)
		return err
	}
	os.Remove(dir) // an empty folder in the way
	if err := atomicfile.Rename(stage, dir); err != nil {
		os.RemoveAll(stage)
		return err
	}
	return nil
}

// TaskDelete deletes a task.
func (c *Client) TaskDelete(ctx context.Context, key string) error {
	return c.call(ctx, http.MethodDelete, "task/task/"+key+"/", nil, "", nil)
}
