package dockerapi

// The engine's calls, each as the Engine API documents it
// (https://docs.docker.com/reference/api/engine/): containers in the order
// of a run's life, then images.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/system"
)

// Info is the engine's description of itself (`docker info`).
func (c *Client) Info(ctx context.Context) (system.Info, error) {
	var info system.Info
	err := c.do(ctx, http.MethodGet, "/info", nil, nil, &info)
	return info, err
}

// ContainerCreate creates the container name (`docker create`).
func (c *Client) ContainerCreate(ctx context.Context, name string, cfg *container.Config, host *container.HostConfig) (container.CreateResponse, error) {
	var out container.CreateResponse
	q := url.Values{}
	if name != "" {
		q.Set("name", name)
	}
	err := c.do(ctx, http.MethodPost, "/containers/create", q, container.CreateRequest{Config: cfg, HostConfig: host}, &out)
	return out, err
}

// WaitResult is what a ContainerWait ends with: the engine's report, or
// the error that cut the wait short (the context's end, a broken
// connection).
type WaitResult struct {
	Response container.WaitResponse
	Err      error
}

// ContainerWait registers a wait for the container id to meet cond
// (next-exit, removed, not-running) and returns once the engine has
// registered it: a wait made before ContainerStart cannot miss a fast
// exit. The channel then gets exactly one WaitResult, and is buffered:
// nobody needs to read it. Cancelling ctx ends the wait.
func (c *Client) ContainerWait(ctx context.Context, id string, cond container.WaitCondition) (<-chan WaitResult, error) {
	q := url.Values{}
	if cond != "" {
		q.Set("condition", string(cond))
	}
	// The engine sends the headers once the wait is registered, and the
	// body when the condition is met.
	resp, err := c.call(ctx, http.MethodPost, "/containers/"+id+"/wait", q, nil) //nolint:bodyclose // the goroutine below closes it
	if err != nil {
		return nil, err
	}
	ch := make(chan WaitResult, 1)
	go func() {
		defer drain(resp)
		var r WaitResult
		if err := json.NewDecoder(resp.Body).Decode(&r.Response); err != nil {
			r.Err = fmt.Errorf("unable to wait for container %s: %w", id, err)
		}
		ch <- r
	}()
	return ch, nil
}

// ContainerStart starts the created container id.
func (c *Client) ContainerStart(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/containers/"+id+"/start", nil, nil, nil)
}

// ContainerInspect is the engine's view of the container id (`docker
// inspect`).
func (c *Client) ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error) {
	var out container.InspectResponse
	err := c.do(ctx, http.MethodGet, "/containers/"+id+"/json", nil, nil, &out)
	return out, err
}

// ContainerKill sends signal (a name, KILL, or a number) to the
// container's PID 1.
func (c *Client) ContainerKill(ctx context.Context, id, signal string) error {
	q := url.Values{}
	if signal != "" {
		q.Set("signal", signal)
	}
	return c.do(ctx, http.MethodPost, "/containers/"+id+"/kill", q, nil, nil)
}

// ContainerListOptions select the containers ContainerList returns.
type ContainerListOptions struct {
	// All includes the containers that do not run.
	All bool
	// Labels keeps the containers that carry each of these labels
	// ("key" or "key=value").
	Labels []string
}

// ContainerList lists containers (`docker ps`).
func (c *Client) ContainerList(ctx context.Context, opts ContainerListOptions) ([]container.Summary, error) {
	q := url.Values{}
	if opts.All {
		q.Set("all", "1")
	}
	if len(opts.Labels) > 0 {
		labels := map[string]bool{}
		for _, l := range opts.Labels {
			labels[l] = true
		}
		f, err := json.Marshal(map[string]map[string]bool{"label": labels})
		if err != nil {
			return nil, fmt.Errorf("unable to encode the filters: %w", err)
		}
		q.Set("filters", string(f))
	}
	var out []container.Summary
	err := c.do(ctx, http.MethodGet, "/containers/json", q, nil, &out)
	return out, err
}

// ContainerRemoveOptions say how ContainerRemove removes.
type ContainerRemoveOptions struct {
	// Force kills a running container first.
	Force bool
	// RemoveVolumes removes its anonymous volumes too.
	RemoveVolumes bool
}

