package image

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/distribution/reference"
)

// The store keys its names by the strings NormalizeName writes, so the
// parser in name.go must agree with docker's reference library, which
// wrote them before it, on every input: which names it accepts, their
// normal form, their familiar form and their tag. The library is only
// linked into the tests.

const (
	sha256Hex = "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"
	sha512Hex = sha256Hex + sha256Hex
)

// nameCases are names of every shape the grammar knows, valid and not.
func nameCases() []string {
	long := func(n int, unit string) string { return strings.Repeat(unit, n)[:n] }
	cases := []string{
		// Docker Hub, official and user images.
		"busybox", "busybox:latest", "busybox:1.36", "busybox:1.36.1-glibc", "library/busybox",
		"docker.io/busybox", "docker.io/library/busybox", "docker.io/library/busybox:latest",
		"index.docker.io/busybox", "index.docker.io/library/busybox:1", "index.docker.io/user/app",
		"user/app", "user/app:v1", "docker.io/user/app:v1", "library/user/app", "docker.io/library/a/b",
		"a/b/c/d/e", "user/app:_", "user/app:__", "user/app:A_b.C-d",
		// Registries, ports, localhost, IP addresses.
		"localhost/app", "localhost:5000/app", "localhost:5000/app:tag", "localhost", "localhost:5000",
		"localhost/library/app", "example.com/app", "example.com:443/team/app:v2", "registry.example.com/a/b/c:t",
		"127.0.0.1/app", "127.0.0.1:5000/app", "10.0.0.1:65535/app", "host:5000/app", "host:/app", "host:x/app",
		"host:5000:6000/app", "my-registry.io/app", "-registry.io/app", "registry-.io/app", "reg..io/app",
		".registry.io/app", "registry.io./app", "a.b-c.d:1/e", "Example.COM/app", "EXAMPLE/app", "Foo/bar",
		"Foo/Bar", "foo/Bar", "a_b.c/d", "a_b.c/d:t", "a__b.c/d", "a-b.c/d", "A_B/c", "a_b:5000/c",
		"docker.io:443/app", "docker.io/app:5000/x", "foo:bar/baz", ":5000/app", "/app", "app/", "//app",
		"a//b", "registry.io/", "registry.io//app",
		// IPv6 hosts.
		"[::1]/app", "[::1]:5000/app", "[2001:db8::1]:443/team/app:v1", "[fe80::1%eth0]/app", "[]/app",
		"[::1/app", "[::1]x/app", "[::1]:/app", "[ab]/app", "[AB]/app", "[ab]:1/app", "[g::1]/app", "[::1]]/app",
		// Path separators.
		"a.b", "a_b", "a__b", "a___b", "a-b", "a--b", "a---b", "a.-b", "a-.b", "a._b", "a..b", "a_.b",
		"a.b.c", "a_b_c", "a__b__c", "a-", "a.", "a_", "-a", ".a", "_a", "a/-b", "a/b.", "a/b_", "a/.b",
		"a/b..c", "a/b__c", "a/b___c", "a+b", "a b", "a\tb", "a\x00b", "é", "aé", "é/app", "É/app",
		// Tags.
		"app:", "app:tag", "app:TAG", "app:.tag", "app:-tag", "app:_tag", "app:t.a-g_", "app:t/a", "app:t:a",
		"app:t@a", "app::tag", "app:" + long(128, "t"), "app:" + long(129, "t"), "app:" + long(127, "t") + ".",
		"localhost:5000/app:" + long(128, "0"), "localhost:5000/app:" + long(129, "0"),
		// Digests, alone and with a tag.
		"app@sha256:" + sha256Hex, "app:v1@sha256:" + sha256Hex, "docker.io/library/app@sha256:" + sha256Hex,
		"localhost:5000/app:v1@sha256:" + sha256Hex, "app@sha512:" + sha512Hex, "app@sha384:" + sha512Hex[:96],
		"app@sha256:" + strings.ToUpper(sha256Hex), "app@SHA256:" + sha256Hex, "app@sha256:" + sha256Hex[:63],
		"app@sha256:" + sha256Hex + "0", "app@md5:" + sha256Hex[:32], "app@sha256:", "app@", "@sha256:" + sha256Hex,
		"app@sha256:" + sha256Hex + "@sha256:" + sha256Hex, "app@sha256:" + sha256Hex + ":t",
		"app@sha256:" + sha256Hex + "/x", "app:@sha256:" + sha256Hex, "a/b@sha256:" + sha256Hex,
		"Foo/b@sha256:" + sha256Hex, "a_b.c/d@sha256:" + sha256Hex, "sha256:" + sha256Hex,
		// IDs are not names.
		sha256Hex, strings.ToUpper(sha256Hex), sha256Hex[:63], sha256Hex + "0", sha256Hex + ":latest",
		"library/" + sha256Hex,
		// Empty, blank and odd.
		"", " ", ":", "@", "/", ":tag", "app ", " app", "app\n", "APP", "App", "bad name!", "Not A Name",
		// Lengths: the 255-character limit counts the path only.
		long(255, "a"), long(256, "a"), long(247, "a"), long(248, "a"), "library/" + long(247, "a"),
		"user/" + long(250, "a"), "user/" + long(251, "a"), "localhost:5000/" + long(255, "a"),
		"localhost:5000/" + long(256, "a"), long(200, "a") + ".com/" + long(255, "a"),
		long(300, "a.b"), long(300, "a/b"), "a_b.c/" + long(249, "d"), "a_b.c/" + long(250, "d"),
	}
	return cases
}

