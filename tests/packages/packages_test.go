// Package packages_test installs the Debian packages of `make packages` into
// a clean Debian root, as an administrator would, and runs a task with the
// installed files.
//
// The root is Debian's minimal base (debootstrap --variant=minbase) from the
// mirror this machine's apt uses, kept as a tarball under build/ and
// imported into Docker once; the test then runs a container from it that
// installs the packages with apt-get (offline: the base must hold every
// dependency) and checks what a Debian administrator relies on: the files in
// place, the server's user and the folders, the units enabled but not
// started, `kolejka-worker execute` of testdata/tasks/hello in a runc
// container, the same task through a grid of the three (the server as its
// user, a foreman, the client), and a purge that takes back what the
// postinst made.
package packages_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/tasktest"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
)

// suite is the Debian release the packages are installed on.
const suite = "bookworm"

// packagesEnv names a folder of already built packages (CI's, after `make
// packages`); without it the test runs `make packages`.
const packagesEnv = "KOLEJKA_PACKAGES"

// repoName is the Docker repository of the Debian roots' images.
const repoName = "kolejka-packages-test"

// names are the packages `make packages` makes.
var names = []string{"kolejka-server", "kolejka-node", "kolejka-client"}

// inside runs in the container, as root, with the packages in /debs, the
// test image in /image, the task in /task and /out for what the test reads.
// It stops at the first failing command (set -e): the test shows its
// output.
const inside = `set -eu
# The container's own cgroups (its namespace's root) are mounted read-only
# by Docker: make them writable for the worker's task groups.
for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$d"; done

apt-get install -y -q --no-install-recommends /debs/*.deb
dpkg-query -W -f '${Package} ${Status}\n' kolejka-server kolejka-node kolejka-client >/out/status
for f in /usr/bin/kolejka-* /usr/lib/systemd/system/kolejka-*.service /usr/share/doc/kolejka*/examples/kolejka.conf /var/lib/kolejka/* /etc/kolejka; do
	stat -c '%n %a %U' "$f"
done >/out/files
ls /etc/systemd/system/multi-user.target.wants/ >/out/enabled
getent passwd kolejka >/out/user
grep -h '^ExecStart=' /usr/lib/systemd/system/kolejka-*.service >/out/exec
# Nothing of ours may run after the install: enabled, not started (the
# base has no ps).
cat /proc/[0-9]*/comm | grep '^kolejka' >/out/running || true

kolejka-worker image import kolejka-test:latest /image/rootfs.tar
kolejka-worker execute /task /out/result || echo "exit $?" >/out/execute

# The three packages as one grid, as the units would run them: the server
# as its user on its data folder, reading kolejka.conf through the group
# kolejka; a foreman with the node's account; the client as alice.
cat >/etc/kolejka/kolejka.conf <<'CONF'
[client]
server = http://127.0.0.1:8000
username = node1
password = node password
CONF
chgrp kolejka /etc/kolejka/kolejka.conf
chmod 0640 /etc/kolejka/kolejka.conf
runuser -u kolejka -- kolejka-server adduser --processors node1 'node password'
runuser -u kolejka -- kolejka-server adduser --clients alice 'alice password'
runuser -u kolejka -- kolejka-server serve >/out/server.log 2>&1 &
server=$!
kolejka-foreman --config-file /etc/kolejka/kolejka.conf >/out/foreman.log 2>&1 &
foreman=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8000) 2>/dev/null && break; sleep 0.1; done
timeout 60 env KOLEJKA_USERNAME=alice KOLEJKA_PASSWORD='alice password' kolejka-client execute /task /out/grid-result \
	|| echo "exit $?" >/out/client
stat -c '%U' /var/lib/kolejka/server/* >/out/server-files
kill "$foreman" "$server"
wait || true

apt-get purge -y -q kolejka-node
ls /etc/systemd/system/multi-user.target.wants/ >/out/enabled-after-purge
ls /var/lib/kolejka >/out/var-after-purge
`