// ContainerRemove removes the container id (`docker rm`).
func (c *Client) ContainerRemove(ctx context.Context, id string, opts ContainerRemoveOptions) error {
	q := url.Values{}
	if opts.Force {
		q.Set("force", "1")
	}
	if opts.RemoveVolumes {
		q.Set("v", "1")
	}
	return c.do(ctx, http.MethodDelete, "/containers/"+id, q, nil, nil)
}

// ImageInspect is the engine's view of the image ref (`docker image
// inspect`).
func (c *Client) ImageInspect(ctx context.Context, ref string) (image.InspectResponse, error) {
	var out image.InspectResponse
	err := c.do(ctx, http.MethodGet, "/images/"+ref+"/json", nil, nil, &out)
	return out, err
}

// ImageList lists the engine's images (`docker images`).
func (c *Client) ImageList(ctx context.Context) ([]image.Summary, error) {
	var out []image.Summary
	err := c.do(ctx, http.MethodGet, "/images/json", nil, nil, &out)
	return out, err
}

// ImagePull pulls the image repo:tag, or repo@tag when tag is a digest
// (`docker pull`), and returns once the engine has finished, with the
// error the progress stream reports, if any. The caller parses the name
// (image.EngineName).
func (c *Client) ImagePull(ctx context.Context, repo, tag string) error {
	q := url.Values{"fromImage": {repo}, "tag": {tag}}
	return c.stream(ctx, "/images/create", q, nil)
}

// ImageLoad loads a `docker save` archive (`docker load`), quietly, and
// returns once the engine has finished, with the error the progress
// stream reports, if any.
func (c *Client) ImageLoad(ctx context.Context, archive io.Reader) error {
	return c.stream(ctx, "/images/load", url.Values{"quiet": {"1"}}, archive)
}

// ImageImport makes the image repo:tag of a root file system tar
// (`docker import - repo:tag`) and returns once the engine has finished,
// with the error the progress stream reports, if any.
func (c *Client) ImageImport(ctx context.Context, rootfs io.Reader, repo, tag string) error {
	q := url.Values{"fromSrc": {"-"}, "repo": {repo}, "tag": {tag}}
	return c.stream(ctx, "/images/create", q, rootfs)
}

// ImageTag names the image source repo:tag too (`docker tag`).
func (c *Client) ImageTag(ctx context.Context, source, repo, tag string) error {
	q := url.Values{"repo": {repo}, "tag": {tag}}
	return c.do(ctx, http.MethodPost, "/images/"+source+"/tag", q, nil, nil)
}

// ImageRemoveOptions say how ImageRemove removes.
type ImageRemoveOptions struct {
	// Force removes an image that containers use, or that has other names.
	Force bool
}

// ImageRemove removes the name ref (`docker rmi`); the image goes with its
// last name, and its untagged parents with it.
func (c *Client) ImageRemove(ctx context.Context, ref string, opts ImageRemoveOptions) ([]image.DeleteResponse, error) {
	q := url.Values{}
	if opts.Force {
		q.Set("force", "1")
	}
	var out []image.DeleteResponse
	err := c.do(ctx, http.MethodDelete, "/images/"+ref, q, nil, &out)
	return out, err
}

// stream posts body (a tar, or nothing) to path and reads the engine's
// progress stream to its end: the engine reports a failure there, after
// its 200.
func (c *Client) stream(ctx context.Context, path string, q url.Values, body io.Reader) error {
	resp, err := c.call(ctx, http.MethodPost, path, q, body)
	if err != nil {
		return err
	}
	defer drain(resp)
	return readProgress(resp.Body)
}

// progress is one message of a progress stream. Engines send a failure as
// errorDetail and, older ones, as error too.
type progress struct {
	jsonstream.Message
	ErrorText string `json:"error,omitempty"`
}

// readProgress reads a progress stream to its end and returns the first
// failure it reports.
func readProgress(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m progress
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("unable to read the engine's progress: %w", err)
		}
		switch {
		case m.Error != nil && m.Error.Message != "":
			return fmt.Errorf("the Docker engine reported: %s", m.Error.Message)
		case m.ErrorText != "":
			return fmt.Errorf("the Docker engine reported: %s", m.ErrorText)
		}
	}
}
