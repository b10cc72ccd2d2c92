package worker

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bmatcuk/doublestar/v4"
	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/spec"
)

// gather copies what the task produced into the result folder: what it
// left in its result folder and the collect rules' files (a rule's file
// wins over one of the result folder under the same name). The output
// captures are there already.
//
// Two rules keep one output from costing the rest or the node:
//
//   - What leaves the task is bounded by what it could really write: the
//     outputs copied here together take at most its room (scratch.room:
//     the workspace limit, or without one the free space its folders had
//     when it began). Only holes make a file larger than what was written
//     (`truncate -s 1G` under workspace 16M), and links or collect rules
//     can name one file many times: copied whole, either would write far
//     more onto the node's disk, and up to the server, than the task ever
//     could. In name order, a file that does not fit is left out, named in
//     the result's "omitted" with its size and the bound, and the verdict
//     is OLE, as for a task that fills its workspace.
//   - A file the result cannot name (not valid UTF-8, which the result's
//     JSON cannot carry; kolejka_result.json itself) is left out and named
//     in "omitted"; the result and every other file are delivered.
//
// Files that cannot be copied for other reasons are left out with the
// error as the reason; a full disk on the worker's side is a system error
// (SE), the rest of the result still written.
func (r *run) gather(sc *scratch) error {
	fromResult, err := resultFiles(sc.result)
	if err != nil {
		return err
	}
	collected, err := collectOutputs(sc.task, r.task.Collect)
	if err != nil {
		return err
	}
	src := make(map[string]string)
	for _, f := range append(fromResult, collected...) {
		src[f.name] = f.src
	}
	names := make([]string, 0, len(src))
	for name := range src {
		names = append(names, name)
	}
	sort.Strings(names)
	have := make(map[string]bool)
	for _, f := range r.files {
		have[f] = true
	}
	var used int64
	var errs []error
	for _, name := range names {
		if why := resultNameProblem(name); why != "" {
			r.omit(name, why)
			continue
		}
		if have[name] {
			r.omit(name, "its name is the task's stdout or stderr file, which holds the captured stream")
			continue
		}
		dst := filepath.Join(r.stage, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			r.omit(name, fmt.Sprintf("unable to make its folder in the result: %v", err))
			continue
		}
		n, err := copyOut(src[name], dst, sc.room-used)
		var big *tooLarge
		switch {
		case errors.As(err, &big):
			r.out.outputsTooBig = true
			r.omit(name, big.explain(used, sc))
			continue
		case errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT):
			r.omit(name, fmt.Sprintf("the worker's disk is full: %v", err))
			errs = append(errs, fmt.Errorf("unable to save the task's output %s: %w", strconv.Quote(name), err))
			continue
		case err != nil:
			r.omit(name, fmt.Sprintf("unable to copy it: %v", err))
			continue
		}
		used += n
		r.files = append(r.files, name)
	}
	sort.Strings(r.files)
	return errors.Join(errs...)
}

// omit records an output left out of the result.
func (r *run) omit(name, why string) {
	if r.omitted == nil {
		r.omitted = make(map[string]string)
	}
	shown := printableName(name)
	r.omitted[shown] = why
	r.log.Warn("not collecting an output", "name", shown, "why", why)
}

// printableName is name as "omitted" shows it: itself when it is printable
// UTF-8, else quoted Go-style, so that any bytes can be told apart.
func printableName(name string) string {
	if utf8.ValidString(name) && strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return name
	}
	return strconv.Quote(name)
}

// resultNameProblem says why name cannot be a file of the result ("" if it
// can). Names come from a walk of the task's folders: relative and clean.
func resultNameProblem(name string) string {
	switch {
	case !utf8.ValidString(name):
		return "its name is not valid UTF-8, which " + spec.ResultFile + " (JSON) cannot carry; rename it in the task"
	case !safeResultName(name):
		return "its name cannot be a file of the result folder"
	case strings.SplitN(name, "/", 2)[0] == spec.ResultFile:
		return "its name clashes with " + spec.ResultFile
	}
	return ""
}

// tooLarge: an output past what the task could write (see gather).
type tooLarge struct{ size, left int64 }

func (e *tooLarge) Error() string {
	return fmt.Sprintf("%d bytes, with only %d left to collect", e.size, e.left)
}

// explain says why, for "omitted".
func (e *tooLarge) explain(used int64, sc *scratch) string {
	bound := fmt.Sprintf("its workspace limit, %d bytes", sc.room)
	if !sc.workFS {
		bound = fmt.Sprintf("the free space of its folders when it began, %d bytes", sc.room)
	}
	if used == 0 {
		return fmt.Sprintf("it is %d bytes, more than the task could write (%s): a file with holes, or one named many times; not collected (OLE)", e.size, bound)
	}
	return fmt.Sprintf("it is %d bytes and the outputs before it (in name order) took %d: together more than the task could write (%s); not collected (OLE)", e.size, used, bound)
}