// libRef is what docker's reference library makes of a name.
type libRef struct {
	ok                    bool
	norm, familiar, tag   string
	normFamiliar, normTag string // of norm, parsed again
	// engineRepo and engineTag are what the Engine API gets, as moby's
	// client sent them: the familiar name and the digest, else the tag
	// (latest by default).
	engineRepo, engineTag string
}

func libParse(s string) libRef {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return libRef{}
	}
	r := libRef{ok: true, norm: reference.TagNameOnly(named).String(), familiar: reference.FamiliarString(named)}
	if t, ok := named.(reference.Tagged); ok {
		r.tag = t.Tag()
	}
	normNamed, err := reference.ParseNormalizedNamed(r.norm)
	if err != nil {
		panic("the library refuses its own normal form " + r.norm)
	}
	r.normFamiliar = reference.FamiliarString(normNamed)
	if t, ok := normNamed.(reference.Tagged); ok {
		r.normTag = t.Tag()
	}
	r.engineRepo = reference.FamiliarName(named)
	if d, ok := named.(reference.Digested); ok {
		r.engineTag = d.Digest().String()
	} else {
		r.engineTag = reference.TagNameOnly(named).(reference.Tagged).Tag()
	}
	return r
}

func ourParse(t testing.TB, s string) libRef {
	t.Helper()
	norm, err := NormalizeName(s)
	if err != nil {
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("NormalizeName(%q): error %v does not wrap ErrInvalidName", s, err)
		}
		if _, perr := parseRef(s); perr == nil {
			t.Errorf("NormalizeName(%q) fails (%v) but parseRef does not", s, err)
		}
		return libRef{}
	}
	ref, err := parseRef(s)
	if err != nil {
		t.Fatalf("parseRef(%q) fails (%v) but NormalizeName does not", s, err)
	}
	r := libRef{ok: true, norm: norm, familiar: ref.familiar().String(), tag: ref.tag}
	normRef, err := parseRef(norm)
	if err != nil {
		t.Errorf("parseRef refuses its own normal form %q: %v", norm, err)
		return r
	}
	r.normFamiliar, r.normTag = familiar(norm), normRef.tag
	repo, tag, dgst, err := EngineName(s)
	if err != nil {
		t.Errorf("EngineName(%q) fails (%v) but NormalizeName does not", s, err)
	}
	if (tag == "") == (dgst == "") {
		t.Errorf("EngineName(%q) = tag %q, digest %q: want exactly one", s, tag, dgst)
	}
	r.engineRepo, r.engineTag = repo, tag+string(dgst)
	if again, err := NormalizeName(norm); err != nil || again != norm {
		t.Errorf("NormalizeName(%q) = %q, %v: the normal form is not stable", norm, again, err)
	}
	return r
}