func TestDebianPackages(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireDocker(t)
	if _, err := exec.LookPath("debootstrap"); err != nil {
		testenv.Missing(t, "needs debootstrap (testdata/host-deps.sh installs it)")
	}
	img := testenv.TestImage(t)
	repo := testenv.RepoRoot(t)
	hello := helloCase(t)

	debs := packages(t, repo)
	base := debianImage(t, repo)

	out := t.TempDir()
	// Docker here refuses --privileged (its host lacks CAP_SYS_RESOURCE,
	// which it would add), so the container gets every other capability
	// and no seccomp or AppArmor profile instead; a cgroup namespace of
	// its own so that the worker's groups (and its sweep) stay inside the
	// container's group. The image store and /tmp are tmpfs: runc's
	// overlay root cannot have its layers on Docker's storage, which is
	// fuse-overlayfs on this machine. No network: everything installs from
	// the base and the packages.
	args := []string{"run", "--rm", "--network", "none", "--cgroupns", "private",
		"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
		"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
		"--tmpfs", "/var/lib/kolejka:rw,exec,dev,suid,size=1g", "--tmpfs", "/tmp:rw,exec,dev,suid,size=256m",
		"-e", "DEBIAN_FRONTEND=noninteractive",
		"-v", debs + ":/debs:ro", "-v", img + ":/image:ro", "-v", hello.Dir + ":/task:ro", "-v", out + ":/out",
		base, "bash", "-c", inside}
	start := time.Now()
	log, err := exec.Command("docker", args...).CombinedOutput()
	t.Logf("the container ran for %s", time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("docker run: %v\n%s", err, log)
	}

	status := lines(t, out, "status")
	for _, n := range names {
		if !slices.Contains(status, n+" install ok installed") {
			t.Errorf("%s not installed: dpkg says %q", n, status)
		}
	}

	// Every file of `make install` where the packages put it, with the
	// postinst's folders and their owners.
	files := map[string]string{}
	for _, l := range lines(t, out, "files") {
		f := strings.Fields(l)
		files[f[0]] = strings.Join(f[1:], " ")
	}
	want := map[string]string{
		"/etc/kolejka":                                     "755 root",
		"/var/lib/kolejka/server":                          "700 kolejka",
		"/var/lib/kolejka/foreman":                         "700 root",
		"/var/lib/kolejka/images":                          "700 root",
		"/usr/lib/systemd/system/kolejka-server.service":   "644 root",
		"/usr/lib/systemd/system/kolejka-foreman.service":  "644 root",
		"/usr/lib/systemd/system/kolejka-observer.service": "644 root",
	}
	for _, c := range testenv.Commands {
		want["/usr/bin/"+c] = "755 root"
	}
	for _, n := range names {
		want["/usr/share/doc/"+n+"/examples/kolejka.conf"] = "644 root"
	}
	for f, mode := range want {
		if got, ok := files[f]; !ok {
			t.Errorf("%s missing after the install", f)
		} else if got != mode {
			t.Errorf("%s: mode and owner %q, want %q", f, got, mode)
		}
	}

	if user := lines(t, out, "user"); len(user) != 1 || !strings.HasPrefix(user[0], "kolejka:x:") || !strings.HasSuffix(user[0], ":/var/lib/kolejka/server:/usr/sbin/nologin") {
		t.Errorf("the server's user: %q", user)
	}
	enabled := lines(t, out, "enabled")
	for _, u := range []string{"kolejka-server.service", "kolejka-foreman.service", "kolejka-observer.service"} {
		if !slices.Contains(enabled, u) {
			t.Errorf("%s not enabled: multi-user.target wants %q", u, enabled)
		}
	}
	if running := lines(t, out, "running"); len(running) > 0 {
		t.Errorf("the install started %q; the units must be enabled only", running)
	}
	// The units start the installed binaries, not /usr/local's.
	for _, l := range lines(t, out, "exec") {
		bin := strings.Fields(strings.TrimPrefix(l, "ExecStart="))[0]
		if _, ok := files[bin]; !ok || !strings.HasPrefix(bin, "/usr/bin/") {
			t.Errorf("a unit starts %s, which the packages do not install", bin)
		}
	}

	// The task, run by the installed worker in a runc container.
	if failed, err := os.ReadFile(filepath.Join(out, "execute")); err == nil {
		t.Errorf("kolejka-worker execute: %s\n%s", failed, log)
	}
	res, err := spec.LoadResult(filepath.Join(out, "result"))
	if err != nil {
		t.Fatalf("no result of testdata/tasks/hello: %v\n%s", err, log)
	}
	for _, bad := range hello.Check(filepath.Join(out, "result"), res, worker.DefaultOutputLimit) {
		t.Errorf("testdata/tasks/hello: %s", bad)
	}

	// The same task through the installed grid: server, foreman, client.
	if failed, err := os.ReadFile(filepath.Join(out, "client")); err == nil {
		server, _ := os.ReadFile(filepath.Join(out, "server.log"))
		foreman, _ := os.ReadFile(filepath.Join(out, "foreman.log"))
		t.Errorf("kolejka-client execute: %s\nserver:\n%s\nforeman:\n%s\n%s", failed, tail(server), tail(foreman), log)
	} else {
		res, err := spec.LoadResult(filepath.Join(out, "grid-result"))
		if err != nil {
			t.Fatalf("no result of testdata/tasks/hello from the grid: %v\n%s", err, log)
		}
		for _, bad := range hello.Check(filepath.Join(out, "grid-result"), res, worker.DefaultOutputLimit) {
			t.Errorf("testdata/tasks/hello through the grid: %s", bad)
		}
	}
	for _, owner := range lines(t, out, "server-files") {
		if owner != "kolejka" {
			t.Errorf("the server's data folder holds a file of %s, want kolejka's only", owner)
		}
	}

	// The purge takes the node's enablement and folder back, leaves the
	// server's.
	after := lines(t, out, "enabled-after-purge")
	if slices.Contains(after, "kolejka-foreman.service") || slices.Contains(after, "kolejka-observer.service") || !slices.Contains(after, "kolejka-server.service") {
		t.Errorf("after purging kolejka-node, multi-user.target wants %q", after)
	}
	if left := lines(t, out, "var-after-purge"); !slices.Equal(left, []string{"images", "server"}) {
		t.Errorf("after purging kolejka-node, /var/lib/kolejka holds %q; want images (not empty: an image) and server", left)
	}
}

