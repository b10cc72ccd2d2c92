package foreman

// This file owns one task on the node, from the dequeue that took it to
// its posted result: inputs through the blob cache, the image marked used,
// the worker's run, and the result posted, retried, exactly once.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
)

// downloadConcurrency bounds the parallel input downloads of one task.
const downloadConcurrency = 4

// job is one task the node holds.
type job struct {
	key  string
	task *spec.Task
	log  *slog.Logger
	// ctx is the task's download and run; cancelled with ErrLost when the
	// server takes the task back, with ErrKilled on a hard stop.
	ctx    context.Context
	cancel context.CancelCauseFunc
	grant  grant
	dir    string // jobs/<key>-<random>: task/ and result/
	// env are the node's variables the task takes (passenv.go).
	env map[string]string
}

func (f *Foreman) newJob(t *spec.Task) *job {
	ctx, cancel := context.WithCancelCause(f.jobsCtx)
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &job{
		key:    t.ID,
		task:   t,
		log:    f.log.With("task", t.ID),
		ctx:    ctx,
		cancel: cancel,
		dir:    filepath.Join(f.jobsDir, t.ID+"-"+hex.EncodeToString(b[:])),
	}
}

func (j *job) taskDir() string   { return filepath.Join(j.dir, "task") }
func (j *job) resultDir() string { return filepath.Join(j.dir, "result") }

// runJob is a started task's goroutine. admitErr is set when the ledger
// refused the task for good: it gets an SE result without running.
func (f *Foreman) runJob(j *job, admitErr error) {
	defer f.jobsWG.Done()
	defer os.RemoveAll(j.dir)
	var res *spec.Result
	var releaseImage func()
	// posting closes when the post started as the worker published the
	// result (before the container's tear-down ended) is done.
	var posting <-chan struct{}
	if admitErr != nil {
		j.log.Error("task cannot run on this node", "error", admitErr)
		res = f.systemError(j, admitErr)
	} else {
		res, releaseImage, posting = f.execute(j)
		f.mu.Lock()
		f.ledger.release(j.grant)
		f.schedule()
		f.mu.Unlock()
		f.notify()
	}
	if releaseImage != nil {
		releaseImage()
	}
	switch cause := context.Cause(j.ctx); {
	case posting != nil:
		<-posting
	case errors.Is(cause, ErrLost):
		j.log.Warn("task killed: the server gave it to another node; its result is not posted")
		f.drop(j, false)
	case res == nil || errors.Is(cause, ErrKilled):
		f.drop(j, true)
	default:
		f.post(j, res)
	}
	if releaseImage != nil {
		// The runtime may have brought the image in (docker pulls): the
		// budget is checked again once the result is out of the way.
		if err := f.images.Enforce(f.jobsCtx); err != nil && f.jobsCtx.Err() == nil {
			j.log.Warn("unable to keep images within their budget", "error", err)
		}
	}
}

// drop forgets a task the node will not post a result for, handing it back
// if asked.
func (f *Foreman) drop(j *job, handBack bool) {
	j.cancel(nil)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.jobs[j.key] != j {
		return // taken again meanwhile: the new run owns the key
	}
	delete(f.jobs, j.key)
	if handBack {
		f.handBack = append(f.handBack, j.key)
	}
}

