package client

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/kolejka-go/kolejka/spec"
)

// ResultPut posts the result folder dir for its task (a node's job): each
// file uploaded unless the server has its bytes, then the result.
func (c *Client) ResultPut(ctx context.Context, dir string) (*spec.Result, error) {
	r, err := spec.LoadResult(dir)
	if err != nil {
		return nil, err
	}
	return c.ResultPost(ctx, dir, r)
}

// ResultPost posts r, whose files are paths relative to dir.
func (c *Client) ResultPost(ctx context.Context, dir string, r *spec.Result) (*spec.Result, error) {
	files, err := c.uploadFiles(ctx, dir, r.Files)
	if err != nil {
		return nil, err
	}
	up := *r
	up.Files = files
	body, err := up.Encode()
	if err != nil {
		return nil, err
	}
	var out struct {
		Result json.RawMessage `json:"result"`
	}
	if err := c.call(ctx, http.MethodPost, "task/result/", body, "application/json", &out); err != nil {
		return nil, err
	}
	stored, err := spec.ParseResult(out.Result, "the server's result")
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrProtocol)
	}
	return stored, nil
}

// Result returns the result of task key, ErrNotFound while there is none.
// With wait > 0 and a server that long-polls, the server holds the request
// until the result arrives or wait passes.
func (c *Client) Result(ctx context.Context, key string, wait time.Duration) (*spec.Result, error) {
	path := "task/result/" + key + "/"
	if wait > 0 && c.Settings().Has("long_poll") {
		path += "?wait=" + strconv.FormatFloat(math.Ceil(wait.Seconds()*1000)/1000, 'f', -1, 64)
	}
	var out struct {
		Result json.RawMessage `json:"result"`
	}
	if err := c.call(ctx, http.MethodGet, path, nil, "", &out); err != nil {
		return nil, err
	}
	r, err := spec.ParseResult(out.Result, "result of "+key)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrProtocol)
	}
	return r, nil
}

// ResultGet downloads the result of task key into dir (which must not
// exist or be empty): its files, each checked against its SHA-256, and
// kolejka_result.json naming them by path and by reference.
func (c *Client) ResultGet(ctx context.Context, key, dir string, wait time.Duration) (*spec.Result, error) {
	r, err := c.Result(ctx, key, wait)
	if err != nil {
		return nil, err
	}
	return r, c.SaveResult(ctx, r, dir)
}

// SaveResult downloads a fetched result's files into dir.
func (c *Client) SaveResult(ctx context.Context, r *spec.Result, dir string) error {
	return c.intoFolder(dir, func(stage string) error {
		files, err := c.downloadFiles(ctx, stage, r.Files)
		if err != nil {
			return err
		}
		local := *r
		local.Files = files
		return spec.WriteResult(stage, &local)
	})
}

// ResultDelete deletes a task's result.
func (c *Client) ResultDelete(ctx context.Context, key string) error {
	return c.call(ctx, http.MethodDelete, "task/result/"+key+"/", nil, "", nil)
}
