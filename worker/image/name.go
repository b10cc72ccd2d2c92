package image

// Image names: the parser of Docker image references the store keys its
// images by, their normal form ("busybox" → "docker.io/library/busybox:latest")
// and their familiar form for messages ("busybox:latest").
//
// It accepts and refuses exactly the names docker's reference library
// (github.com/distribution/reference, ParseNormalizedNamed) does and writes
// the same strings, because stores key their names by these strings; the
// differential test and FuzzNormalizeName in name_test.go hold it to that.
// It scans by hand instead of importing that library, whose package
// initialisation compiles a dozen regular expressions on every start of
// the worker.
//
// The grammar, as that library defines it:
//
//	reference   := name [ ":" tag ] [ "@" digest ]
//	name        := [ domain "/" ] path
//	domain      := host [ ":" port ]                 port: [0-9]+
//	host        := label { "." label } | "[" [0-9A-Fa-f:]+ "]"
//	label       := [A-Za-z0-9] | [A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]
//	path        := component { "/" component }       at most 255 characters
//	component   := [a-z0-9]+ { separator [a-z0-9]+ }
//	separator   := "." | "_" | "__" | "-"+
//	tag         := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//	digest      := a digest go-digest parses (sha256:<64 hex> etc.)
//
// Normalizing first decides the domain from the first "/"-separated
// element (see splitDomain), then parses domain + "/" + the rest against
// the grammar. A first element that is not a valid host there makes the
// whole name a path without a domain ("a_b.c/d" stays "a_b.c/d:latest").

import (
	"errors"
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

const (
	defaultDomain = "docker.io"       // the registry of names without a domain
	legacyDomain  = "index.docker.io" // Docker Hub's old name, rewritten to defaultDomain
	officialPath  = "library/"        // Docker Hub's namespace of official images
	defaultTag    = "latest"
	maxPathLen    = 255
	maxTagLen     = 128
)

// imageRef is a parsed image reference. Its fields are in the normal form:
// a Docker Hub name has domain "docker.io" and, for official images, the
// "library/" path prefix.
type imageRef struct {
	domain string // "" when the first element could not be a host (see the file's header)
	path   string
	tag    string        // "" if none
	digest digest.Digest // "" if none
}

// name is the reference without its tag and digest.
func (r imageRef) name() string {
	if r.domain == "" {
		return r.path
	}
	return r.domain + "/" + r.path
}

func (r imageRef) String() string {
	s := r.name()
	if r.tag != "" {
		s += ":" + r.tag
	}
	if r.digest != "" {
		s += "@" + string(r.digest)
	}
	return s
}

// familiar is the reference as docker shows it: Docker Hub's domain and
// the "library/" prefix of official images dropped.
func (r imageRef) familiar() imageRef {
	if r.domain != defaultDomain {
		return r
	}
	r.domain = ""
	if rest, ok := strings.CutPrefix(r.path, officialPath); ok && !strings.Contains(rest, "/") {
		r.path = rest
	}
	return r
}

// parseRef parses an image reference as docker's ParseNormalizedNamed
// does, filling in Docker Hub's domain and "library/" prefix. It adds no
// default tag. Its errors say what is wrong with the name.
func parseRef(s string) (imageRef, error) {
	if s == "" {
		return imageRef{}, errors.New("the name is empty")
	}
	if len(s) == 64 && allBytes(s, isLowerHex) {
		return imageRef{}, errors.New("a 64-character hexadecimal string is an image ID, not a name")
	}
	domain, rest := splitDomain(s)
	full := domain + "/" + rest

	var r imageRef
	nameTag, dgst, hasDigest := strings.Cut(full, "@")
	if hasDigest {
		if strings.Contains(dgst, "@") {
			return imageRef{}, errors.New(`more than one "@"`)
		}
		d, err := digest.Parse(dgst)
		if err != nil {
			return imageRef{}, fmt.Errorf("invalid digest %q: %w", dgst, err)
		}
		r.digest = d
	}
	// A ":" after the last "/" starts the tag; one before it can only be a
	// port, which checkDomain checks. nameTag has the "/" splitDomain's
	// domain ends with, unless an "@" came before it, which the digest
	// check has refused.
	name := nameTag
	if i := strings.LastIndexByte(nameTag, ':'); i > strings.LastIndexByte(nameTag, '/') {
		name, r.tag = nameTag[:i], nameTag[i+1:]
		if err := checkTag(r.tag); err != nil {
			return imageRef{}, err
		}
	}

	first, path, _ := strings.Cut(name, "/")
	switch pathErr := checkPath(path); {
	case pathErr != nil:
		return imageRef{}, pathErr
	case checkDomain(first) == nil:
		r.domain, r.path = first, path
	case checkPath(name) == nil:
		r.path = name
	default:
		return imageRef{}, checkDomain(first)
	}
	if len(r.path) > maxPathLen {
		return imageRef{}, fmt.Errorf("the repository path is %d characters long, more than %d", len(r.path), maxPathLen)
	}
	return r, nil
}

// splitDomain decides which registry a name is on, as docker does: the
// first element before a "/" is a domain if it is "localhost", or contains
// a "." or ":", or an uppercase letter (paths are lowercase); otherwise,
// and for a name without "/", the registry is Docker Hub. On Docker Hub
// ("docker.io/app" too) a path of one element is an official image under
// "library/". rest is the name after the domain, with its tag and digest.
func splitDomain(s string) (domain, rest string) {
	first, after, ok := strings.Cut(s, "/")
	switch {
	case !ok:
		return defaultDomain, officialPath + s
	case first == legacyDomain:
		domain, rest = defaultDomain, after
	case first == "localhost" || strings.ContainsAny(first, ".:") || hasUpper(first):
		domain, rest = first, after
	default:
		domain, rest = defaultDomain, s
	}
	if domain == defaultDomain && !strings.Contains(rest, "/") {
		rest = officialPath + rest
	}
	return domain, rest
}

// checkDomain checks a registry host with an optional port.
func checkDomain(d string) error {
	host, port := d, ""
	if strings.HasPrefix(d, "[") {
		end := strings.IndexByte(d, ']')
		if end < 2 || !allBytes(d[1:end], isIPv6Byte) {
			return fmt.Errorf("invalid registry %q: a bracketed host is an IPv6 address (hex digits and colons)", d)
		}
		host, port = d[:end+1], d[end+1:]
		if port != "" && port[0] != ':' {
			return fmt.Errorf("invalid registry %q: only a port may follow the IPv6 address", d)
		}
	} else if i := strings.IndexByte(d, ':'); i >= 0 {
		host, port = d[:i], d[i:]
	}
	if port != "" && (len(port) == 1 || !allBytes(port[1:], isDigit)) {
		return fmt.Errorf("invalid registry %q: the port must be a number", d)
	}
	if strings.HasPrefix(host, "[") {
		return nil
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || !allBytes(label, func(c byte) bool { return isAlnum(c) || c == '-' }) ||
			label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("invalid registry %q: host names are dot-separated letters, digits and inner '-'", d)
		}
	}
	return nil
}