// helloCase is testdata/tasks/hello with its expectation.
func helloCase(t *testing.T) tasktest.Case {
	t.Helper()
	cases, err := tasktest.Cases()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if c.Name == "hello" {
			return c
		}
	}
	t.Fatal("testdata/tasks/hello not found")
	return tasktest.Case{}
}

// packages is the folder holding one .deb of each package: $KOLEJKA_PACKAGES,
// else build/packages made by `make packages` now.
func packages(t *testing.T, repo string) string {
	t.Helper()
	dir := os.Getenv(packagesEnv)
	if dir == "" {
		dir = filepath.Join(repo, "build", "packages")
		start := time.Now()
		cmd := exec.Command("make", "packages")
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make packages: %v\n%s", err, out)
		}
		t.Logf("make packages took %s", time.Since(start).Round(time.Second))
	}
	for _, n := range names {
		found, err := filepath.Glob(filepath.Join(dir, n+"_*.deb"))
		if err != nil || len(found) != 1 {
			t.Fatalf("%s: want one %s_*.deb, found %q", dir, n, found)
		}
	}
	return dir
}

// debianImage is a Docker image of Debian's minimal base: made by
// debootstrap from this machine's mirror into a tarball under build/ on the
// first run, imported into Docker once per tarball.
func debianImage(t *testing.T, repo string) string {
	t.Helper()
	cache := filepath.Join(repo, "build", "debootstrap")
	tarball := filepath.Join(cache, suite+"-minbase.tar")
	fi, err := os.Stat(tarball)
	if err != nil {
		mirror := debianMirror(t)
		if err := os.MkdirAll(cache, 0o755); err != nil {
			t.Fatal(err)
		}
		// On tmpfs where there is one: dpkg syncs every file it unpacks,
		// which halves debootstrap's time on a disk.
		scratch := cache
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			scratch = "/dev/shm"
		}
		root, err := os.MkdirTemp(scratch, "kolejka-debootstrap-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(root)
		start := time.Now()
		// debootstrap keeps the .debs it fetched in --cache-dir: a root
		// made again (a new tarball) downloads nothing.
		debs := filepath.Join(cache, "debs")
		if err := os.MkdirAll(debs, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("debootstrap", "--variant=minbase", "--cache-dir="+debs, suite, root, mirror)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("debootstrap from %s: %v\n%s", mirror, err, tail(out))
		}
		tmp := tarball + ".tmp"
		if out, err := exec.Command("tar", "-C", root, "-cf", tmp, ".").CombinedOutput(); err != nil {
			t.Fatalf("tar of the Debian root: %v\n%s", err, out)
		}
		if err := os.Rename(tmp, tarball); err != nil {
			t.Fatal(err)
		}
		t.Logf("debootstrap of %s took %s", suite, time.Since(start).Round(time.Second))
		if fi, err = os.Stat(tarball); err != nil {
			t.Fatal(err)
		}
	}
	// One tag per tarball: a remade tarball is imported again.
	tag := fmt.Sprintf("%s:%s-%d", repoName, suite, fi.ModTime().Unix())
	if exec.Command("docker", "image", "inspect", tag).Run() == nil {
		return tag
	}
	if out, err := exec.Command("docker", "import", tarball, tag).CombinedOutput(); err != nil {
		t.Fatalf("docker import %s: %v\n%s", tarball, err, out)
	}
	// The images of earlier tarballs are of no more use.
	if out, err := exec.Command("docker", "images", "--format", "{{.Repository}}:{{.Tag}}", repoName).Output(); err == nil {
		for _, old := range strings.Fields(string(out)) {
			if old != tag {
				_ = exec.Command("docker", "rmi", old).Run() // one left behind costs disk only
			}
		}
	}
	return tag
}

