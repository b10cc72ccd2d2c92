package client

// This file owns task types on the client's side (extension "types"): a
// type folder put as a new version (its files uploaded as blobs), the
// listing, a type read or downloaded into a folder that `type put` takes
// back, removal, and a task made from a type: rendered here first, so that
// a wrong parameter is refused by name before anything is uploaded.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/atomicfile"
	"github.com/kolejka-go/kolejka/internal/tasktype"
	"github.com/kolejka-go/kolejka/spec"
)

// TypeInfo describes a type (api.TypeInfo).
type TypeInfo = api.TypeInfo

// typeKeys are the keys a type's kolejka_task.json has beside a task's.
var typeKeys = []string{"params", "pass_env"}

func (c *Client) needTypes() error {
	if !c.Settings().Has(api.ExtTypes) {
		return fmt.Errorf("task types: %w", ErrUnsupported)
	}
	return nil
}

// loadType reads and checks the type folder dir: its kolejka_task.json a
// valid type whose files are in the folder.
func loadType(dir string) (data []byte, task *spec.Task, err error) {
	file := filepath.Join(dir, spec.TaskFile)
	data, err = os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("unable to load the type: %w", err)
	}
	if _, err := tasktype.Parse(data, file); err != nil {
		return nil, nil, err
	}
	task, err = spec.ParseTaskExtended(data, file, typeKeys...)
	if err != nil {
		return nil, nil, err
	}
	if err := task.CheckFiles(dir); err != nil {
		return nil, nil, err
	}
	return data, task, nil
}

// withFiles returns the type's JSON data with its "files" replaced by
// files (the other keys as they were).
func withFiles(data []byte, files map[string]spec.File) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	type file struct {
		Path      string `json:"path,omitempty"`
		Reference string `json:"reference,omitempty"`
	}
	out := make(map[string]file, len(files))
	for name, f := range files {
		out[name] = file{Path: f.Path, Reference: f.Reference}
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	if len(files) > 0 {
		doc["files"] = raw
	} else {
		delete(doc, "files")
	}
	return json.MarshalIndent(doc, "", "  ")
}

// TypePut puts the type folder dir (its kolejka_task.json a type, see
// internal/tasktype) as a new version of the type name, shared with every
// user if public, and returns the version. Its files are uploaded unless
// the server holds their bytes; if the type is not stored, the references
// uploaded for it are deleted again (best effort).
func (c *Client) TypePut(ctx context.Context, name, dir string, public bool) (int, error) {
	if err := c.needTypes(); err != nil {
		return 0, err
	}
	if err := spec.CheckName(name); err != nil {
		return 0, &spec.Error{Field: "type name", Problem: err.Error()}
	}
	data, task, err := loadType(dir)
	if err != nil {
		return 0, err
	}
	refs, uploaded, err := c.uploadFiles(ctx, dir, task.Files)
	if err != nil {
		return 0, err
	}
	files := make(map[string]spec.File, len(refs))
	for n, f := range refs {
		files[n] = spec.File{Path: task.Files[n].Path, Reference: f.Reference}
	}
	body, err := withFiles(data, files)
	if err == nil {
		body, err = json.Marshal(api.TypePut{Name: name, Public: public, Type: body})
	}
	if err != nil {
		c.discard(ctx, uploaded)
		return 0, err
	}
	var out api.TypePutAnswer
	if err := c.call(ctx, http.MethodPost, "type/", body, "application/json", &out); err != nil {
		c.discard(ctx, uploaded)
		return 0, err
	}
	return out.Version, nil
}

// Types lists the types the user may use, by name: its own and the public
// ones (a manager's: all).
func (c *Client) Types(ctx context.Context) ([]TypeInfo, error) {
	if err := c.needTypes(); err != nil {
		return nil, err
	}
	var out api.TypesAnswer
	if err := c.call(ctx, http.MethodGet, "type/", nil, "", &out); err != nil {
		return nil, err
	}
	return out.Types, nil
}

