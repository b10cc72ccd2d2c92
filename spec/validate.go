package spec

// This file owns what makes a task or result meaningful beyond its syntax:
// required fields, names that stay inside their folder, stdin among the
// files, outputs that do not clash, well-formed ids and callback URLs.

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
	"unicode"
)

// ValidateMode says where a task or result is checked.
type ValidateMode int

const (
	// Local is a folder on disk (a worker's input, a client's upload):
	// every file needs a path inside the folder.
	Local ValidateMode = iota + 1
	// Server is a task or result held by the server: every file needs a
	// blob reference; paths are not used.
	Server
)

// String returns "local" or "server".
func (m ValidateMode) String() string {
	switch m {
	case Local:
		return "local"
	case Server:
		return "server"
	}
	return fmt.Sprintf("ValidateMode(%d)", int(m))
}

// Validate checks the task's meaning for mode; each problem is an *Error
// naming kolejka_task.json and the field, all returned at once. Files are not
// looked at on disk: see CheckFiles.
//
// Both modes: image and args are required; an id has 1 to 64 of
// [A-Za-z0-9_-]; file names are relative, clean, free of "..", NUL and
// clashes with kolejka_task.json or with each other (a name cannot be a file
// and a folder of another); stdin is one of the files; stdout and stderr are
// such names too, not kolejka_result.json, and not a folder of one another;
// collect globs are relative without ".."; limits are not negative; a
// callback URL is absolute http or https.
func (t *Task) Validate(mode ValidateMode) error {
	p := problems{file: TaskFile}
	if !checkModeAndID(&p, mode, t.ID) {
		return p.err()
	}
	switch {
	case t.Image == "":
		p.add("image", "missing (the container image to run)")
	case strings.IndexFunc(t.Image, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		p.add("image", "%q contains white space or control characters", t.Image)
	}
	if len(t.Args) == 0 {
		p.add("args", "missing or empty (the command to run)")
	}
	for i, a := range t.Args {
		if strings.ContainsRune(a, 0) {
			p.add(indexPath("args", i), "contains a NUL byte")
		}
	}
	checkTags(&p, "requires", t.Requires)
	t.Limits.check(&p, "limits")
	for _, k := range sortedKeys(t.Environment) {
		switch {
		case k == "":
			p.add(entryPath("environment", k), "empty variable name")
		case strings.ContainsAny(k, "=\x00"):
			p.add(entryPath("environment", k), "variable names cannot contain \"=\" or NUL")
		case strings.ContainsRune(t.Environment[k], 0):
			p.add(entryPath("environment", k), "value contains a NUL byte")
		}
	}
	checkFileNames(&p, t.Files, mode, TaskFile)
	if t.Stdin != "" {
		if problem := nameProblem(t.Stdin); problem != "" {
			p.add("stdin", "%s", problem)
		} else if _, ok := t.Files[t.Stdin]; !ok {
			p.add("stdin", "%q is not one of the task's files (list it in files)", t.Stdin)
		}
	}
	checkOutputs(&p, t.Stdout, t.Stderr)
	for i, c := range t.Collect {
		cp := indexPath("collect", i)
		if problem := globProblem(c.Glob); problem != "" {
			p.add(fieldPath(cp, "glob"), "%s", problem)
		}
		if c.Strip < 0 {
			p.add(fieldPath(cp, "strip"), "negative (%d)", c.Strip)
		}
		if c.Prefix != "" {
			if problem := nameProblem(c.Prefix); problem != "" {
				p.add(fieldPath(cp, "prefix"), "%s", problem)
			} else if firstComponent(c.Prefix) == ResultFile {
				p.add(fieldPath(cp, "prefix"), "%q clashes with %s", c.Prefix, ResultFile)
			}
		}
	}
	if t.CallbackURL != "" {
		if problem := callbackProblem(t.CallbackURL); problem != "" {
			p.add("callback_url", "%s", problem)
		}
	}
	if t.Queue != "" {
		if err := CheckName(t.Queue); err != nil {
			p.add("queue", "%v", err)
		}
	}
	return p.err()
}

// Validate checks the result's meaning for mode, as Task.Validate does: id,
// file names (which cannot clash with kolejka_result.json), paths (Local) or
// references (Server), stdout and stderr names, status, limits and stats.
func (r *Result) Validate(mode ValidateMode) error {
	p := problems{file: ResultFile}
	if !checkModeAndID(&p, mode, r.ID) {
		return p.err()
	}
	checkTags(&p, "tags", r.Tags)
	r.Limits.check(&p, "limits")
	r.Stats.check(&p, "stats")
	if r.Status != "" && !r.Status.Valid() {
		p.add("status", "%s", statusProblem(r.Status))
	}
	checkFileNames(&p, r.Files, mode, ResultFile)
	checkOutputs(&p, r.Stdout, r.Stderr)
	return p.err()
}

func checkTags(p *problems, field string, tags []string) {
	for i, tag := range tags {
		if tag == "" || strings.ContainsRune(tag, 0) {
			p.add(indexPath(field, i), "%q is not a tag (empty or with a NUL byte)", tag)
		}
	}
}

// checkFileNames checks the names of files, and their paths or references
// for mode. reserved is the description file of the folder.
func checkFileNames(p *problems, files map[string]File, mode ValidateMode, reserved string) {
	names := sortedKeys(files)
	for _, name := range names {
		f, fp := files[name], entryPath("files", name)
		if problem := nameProblem(name); problem != "" {
			p.add(fp, "file name %s", problem)
		} else if firstComponent(name) == reserved {
			p.add(fp, "file name %q clashes with %s", name, reserved)
		} else if inside := firstUnder(names, name); inside != "" {
			// In sorted order the names under name+"/" follow name+"/".
			p.add(entryPath("files", inside), "file name %q clashes with file %q, which would have to be a folder", inside, name)
		}
		switch {
		case mode == Local && f.Path == "":
			p.add(fieldPath(fp, "path"), "missing (a local file needs a path inside the folder)")
		case mode == Server && f.Reference == "":
			p.add(fieldPath(fp, "reference"), "missing (the server needs a blob reference for every file)")
		}
		if f.Path != "" {
			if problem := pathProblem(f.Path); problem != "" {
				p.add(fieldPath(fp, "path"), "%s", problem)
			}
		}
		if f.Reference != "" {
			if problem := referenceProblem(f.Reference); problem != "" {
				p.add(fieldPath(fp, "reference"), "%s", problem)
			}
		}
	}
}

// firstUnder returns the first of the sorted names that lies in the folder
// dir, or "".
func firstUnder(sorted []string, dir string) string {
	i, _ := slices.BinarySearch(sorted, dir+"/")
	if i < len(sorted) && strings.HasPrefix(sorted[i], dir+"/") {
		return sorted[i]
	}
	return ""
}

// checkOutputs checks stdout and stderr names of the result folder.
func checkOutputs(p *problems, stdout, stderr string) {
	for _, o := range []struct{ field, name string }{{"stdout", stdout}, {"stderr", stderr}} {
		if o.name == "" {
			continue
		}
		if problem := nameProblem(o.name); problem != "" {
			p.add(o.field, "%s", problem)
		} else if firstComponent(o.name) == ResultFile {
			p.add(o.field, "%q clashes with %s", o.name, ResultFile)
		}
	}
	if stdout != "" && stderr != "" && stdout != stderr &&
		(strings.HasPrefix(stderr, stdout+"/") || strings.HasPrefix(stdout, stderr+"/")) {
		p.add("stderr", "%q clashes with stdout %q: one would have to be a folder of the other", stderr, stdout)
	}
}

func firstComponent(name string) string {
	first, _, _ := strings.Cut(name, "/")
	return first
}

// nameProblem says why name is not a safe name of a file inside a folder:
// relative, clean, no "..", no NUL. "" means it is fine.
func nameProblem(name string) string {
	if problem := pathProblem(name); problem != "" {
		return problem
	}
	if clean := path.Clean(name); clean != name {
		return fmt.Sprintf("%q is not in clean form (write %q)", name, clean)
	}
	return ""
}

// pathProblem says why p is not a relative path inside a folder. Unlike a
// name it may be unclean ("./in.txt"), but never leave the folder.
func pathProblem(p string) string {
	if p == "" {
		return "is empty"
	}
	if problem := escapeProblem(p, "it must be relative to the folder", "the folder"); problem != "" {
		return problem
	}
	if path.Clean(p) == "." {
		return fmt.Sprintf("%q is the folder itself, not a file in it", p)
	}
	return ""
}

// globProblem says why a collect glob is unusable.
func globProblem(g string) string {
	if g == "" {
		return "missing or empty"
	}
	return escapeProblem(g, "globs are relative to the task folder", "the task folder")
}

// checkModeAndID checks what Task.Validate and Result.Validate check first:
// the mode (false when unknown: nothing else can be checked) and the id.
func checkModeAndID(p *problems, mode ValidateMode, id string) bool {
	if mode != Local && mode != Server {
		p.add("", "unknown validation mode %v", mode)
		return false
	}
	if id != "" {
		if problem := idProblem(id); problem != "" {
			p.add("id", "%s", problem)
		}
	}
	return true
}

// escapeProblem says why p, a path relative to folder, may point outside
// it: a NUL byte, absolute (relative says what it should be), "..".
func escapeProblem(p, relative, folder string) string {
	switch {
	case strings.ContainsRune(p, 0):
		return fmt.Sprintf("%q contains a NUL byte", p)
	case strings.HasPrefix(p, "/"):
		return fmt.Sprintf("%q is absolute; %s", p, relative)
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return fmt.Sprintf("%q leaves %s (\"..\")", p, folder)
		}
	}
	return ""
}

