package spec

// This file owns the disk side of task and result folders: checking that the
// files they name exist inside them, and writing description files so that a
// crash never leaves a torn one.

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
)

// CheckFiles checks, in the task folder dir, that the path of every file is
// a regular file whose real location (after symlinks) is inside dir. Files
// without a path, or with a path Validate refuses, are left to Validate.
//
// This is a check before the fact: whoever copies the files later must still
// open them without following links out of the folder, since the folder may
// change in between.
func (t *Task) CheckFiles(dir string) error {
	p := problems{file: TaskFile}
	checkFilesOnDisk(&p, dir, t.Files)
	return p.err()
}

// CheckFiles checks the result folder dir as Task.CheckFiles does.
func (r *Result) CheckFiles(dir string) error {
	p := problems{file: ResultFile}
	checkFilesOnDisk(&p, dir, r.Files)
	return p.err()
}

func checkFilesOnDisk(p *problems, dir string, files map[string]File) {
	root, err := filepath.Abs(dir)
	if err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		p.add("", "unable to resolve folder %s: %v", dir, err)
		return
	}
	for _, name := range sortedKeys(files) {
		f := files[name]
		if f.Path == "" || pathProblem(f.Path) != "" {
			continue
		}
		field := fieldPath(entryPath("files", name), "path")
		real, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(f.Path)))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				p.add(field, "%q does not exist in the folder", f.Path)
			} else {
				p.add(field, "unable to resolve %q: %v", f.Path, err)
			}
			continue
		}
		if rel, err := filepath.Rel(root, real); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			p.add(field, "%q leads outside the folder (to %s)", f.Path, real)
			continue
		}
		fi, err := os.Stat(real)
		switch {
		case err != nil:
			p.add(field, "unable to check %q: %v", f.Path, err)
		case !fi.Mode().IsRegular():
			p.add(field, "%q is not a regular file", f.Path)
		}
	}
}

// writeDescription encodes a task or result and replaces DIR/file with it,
// atomically and durably (see internal/atomicfile). Mode 0644: Kolejka's
// open(..., 'w') leaves the file readable by others (under the usual
// umask), which judges rely on.
func writeDescription(dir, file string, encode func() ([]byte, error)) error {
	data, err := encode()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, file), data, 0o644)
}
