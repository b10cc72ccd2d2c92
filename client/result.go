package client

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/api"
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

// ResultPost posts r, whose files are paths relative to dir. A result
// whose body would be over the server's cap (max_result_body in its
// settings) is refused before any upload, with the error of a 413 (see
// TooLarge). If the result is not stored, the references uploaded for it
// are deleted again (best effort; the server sweeps what a killed node
// leaves).
func (c *Client) ResultPost(ctx context.Context, dir string, r *spec.Result) (*spec.Result, error) {
	if err := c.resultFits(r); err != nil {
		return nil, err
	}
	files, uploaded, err := c.uploadFiles(ctx, dir, r.Files)
	if err != nil {
		return nil, err
	}
	up := *r
	up.Files = files
	return postStored(ctx, c, "task/result/", "result", up.Encode, uploaded, spec.ParseResult)
}

// referenceLength is the length of our server's reference keys (32 hex
// digits, as Kolejka's uuid4().hex): resultFits sizes a result's body with
// placeholders of it, before any reference exists.
const referenceLength = 32

// resultFits returns a 413-like *ServerError when r, once its files are
// references, would be over the server's announced max_result_body; nil
// when it fits or the server announces no cap (then the server's answer
// decides).
func (c *Client) resultFits(r *spec.Result) error {
	capText := c.Settings().MaxResultBody
	if capText == "" {
		return nil
	}
	limit, err := spec.ParseSize(capText)
	if err != nil {
		// A cap we cannot read is not ours to judge: the post goes ahead
		// and the server's own answer decides.
		return nil //nolint:nilerr // the server judges
	}
	sized := *r
	sized.Files = make(map[string]spec.File, len(r.Files))
	placeholder := strings.Repeat("0", referenceLength)
	for name := range r.Files {
		sized.Files[name] = spec.File{Reference: placeholder}
	}
	body, err := sized.Encode()
	if err != nil {
		return nil //nolint:nilerr // the post encodes the result again and reports the error
	}
	if int64(len(body)) <= limit {
		return nil
	}
	return &ServerError{
		Path:    "task/result/",
		Status:  http.StatusRequestEntityTooLarge,
		Message: fmt.Sprintf("%s: the result with its %d files is %d bytes, over the server's max_result_body of %d bytes", spec.ResultFile, len(r.Files), len(body), limit),
	}
}

// Result returns the result of task key, ErrNotFound while there is none.
// With wait > 0 and a server that long-polls, the server holds the request
// until the result arrives or wait passes.
func (c *Client) Result(ctx context.Context, key string, wait time.Duration) (*spec.Result, error) {
	path := "task/result/" + key + "/"
	if wait > 0 && c.Settings().Has(api.ExtLongPoll) {
		path += "?wait=" + strconv.FormatFloat(math.Ceil(wait.Seconds()*1000)/1000, 'f', -1, 64)
	}
	var out api.ResultAnswer
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