// debianMirror is the URI this machine's apt takes suite from, in
// /etc/apt/sources.list (one-line entries) or /etc/apt/sources.list.d/
// (deb822 .sources files and one-line .list files).
func debianMirror(t *testing.T) string {
	t.Helper()
	files := []string{"/etc/apt/sources.list"}
	more, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	files = append(files, more...)
	oneLine := regexp.MustCompile(`^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if strings.HasSuffix(f, ".sources") {
			// deb822: stanzas separated by blank lines.
			for _, stanza := range strings.Split(string(data), "\n\n") {
				fields := map[string]string{}
				for _, l := range strings.Split(stanza, "\n") {
					if k, v, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "#") {
						fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
					}
				}
				if slices.Contains(strings.Fields(fields["types"]), "deb") && slices.Contains(strings.Fields(fields["suites"]), suite) {
					if uris := strings.Fields(fields["uris"]); len(uris) > 0 {
						return uris[0]
					}
				}
			}
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		for sc.Scan() {
			if m := oneLine.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil && m[2] == suite {
				return m[1]
			}
		}
	}
	testenv.Missing(t, "no apt source for Debian %s in /etc/apt/sources.list(.d) to debootstrap from", suite)
	return ""
}

// lines are the lines of out/name, which the container wrote.
func lines(t *testing.T, out, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(out, name))
	if err != nil {
		t.Fatalf("the container wrote no %s: %v", name, err)
	}
	var ls []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			ls = append(ls, l)
		}
	}
	return ls
}

// tail is the end of a long output.
func tail(out []byte) []byte {
	if len(out) > 4000 {
		return out[len(out)-4000:]
	}
	return out
}