// execute brings the task's inputs and runs it. It returns the result
// (its files in j.resultDir()), nil when the task's context ended, the
// image cache's release, and, when the result was posted as soon as the
// worker published it (the task still the node's then), a channel closed
// when that post is done.
func (f *Foreman) execute(j *job) (_ *spec.Result, _ func(), posting <-chan struct{}) {
	ctx := j.ctx
	if err := os.MkdirAll(j.taskDir(), 0o700); err != nil {
		return f.systemError(j, fmt.Errorf("unable to create the task folder: %w", err)), nil, nil
	}
	if err := f.fetchInputs(ctx, j); err != nil {
		if ctx.Err() != nil {
			return nil, nil, nil
		}
		j.log.Error("unable to bring the task's inputs", "error", err)
		return f.systemError(j, fmt.Errorf("unable to bring the task's inputs: %w", err)), nil, nil
	}
	if err := f.ensureImage(ctx, j); err != nil {
		if ctx.Err() != nil {
			return nil, nil, nil
		}
		j.log.Error("unable to bring the task's image", "error", err)
		return f.systemError(j, err), nil, nil
	}
	var release func()
	if f.images != nil {
		release, _ = f.images.Acquire(ctx, j.task.Image)
	}
	j.log.Debug("task starting", "limits", j.grant.limits.String(), "cores", j.grant.cores)
	var posted chan struct{}
	res, err := f.cfg.Executor.Execute(ctx, j.taskDir(), j.resultDir(), worker.Options{Cores: j.grant.cores, Transient: true,
		Published: func(res *spec.Result) {
			// The owner gets the result while the worker tears the
			// container down; a task lost or stopped meanwhile is
			// runJob's to settle, as without this.
			if context.Cause(ctx) != nil {
				return
			}
			posted = make(chan struct{})
			go func() {
				defer close(posted)
				f.post(j, res)
			}()
		}})
	switch {
	case posted != nil:
		if err != nil {
			j.log.Warn("the system failed to run the task: SE", "error", err)
		}
		return res, release, posted
	case ctx.Err() != nil:
		return nil, release, nil
	case res == nil:
		// The worker refused the task as given (it cannot happen with a task
		// the server checked, but the owner must hear of it).
		j.log.Error("the worker refused the task", "error", err)
		return f.systemError(j, err), release, nil
	case err != nil:
		j.log.Warn("the system failed to run the task: SE", "error", err)
	}
	j.log.Debug("task ran", "status", res.Status)
	return res, release, nil
}

