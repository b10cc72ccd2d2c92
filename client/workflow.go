package client

// This file owns workflows on the client's side (extension "workflows",
// docs/workflows.md): a workflow folder put as a run (each task folder's
// files and each type step's files uploaded first), runs listed and read,
// cancelled and retried, and a run's results fetched once it ended:
// OUT/STEP/ (OUT/STEP/ITEM/ for a step with items) and
// OUT/kolejka_workflow_result.json. The server advances the run; the
// client only puts it and looks.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/atomicfile"
	"github.com/kolejka-go/kolejka/internal/workflow"
	"github.com/kolejka-go/kolejka/spec"
)

// WorkflowResultFile is the file WorkflowGet writes beside the steps'
// result folders: the run as WorkflowShow reads it.
const WorkflowResultFile = "kolejka_workflow_result.json"

// WorkflowInfo describes a run (api.WorkflowInfo).
type WorkflowInfo = api.WorkflowInfo

func (c *Client) needWorkflows() error {
	if !c.Settings().Has(api.ExtWorkflows) {
		return fmt.Errorf("workflows: %w", ErrUnsupported)
	}
	return nil
}

// WorkflowPut puts the workflow folder dir (its kolejka_workflow.json and
// the task folders and files it names) as a new run and returns the run's
// key. The workflow is parsed here first, so that a bad one is refused by
// step and field before anything is uploaded; if the server does not
// store the run, the references uploaded for it are deleted again (best
// effort).
func (c *Client) WorkflowPut(ctx context.Context, dir string) (string, error) {
	put, uploaded, err := c.workflowBuild(ctx, dir)
	if err != nil {
		return "", err
	}
	return c.workflowPost(ctx, put, uploaded)
}