// checkPath checks the repository path, a "/"-separated list of
// components.
func checkPath(p string) error {
	for c := range strings.SplitSeq(p, "/") {
		if err := checkComponent(c); err != nil {
			return err
		}
	}
	return nil
}

// checkComponent checks one element of a repository path: runs of
// lowercase letters and digits joined by one ".", one or two "_", or any
// number of "-".
func checkComponent(c string) error {
	if c == "" {
		return errors.New(`the repository path has an empty element (a leading, trailing or doubled "/")`)
	}
	if hasUpper(c) {
		return fmt.Errorf("the repository path %q must be lowercase", c)
	}
	i := 0
	for {
		start := i
		for i < len(c) && isLowerAlnum(c[i]) {
			i++
		}
		if i == start {
			return fmt.Errorf("invalid repository path element %q: it must start and end with a letter or digit, and separators are one '.', one or two '_', or '-'s, between letters or digits", c)
		}
		if i == len(c) {
			return nil
		}
		switch c[i] {
		case '.':
			i++
		case '_':
			i++
			if i < len(c) && c[i] == '_' {
				i++
			}
		case '-':
			for i < len(c) && c[i] == '-' {
				i++
			}
		default:
			return fmt.Errorf("invalid repository path element %q: %q is not allowed", c, c[i])
		}
	}
}

// checkTag checks a tag: up to 128 letters, digits, "_", "." and "-", not
// starting with "." or "-".
func checkTag(t string) error {
	switch {
	case t == "":
		return errors.New(`the tag after ":" is empty`)
	case len(t) > maxTagLen:
		return fmt.Errorf("the tag is %d characters long, more than %d", len(t), maxTagLen)
	case !isTagByte(t[0]) || t[0] == '.' || t[0] == '-':
		return fmt.Errorf("invalid tag %q: it must start with a letter, digit or '_'", t)
	case !allBytes(t, isTagByte):
		return fmt.Errorf("invalid tag %q: only letters, digits, '_', '.' and '-' are allowed", t)
	}
	return nil
}

// isTag reports whether s is a valid tag.
func isTag(s string) bool { return checkTag(s) == nil }

func allBytes(s string, ok func(byte) bool) bool {
	for i := range len(s) {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func hasUpper(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' })
}

func isDigit(c byte) bool      { return '0' <= c && c <= '9' }
func isLowerHex(c byte) bool   { return isDigit(c) || 'a' <= c && c <= 'f' }
func isLowerAlnum(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'z' }
func isAlnum(c byte) bool      { return isLowerAlnum(c) || 'A' <= c && c <= 'Z' }
func isTagByte(c byte) bool    { return isAlnum(c) || c == '_' || c == '.' || c == '-' }
func isIPv6Byte(c byte) bool   { return isLowerHex(c) || 'A' <= c && c <= 'F' || c == ':' }