// fetchInputs fills the task folder: every file through the blob cache,
// and kolejka_task.json with the limits the task runs with here.
func (f *Foreman) fetchInputs(ctx context.Context, j *job) error {
	t := *j.task
	if err := t.Validate(spec.Server); err != nil {
		return err
	}
	t.Files = make(map[string]spec.File, len(j.task.Files))
	// Every file is tried, whatever fails: the errors are joined.
	var (
		mu   sync.Mutex
		errs []error
		g    errgroup.Group
	)
	g.SetLimit(downloadConcurrency)
	hits := 0
	for name, file := range j.task.Files {
		t.Files[name] = spec.File{Path: name}
		g.Go(func() error {
			hit, err := f.fetchInput(ctx, j, name, file.Reference)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			} else if hit {
				hits++
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines return nil: errs holds their errors
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(t.Files) > 0 {
		j.log.Debug("inputs ready", "files", len(t.Files), "cached", hits)
	}
	t.Limits = j.grant.limits
	t.Environment = withPassedEnv(t.Environment, j.env)
	data, err := t.Encode()
	if err != nil {
		return err
	}
	// A scratch folder that dies with the job: no fsync.
	return os.WriteFile(filepath.Join(j.taskDir(), spec.TaskFile), data, 0o644)
}

// fetchInput puts one input file into the task folder.
func (f *Foreman) fetchInput(ctx context.Context, j *job, name, ref string) (hit bool, err error) {
	dst := filepath.Join(j.taskDir(), filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return false, err
	}
	var info *client.Reference
	if err := f.retrying(ctx, func(ctx context.Context) error {
		var err error
		info, err = f.cl.BlobInfo(ctx, ref)
		return err
	}); err != nil {
		return false, err
	}
	return f.blobs.Link(ctx, info.Blob, dst, func(ctx context.Context, path string) error {
		return f.retrying(ctx, func(ctx context.Context) error {
			return f.cl.BlobGetExpect(ctx, ref, info.Blob, path)
		})
	})
}

// systemError is the SE result of a task the node could not run: no exit
// code, no files, the node's tags and the limits it would have run with.
func (f *Foreman) systemError(j *job, why error) *spec.Result {
	limits := j.grant.limits
	if limits.IsZero() {
		limits = j.task.Limits
	}
	j.log.Warn("task fails with a system error (SE)", "error", why)
	return &spec.Result{
		ID:     j.key,
		Tags:   append([]string{}, f.cfg.Tags...),
		Limits: limits,
		Status: spec.StatusSE,
		Stdout: j.task.Stdout,
		Stderr: j.task.Stderr,
		Files:  map[string]spec.File{},
	}
}

// outputsDropped is res as OLE (an output limit: the server's cap on a
// result) with only its stdout and stderr files, which the owner needs to
// see what the task did; exit code, limits and stats stay.
func outputsDropped(res *spec.Result) *spec.Result {
	out := *res
	out.Status = spec.StatusOLE
	out.Files = map[string]spec.File{}
	for _, name := range []string{res.Stdout, res.Stderr} {
		if f, ok := res.Files[name]; ok && name != "" {
			out.Files[name] = f
		}
	}
	return &out
}

// holds asks the server whether the node still holds the task (one
// heartbeat); when it cannot tell (no heartbeat extension, no answer) the
// node assumes it does.
func (f *Foreman) holds(ctx context.Context, j *job) bool {
	if !f.cl.Settings().Has("heartbeat") {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, f.heartbeat)
	defer cancel()
	_, lost, err := f.cl.Heartbeat(ctx, []string{j.key})
	return err != nil || len(lost) == 0
}

// post uploads the result and posts it, retrying while the server cannot
// be reached. Retries are safe: the server answers a replay of the same
// result (even through new references) with the stored one. A task that
// already has another result (another node's, after this node lost it)
// keeps it. A result over the server's size cap is posted as OLE with
// stdout and stderr only; any other result the server refuses is replaced
// by an SE one, so that the owner is never left waiting. The references a
// failed post uploaded are deleted again by the client (and swept by the
// server if this node dies first).
func (f *Foreman) post(j *job, res *spec.Result) {
	ctx := f.jobsCtx // a lost task that has run still posts: the server arbitrates
	// The node's tags, whatever the executor wrote (Kolejka's foreman does
	// the same): they say where the task ran.
	res.Tags = append([]string{}, f.cfg.Tags...)
	if res.Status == spec.StatusSE && !f.holds(ctx, j) {
		// A failure met after the task was taken back (a download refused
		// because the lease lapsed meanwhile): the task is another node's
		// now, and an SE from here would be taken as its result.
		j.log.Warn("SE result not posted: the task is no longer this node's")
		f.drop(j, false)
		return
	}
	send := func(r *spec.Result) error {
		return f.retrying(ctx, func(ctx context.Context) error {
			_, err := f.cl.ResultPost(ctx, j.resultDir(), r)
			return err
		})
	}
	err := send(res)
	if client.TooLarge(err) && res.Status != spec.StatusSE {
		// More output files than the server stores in one result (the
		// client saw it before uploading, or the server answered 413 and
		// the client deleted what it had uploaded): the owner gets the
		// verdict that says so, with stdout and stderr, rather than an SE.
		j.log.Warn("the result is over the server's size cap; posting it as OLE with stdout and stderr only", "files", len(res.Files), "error", err)
		res = outputsDropped(res)
		err = send(res)
	}
	var se *client.ServerError
	if err != nil && errors.As(err, &se) && !alreadyResolved(err) && !errors.Is(err, client.ErrCancelled) && res.Status != spec.StatusSE {
		j.log.Error("the server refused the result; posting an SE result instead", "error", err)
		res = f.systemError(j, err)
		err = send(res)
	}
	switch {
	case err == nil:
		j.log.Info("result posted", "status", res.Status)
		f.drop(j, false)
	case errors.Is(context.Cause(ctx), ErrKilled):
		f.drop(j, true)
	case errors.Is(err, client.ErrCancelled):
		j.log.Info("the task was cancelled before its result was posted; the result is dropped")
		f.drop(j, false)
	case alreadyResolved(err):
		j.log.Info("the task already has another result (another node's); this one is dropped")
		f.drop(j, false)
	default:
		// Given up: the task comes back when its lease lapses (heartbeats
		// for it stop now), and another attempt is made.
		j.log.Error("unable to post the result; the server will take the task back", "error", err)
		f.drop(j, false)
	}
}