// workflowBuild reads and checks the workflow folder dir and uploads the
// files of its steps: the put to post (WorkflowPut, or a trigger's
// target) and the references it made. On failure it has deleted them
// again.
func (c *Client) workflowBuild(ctx context.Context, dir string) (api.WorkflowPut, []string, error) {
	if err := c.needWorkflows(); err != nil {
		return api.WorkflowPut{}, nil, err
	}
	file := filepath.Join(dir, workflow.FileName)
	data, err := os.ReadFile(file)
	if err != nil {
		return api.WorkflowPut{}, nil, fmt.Errorf("unable to load the workflow: %w", err)
	}
	wf, err := workflow.Parse(data, file)
	if err != nil {
		return api.WorkflowPut{}, nil, err
	}
	put := api.WorkflowPut{Workflow: data, Tasks: map[string]json.RawMessage{}, Files: map[string]map[string]api.TypeFile{}}
	var uploaded []string
	fail := func(err error) (api.WorkflowPut, []string, error) {
		c.discard(ctx, uploaded)
		return api.WorkflowPut{}, nil, err
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range wf.Steps {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		st := wf.Steps[name]
		if st.Task != "" {
			if _, done := put.Tasks[st.Task]; done {
				continue
			}
			task, made, err := c.workflowTask(ctx, filepath.Join(dir, filepath.FromSlash(st.Task)))
			uploaded = append(uploaded, made...)
			if err != nil {
				return fail(fmt.Errorf("%s: tasks[%q]: %w", file, name, err))
			}
			put.Tasks[st.Task] = task
			continue
		}
		files := map[string]api.TypeFile{}
		for _, param := range slices.Sorted(func(yield func(string) bool) {
			for p := range st.Files {
				if !yield(p) {
					return
				}
			}
		}) {
			p := st.Files[param]
			key, made, err := c.ensureReference(ctx, dir, spec.File{Path: p})
			if made {
				uploaded = append(uploaded, key)
			}
			if err != nil {
				return fail(fmt.Errorf("%s: tasks[%q].files[%q]: %w", file, name, param, err))
			}
			files[param] = api.TypeFile{Name: filepath.Base(filepath.FromSlash(p)), Reference: key}
		}
		if len(files) > 0 {
			put.Files[name] = files
		}
	}
	return put, uploaded, nil
}

// workflowPost posts a built workflow put as a new run and returns its
// key; if the server does not store it, the references uploaded for it
// are deleted again (best effort).
func (c *Client) workflowPost(ctx context.Context, put api.WorkflowPut, uploaded []string) (string, error) {
	body, err := json.Marshal(put)
	if err == nil {
		var out api.WorkflowPutAnswer
		if err = c.call(ctx, http.MethodPost, "workflow/", body, "application/json", &out); err == nil {
			return out.Key, nil
		}
	}
	c.discard(ctx, uploaded)
	return "", err
}

// workflowTask reads a step's task folder and uploads its files: its
// kolejka_task.json with each file's reference beside its path ({item}
// stays for the server to render).
func (c *Client) workflowTask(ctx context.Context, dir string) (json.RawMessage, []string, error) {
	data, err := os.ReadFile(filepath.Join(dir, spec.TaskFile))
	if err != nil {
		return nil, nil, fmt.Errorf("unable to load the task: %w", err)
	}
	t, err := spec.ParseTask(data, filepath.Join(dir, spec.TaskFile))
	if err != nil {
		return nil, nil, err
	}
	refs, uploaded, err := c.uploadFiles(ctx, dir, t.Files)
	if err != nil {
		return nil, nil, err
	}
	files := make(map[string]spec.File, len(refs))
	for n, f := range refs {
		files[n] = spec.File{Path: t.Files[n].Path, Reference: f.Reference}
	}
	out, err := withFiles(data, files)
	return out, uploaded, err
}

// Workflows lists the user's runs (a manager's: all), oldest first.
func (c *Client) Workflows(ctx context.Context) ([]WorkflowInfo, error) {
	if err := c.needWorkflows(); err != nil {
		return nil, err
	}
	var out api.WorkflowsAnswer
	if err := c.call(ctx, http.MethodGet, "workflow/", nil, "", &out); err != nil {
		return nil, err
	}
	return out.Workflows, nil
}

// WorkflowShow reads run key: every step and instance.
func (c *Client) WorkflowShow(ctx context.Context, key string) (*WorkflowInfo, error) {
	return c.workflowCall(ctx, http.MethodGet, "workflow/"+key+"/")
}

// WorkflowCancel cancels run key and its tasks.
func (c *Client) WorkflowCancel(ctx context.Context, key string) (*WorkflowInfo, error) {
	return c.workflowCall(ctx, http.MethodPost, "workflow/"+key+"/cancel/")
}

// WorkflowRetry runs again what failed, was cancelled or skipped in run
// key, keeping the OK steps' results.
func (c *Client) WorkflowRetry(ctx context.Context, key string) (*WorkflowInfo, error) {
	return c.workflowCall(ctx, http.MethodPost, "workflow/"+key+"/retry/")
}

func (c *Client) workflowCall(ctx context.Context, method, path string) (*WorkflowInfo, error) {
	if err := c.needWorkflows(); err != nil {
		return nil, err
	}
	var out api.WorkflowAnswer
	if err := c.call(ctx, method, path, nil, "", &out); err != nil {
		return nil, err
	}
	return &out.Workflow, nil
}

// WorkflowWait reads run key every poll until it ended.
func (c *Client) WorkflowWait(ctx context.Context, key string, poll time.Duration) (*WorkflowInfo, error) {
	return c.WorkflowWatch(ctx, key, poll, nil)
}

// WorkflowWatch is WorkflowWait that also shows seen every reading of the
// run, the last (ended) one included.
func (c *Client) WorkflowWatch(ctx context.Context, key string, poll time.Duration, seen func(*WorkflowInfo)) (*WorkflowInfo, error) {
	for {
		info, err := c.WorkflowShow(ctx, key)
		if err == nil && seen != nil {
			seen(info)
		}
		if err != nil || info.State != string(workflow.Running) {
			return info, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(poll):
		}
	}
}

// WorkflowGet waits for run key's end (reading it every poll) and writes
// its results into out (which must not exist or be empty): OUT/STEP/ for
// a step's result, OUT/STEP/ITEM/ for each item of a step with items
// (instances without a result, skipped or cancelled, have no folder), and
// OUT/kolejka_workflow_result.json, the run with every step's state and
// status.
func (c *Client) WorkflowGet(ctx context.Context, key, out string, poll time.Duration) (*WorkflowInfo, error) {
	info, err := c.WorkflowWait(ctx, key, poll)
	if err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(out); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("unable to write the run's results: %s is not empty", out)
	}
	if err := os.MkdirAll(out, 0o750); err != nil {
		return nil, fmt.Errorf("unable to write the run's results: %w", err)
	}
	for _, st := range info.Steps {
		for _, in := range st.Instances {
			if in.TaskKey == "" || (in.State != string(workflow.OK) && in.State != string(workflow.Failed)) || in.TaskState != api.StateDone {
				continue
			}
			dir := filepath.Join(out, st.Name)
			if in.Item != "" {
				dir = filepath.Join(dir, in.Item)
			}
			if _, err := c.ResultGet(ctx, in.TaskKey, dir, 0); err != nil {
				return nil, fmt.Errorf("step %s: %w", st.Name, err)
			}
		}
	}
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(out, WorkflowResultFile), append(data, '\n'), 0o640); err != nil {
		return nil, fmt.Errorf("unable to write the run's results: %w", err)
	}
	return info, nil
}