func compareWithLibrary(t testing.TB, s string) {
	t.Helper()
	want, got := libParse(s), ourParse(t, s)
	if got != want {
		_, err := NormalizeName(s)
		t.Errorf("%q:\n got %+v (err %v)\nwant %+v", s, got, err, want)
	}
}

func TestNormalizeNameMatchesLibrary(t *testing.T) {
	accepted := 0
	for _, s := range nameCases() {
		compareWithLibrary(t, s)
		if libParse(s).ok {
			accepted++
		}
	}
	// The table must exercise both outcomes in earnest.
	if n := len(nameCases()); accepted < n/4 || accepted > 3*n/4 {
		t.Errorf("%d of %d names are valid: the table is lopsided", accepted, n)
	}
}

func TestNormalizeName(t *testing.T) {
	for _, c := range []struct{ in, norm, familiar string }{
		{"busybox", "docker.io/library/busybox:latest", "busybox:latest"},
		{"user/app:v1", "docker.io/user/app:v1", "user/app:v1"},
		{"index.docker.io/app", "docker.io/library/app:latest", "app:latest"},
		{"localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"},
		{"app@sha256:" + sha256Hex, "docker.io/library/app@sha256:" + sha256Hex, "app@sha256:" + sha256Hex},
		{"app:v1@sha256:" + sha256Hex, "docker.io/library/app:v1@sha256:" + sha256Hex, "app:v1@sha256:" + sha256Hex},
		{"a_b.c/d", "a_b.c/d:latest", "a_b.c/d:latest"},
		{"[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000/app:latest"},
	} {
		norm, err := NormalizeName(c.in)
		if err != nil || norm != c.norm {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", c.in, norm, err, c.norm)
		}
		if f := familiar(norm); f != c.familiar {
			t.Errorf("familiar(%q) = %q; want %q", norm, f, c.familiar)
		}
	}
	for _, c := range []struct{ in, problem string }{
		{"", "empty"},
		{"User/App", "must be lowercase"},
		{"docker.io/App", "must be lowercase"},
		{"a__b/c___d", `"c___d"`},
		{"app:" + strings.Repeat("t", 129), "more than 128"},
		{"app:.t", "must start with"},
		{"app@sha256:abc", "invalid digest"},
		{sha256Hex, "image ID"},
		{strings.Repeat("a", 256), "more than 255"},
		{"host:x/app", "port"},
		{"a/", "empty element"},
	} {
		_, err := NormalizeName(c.in)
		if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), c.problem) {
			t.Errorf("NormalizeName(%q) = %v; want ErrInvalidName saying %q", c.in, err, c.problem)
		}
	}
}

// ociTagRegexp is the tag grammar as docker's library writes it, to check
// isTag against.
var ociTagRegexp = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)

func FuzzNormalizeName(f *testing.F) {
	for _, s := range nameCases() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Around s as a whole name: s as a registry, a path under one, a
		// tag and a name with a digest.
		for _, name := range []string{s, s + "/app", "localhost:5000/" + s, "app:" + s, s + "@sha256:" + sha256Hex} {
			compareWithLibrary(t, name)
		}
		if got, want := isTag(s), ociTagRegexp.MatchString(s); got != want {
			t.Errorf("isTag(%q) = %v; the tag grammar says %v", s, got, want)
		}
	})
}
