package worker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/filecopy"
	"github.com/kolejka-go/kolejka/spec"
)

// scratch is a run's private folder:
//
//	<temp>/kolejka-run-<run id>/
//	  work/      the workspace: task/ and result/, a tmpfs of the workspace limit's size if there is one
//	  storage/   the container's writable layer, a tmpfs of the storage limit's size if there is one
//	  runtime/   the runtime's own (root file system mount point, state)
type scratch struct {
	dir       string
	work      string
	task      string
	result    string
	storage   string
	runtime   string
	workFS    bool // work is our tmpfs
	storageFS bool // storage is our tmpfs
	// room is what the task can write into its folders (task/ and
	// result/ share work): the workspace limit's tmpfs, or without one
	// the free space of the temp folder's file system, when the run
	// began. What leaves the task is bounded by it (see gather).
	room int64
}

func newScratch(temp, runID string, l spec.Limits) (_ *scratch, err error) {
	s := &scratch{dir: filepath.Join(temp, scratchPrefix+runID)}
	s.work = filepath.Join(s.dir, "work")
	s.task = filepath.Join(s.work, "task")
	s.result = filepath.Join(s.work, "result")
	s.storage = filepath.Join(s.dir, "storage")
	s.runtime = filepath.Join(s.dir, "runtime")
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("unable to create scratch folder: %w", err)
	}
	defer func() {
		if err != nil {
			_ = s.remove() // err is the news; the sweep of dead runs retries
		}
	}()
	for _, d := range []string{s.work, s.storage, s.runtime} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, fmt.Errorf("unable to create scratch folder: %w", err)
		}
	}
	if l.Workspace != nil {
		if err := mountTmpfs(s.work, *l.Workspace); err != nil {
			return nil, fmt.Errorf("unable to limit the workspace: %w", err)
		}
		s.workFS = true
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.work, &st); err != nil {
		return nil, fmt.Errorf("unable to measure the workspace: %w", err)
	}
	s.room = int64(st.Bavail) * int64(st.Bsize)
	if l.Storage != nil {
		if err := mountTmpfs(s.storage, *l.Storage); err != nil {
			return nil, fmt.Errorf("unable to limit storage: %w", err)
		}
		s.storageFS = true
	}
	for _, d := range []string{s.task, s.result} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, fmt.Errorf("unable to create scratch folder: %w", err)
		}
	}
	return s, nil
}

// mountTmpfs mounts a tmpfs of size bytes on dir. Its pages are charged to
// the memory cgroup of whoever writes them, so what a task writes also
// counts against its memory limit, and a task can never fill the node's
// disk. The inode count is bounded too: empty files cost no blocks but do
// cost kernel memory.
func mountTmpfs(dir string, size int64) error {
	if size < 4096 {
		size = 4096 // tmpfs rounds up to a page; 0 would mean "unlimited"
	}
	inodes := size/4096 + 1024
	opts := "size=" + strconv.FormatInt(size, 10) + ",nr_inodes=" + strconv.FormatInt(inodes, 10) + ",mode=0755"
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("unable to mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// full reports whether a tmpfs of ours ran out of blocks or inodes: the
// task then met ENOSPC, which is an output limit (OLE).
func fsFull(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Bavail == 0 || st.Ffree == 0
}

func (s *scratch) workspaceFull() bool { return s.workFS && fsFull(s.work) }
func (s *scratch) storageFull() bool   { return s.storageFS && fsFull(s.storage) }

func (s *scratch) remove() error { return removeScratch(s.dir) }

// errNoSpace marks a copy that ran out of workspace.
var errNoSpace = errors.New("the task's files do not fit its workspace limit")

// copyInputs copies (or with consume, takes: see copyFile) the task's files
// from src into the scratch task folder and writes the task file the command
// will see: every file listed by its name, as Kolejka's worker does.
func (s *scratch) copyInputs(t *spec.Task, src string, consume bool) error {
	jailed := *t
	jailed.Files = make(map[string]spec.File, len(t.Files))
	for name, f := range t.Files {
		from := filepath.Join(src, f.Path)
		to := filepath.Join(s.task, name)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return noSpace(fmt.Errorf("unable to copy %s: %w", name, err))
		}
		if err := copyFile(from, to, consume); err != nil {
			return noSpace(fmt.Errorf("unable to copy %s: %w", name, err))
		}
		jailed.Files[name] = spec.File{Path: name}
	}
	// Scratch dies with the run: no fsync (spec.WriteTask would pay for one).
	data, err := jailed.Encode()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.task, spec.TaskFile), data, 0o644); err != nil {
		return noSpace(err)
	}
	return nil
}

func noSpace(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w: %v", errNoSpace, err)
	}
	return err
}

// copyFile copies a regular file with its permission bits
// (filecopy.Copy). With take (--consume) it makes a hard link instead where
// it can (the same file system: no workspace tmpfs), which costs no copy
// either; a symlink among the task's files is followed, as a copy would.
//
// The original is never moved or removed here: the task folder goes only
// once the result is published (Execute), so a run that fails (a mistyped
// image, a runtime failure, a worker killed mid-run) leaves the user's task
// as it was, to be run again. Moving the files in, as Kolejka does, would
// lose them with the scratch folder. (A linked file is the user's own: a
// task that writes into an input in place changes it, as it would change
// a moved one; --consume says the user hands the files over.)
func copyFile(from, to string, take bool) error {
	if take {
		return filecopy.LinkOrCopy(from, to)
	}
	return filecopy.Copy(from, to)
}