// Type reads version of the type name (0: the latest): its description
// and its kolejka_task.json, files as path and reference.
func (c *Client) Type(ctx context.Context, name string, version int) (*api.TypeAnswer, error) {
	if err := c.needTypes(); err != nil {
		return nil, err
	}
	path := "type/" + url.PathEscape(name) + "/"
	if version > 0 {
		path += "?version=" + strconv.Itoa(version)
	}
	var out api.TypeAnswer
	if err := c.call(ctx, http.MethodGet, path, nil, "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TypeGet downloads the latest version of the type name into the folder
// dir (which must not exist or be empty): its files at their paths and
// its kolejka_task.json naming them by path only, so that `type put` of
// the folder puts the same type again (by anyone: the bytes are
// uploaded, or found by hash, as the putter's own).
func (c *Client) TypeGet(ctx context.Context, name, dir string) (*TypeInfo, error) {
	t, err := c.Type(ctx, name, 0)
	if err != nil {
		return nil, err
	}
	file := "the server's type " + name
	task, err := spec.ParseTaskExtended(t.Type, file, typeKeys...)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrProtocol)
	}
	// One download per path: two names of a type may share a file.
	byPath := map[string]string{}
	local := make(map[string]spec.File, len(task.Files))
	for n, f := range task.Files {
		if f.Reference == "" || f.Path == "" {
			return nil, fmt.Errorf("%s: file %s has no path or no reference: %w", file, n, ErrProtocol)
		}
		byPath[f.Path] = f.Reference
		local[n] = spec.File{Path: f.Path}
	}
	err = c.intoFolder(dir, func(stage string) error {
		err := forEachFile(slices.Sorted(maps.Keys(byPath)), func(p string) error {
			return c.BlobGet(ctx, byPath[p], filepath.Join(stage, filepath.FromSlash(p)))
		})
		if err != nil {
			return err
		}
		data, err := withFiles(t.Type, local)
		if err != nil {
			return fmt.Errorf("%s: %v: %w", file, err, ErrProtocol)
		}
		return atomicfile.WriteFile(filepath.Join(stage, spec.TaskFile), append(data, '\n'), 0o644)
	})
	if err != nil {
		return nil, err
	}
	return &t.Info, nil
}

// TypeRemove removes every version of the type name (its owner, managers).
func (c *Client) TypeRemove(ctx context.Context, name string) error {
	if err := c.needTypes(); err != nil {
		return err
	}
	return c.call(ctx, http.MethodDelete, "type/"+url.PathEscape(name)+"/", nil, "", nil)
}

// TypeTask is a task to make from a type.
type TypeTask struct {
	Type    string
	Version int               // 0: the latest
	Params  map[string]string // value parameters
	Files   map[string]string // file parameters: each a local file, which keeps its base name in the task folder
	Queue   string            // "": the type's (or the default queue)
	Caps    spec.Limits       // caps of the type's limits, beside the client's own
}

// TypeTaskPut submits a task made from a type and returns it as stored
// (its ID the key the server gave it). It renders the task here first,
// with the type the server holds: a missing, unknown or mistyped
// parameter is a *spec.Error naming it, and a file parameter's file must
// exist, before anything is uploaded. If the task is not stored, the
// references uploaded for it are deleted again (best effort).
func (c *Client) TypeTaskPut(ctx context.Context, tt TypeTask) (*spec.Task, error) {
	body, uploaded, err := c.typeTaskBuild(ctx, tt)
	if err != nil {
		return nil, err
	}
	encode := func() ([]byte, error) { return json.Marshal(body) }
	return postStored(ctx, c, "type/"+url.PathEscape(tt.Type)+"/task/", "task", encode, uploaded, spec.ParseTask)
}

// typeTaskBuild renders the task tt describes with the type the server
// holds (refusing a bad parameter by name) and uploads its file
// parameters: the body to post (TypeTaskPut, or a trigger's target) and
// the references it made. On failure it has deleted them again.
func (c *Client) typeTaskBuild(ctx context.Context, tt TypeTask) (api.TypeTask, []string, error) {
	t, err := c.Type(ctx, tt.Type, tt.Version)
	if err != nil {
		return api.TypeTask{}, nil, err
	}
	typ, err := tasktype.Parse(t.Type, "type "+tt.Type)
	if err != nil {
		return api.TypeTask{}, nil, fmt.Errorf("%v: %w", err, ErrProtocol)
	}
	typ.Name, typ.Version = t.Info.Name, t.Info.Version
	names := make(map[string]string, len(tt.Files))
	for param, path := range tt.Files {
		names[param] = filepath.Base(path)
	}
	if _, _, err := typ.Render(tt.Params, names); err != nil {
		return api.TypeTask{}, nil, err
	}
	var missing []error
	for _, param := range slices.Sorted(maps.Keys(tt.Files)) {
		if fi, err := os.Stat(tt.Files[param]); err != nil || !fi.Mode().IsRegular() {
			missing = append(missing, &spec.Error{Field: fmt.Sprintf("params[%q]", param), Problem: fmt.Sprintf("%s is not a readable file", tt.Files[param])})
		}
	}
	if err := errors.Join(missing...); err != nil {
		return api.TypeTask{}, nil, err
	}
	body := api.TypeTask{
		Files:   make(map[string]api.TypeFile, len(tt.Files)),
		Limits:  c.cfg.Limits.Merge(tt.Caps),
		Params:  tt.Params,
		Queue:   tt.Queue,
		Version: t.Info.Version,
	}
	var uploaded []string
	for _, param := range slices.Sorted(maps.Keys(tt.Files)) {
		ref, err := c.BlobPut(ctx, tt.Files[param])
		if err != nil {
			c.discard(ctx, uploaded)
			return api.TypeTask{}, nil, fmt.Errorf("params[%q]: %w", param, err)
		}
		uploaded = append(uploaded, ref.Key)
		body.Files[param] = api.TypeFile{Name: names[param], Reference: ref.Key}
	}
	return body, uploaded, nil
}
