package worker

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/kolejka-go/kolejka/spec"
)

// collected is one output file to copy into the result.
type collected struct {
	src  string // absolute path of the regular file to copy (symlinks resolved)
	name string // its name in the result
}

// walkFiles lists the regular files below root by their slash-separated
// path relative to root, resolving symlinks that stay inside root and
// skipping the ones that do not (**FIX**: Kolejka follows them, so a task
// could collect /etc/shadow through a link). Directory symlinks are never
// descended into, so a link to / cannot make a walk of the host.
func walkFiles(root string) (map[string]string, error) {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	files := make(map[string]string)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable parts are simply not collected
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return nil
		}
		src := p
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(p)
			if err != nil || !within(realRoot, target) {
				return nil
			}
			src = target
		}
		fi, err := os.Stat(src)
		if err != nil || !fi.Mode().IsRegular() {
			return nil
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