// copyOut copies a produced file into the result folder, if it is at most
// left bytes, and returns how many it copied. The source is task-controlled:
// open it without following a final symlink swapped in after the walk, and
// accept only a regular file. Its size is taken from the open file and no
// more is copied, whatever it becomes meanwhile. A failed copy leaves
// nothing at dst.
func copyOut(src, dst string, left int64) (int64, error) {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file", src)
	}
	if fi.Size() > left {
		return 0, &tooLarge{size: fi.Size(), left: max(left, 0)}
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := io.CopyN(out, in, fi.Size())
	if errors.Is(err, io.EOF) {
		err = nil // it shrank: what is there is the output
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return 0, err
	}
	return n, nil
}

// collected is one output file to copy into the result.
type collected struct {
	src  string // absolute path of the regular file to copy (symlinks resolved)
	name string // its name in the result
}

// walkFiles lists the regular files below root by their slash-separated
// path relative to root, resolving symlinks that stay inside root and
// skipping the ones that do not (unlike Kolejka, which follows them, so
// that a task could collect /etc/shadow through a link). Directory symlinks are never
// descended into, so a link to / cannot make a walk of the host.
func walkFiles(root string) (map[string]string, error) {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	files := make(map[string]string)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		// The task made these folders and could make any part of them
		// unreadable or strange: what cannot be read as a regular file
		// inside root is not an output, and must not cost the rest.
		if err != nil {
			return nil //nolint:nilerr // an unreadable part is not collected
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err // p is below root: it cannot fail
		}
		src := p
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(p)
			if err != nil || !within(realRoot, target) {
				return nil //nolint:nilerr // a dangling link names no file
			}
			src = target
		}
		fi, err := os.Stat(src)
		if err != nil || !fi.Mode().IsRegular() {
			return nil //nolint:nilerr // gone meanwhile, or no regular file
		}
		files[filepath.ToSlash(rel)] = src
		return nil
	})
	return files, err
}

func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator))
}

// collectOutputs evaluates the task's collect rules in taskDir: each glob
// (with ** for any depth) picks regular files, named in the result as
// prefix/<path without its first strip components>; the file name itself is
// never stripped. Later rules win on a clash, as in Kolejka.
func collectOutputs(taskDir string, rules []spec.Collect) ([]collected, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	files, err := walkFiles(taskDir)
	if err != nil {
		return nil, fmt.Errorf("unable to collect outputs: %w", err)
	}
	rels := make([]string, 0, len(files))
	for rel := range files {
		rels = append(rels, rel)
	}
	sort.Strings(rels) // of two files stripped to one name, the last in order wins
	byName := make(map[string]string)
	var order []string
	for _, r := range rules {
		pattern := strings.TrimPrefix(r.Glob, "./")
		for _, rel := range rels {
			src := files[rel]
			ok, err := doublestar.Match(pattern, rel)
			if err != nil {
				return nil, fmt.Errorf("unable to collect %q: %w", r.Glob, err)
			}
			if !ok || rel == spec.TaskFile {
				continue
			}
			parts := strings.Split(rel, "/")
			strip := r.Strip
			if strip > len(parts)-1 {
				strip = len(parts) - 1
			}
			name := strings.Join(parts[strip:], "/")
			if p := strings.Trim(r.Prefix, "/"); p != "" {
				name = p + "/" + name
			}
			if _, seen := byName[name]; !seen {
				order = append(order, name)
			}
			byName[name] = src
		}
	}
	out := make([]collected, 0, len(order))
	for _, name := range order {
		out = append(out, collected{src: byName[name], name: name})
	}
	return out, nil
}

// resultFiles lists what the task left in its result folder
// (/var/lib/kolejka/result, where Kolejka's stage2 also puts files).
func resultFiles(resultDir string) ([]collected, error) {
	files, err := walkFiles(resultDir)
	if err != nil {
		return nil, fmt.Errorf("unable to collect the result folder: %w", err)
	}
	out := make([]collected, 0, len(files))
	for rel, src := range files {
		out = append(out, collected{src: src, name: rel})
	}
	return out, nil
}

// safeResultName reports whether name may be written into a result folder.
func safeResultName(name string) bool {
	if name == "" || name == spec.ResultFile || strings.HasPrefix(name, "/") {
		return false
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." {
			return false
		}
	}
	return true
}