// idProblem says why id is not a task key: 1 to 64 of [A-Za-z0-9_-].
func idProblem(id string) string {
	if len(id) > 64 {
		return fmt.Sprintf("%q is longer than 64 characters", id)
	}
	for _, r := range id {
		if !isIDChar(r) {
			return fmt.Sprintf("%q has %q; ids are made of A-Z, a-z, 0-9, _ and -", id, r)
		}
	}
	return ""
}

func isIDChar(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-'
}

// referenceProblem says why ref cannot be a blob reference. References are
// the server's keys; we only refuse what would break the URL path they are
// used in.
func referenceProblem(ref string) string {
	switch {
	case len(ref) > 256:
		return "longer than 256 characters"
	case ref == "." || ref == "..":
		return fmt.Sprintf("%q is not a reference", ref)
	case strings.IndexFunc(ref, func(r rune) bool {
		return r == '/' || r == '?' || r == '#' || unicode.IsSpace(r) || unicode.IsControl(r)
	}) >= 0:
		return fmt.Sprintf("%q contains \"/\", \"?\", \"#\", white space or control characters", ref)
	}
	return ""
}

// callbackProblem says why u is not an absolute http(s) URL.
func callbackProblem(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return fmt.Sprintf("not a URL: %v", err)
	}
	if s := strings.ToLower(parsed.Scheme); s != "http" && s != "https" {
		return fmt.Sprintf("%q is not an http or https URL", u)
	}
	if parsed.Host == "" {
		return fmt.Sprintf("%q has no host", u)
	}
	return ""
}
