package packages_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

// example is dist/kolejka.conf, the commented example `make install` and
// the packages install, with every commented key set ("#key = value" made
// "key = value"), its sections' keys by section, and the paths it names
// moved into dir (so that the programs reading it touch nothing of the
// machine's).
func example(t *testing.T, dir string) (string, map[string][]string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "dist", "kolejka.conf"))
	if err != nil {
		t.Fatal(err)
	}
	setting := regexp.MustCompile(`^#([a-z_]+) = (.*)$`)
	section := ""
	keys := map[string][]string{}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "[") {
			section = strings.Trim(l, "[]")
		}
		if m := setting.FindStringSubmatch(l); m != nil {
			keys[section] = append(keys[section], m[1])
			l = m[1] + " = " + strings.ReplaceAll(m[2], "/var/lib/kolejka/", dir+"/")
		}
		out = append(out, l)
	}
	path := filepath.Join(dir, "kolejka.conf")
	if err := os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, keys
}

// The example holds every key of [server] that `kolejka-server config`
// prints and every [foreman] key that kolejka-foreman's options name, and
// the programs accept its values (a bad size, time or list stops them).
func TestExampleConfig(t *testing.T) {
	bin := testenv.Binaries(t)
	dir := t.TempDir()
	conf, keys := example(t, dir)
	for _, s := range []string{"default", "client", "server", "foreman", "worker"} {
		if len(keys[s]) == 0 {
			t.Errorf("dist/kolejka.conf: no key in [%s]", s)
		}
	}

	out, err := exec.Command(filepath.Join(bin, "kolejka-server"), "--config-file", conf, "config").CombinedOutput()
	if err != nil {
		t.Fatalf("kolejka-server config with the example: %v\n%s", err, out)
	}
	printed := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n")[1:] {
		k, v, _ := strings.Cut(l, " = ")
		printed[k] = v
		if k != "limits" && !slices.Contains(keys["server"], k) {
			t.Errorf("dist/kolejka.conf: [server] lacks %s, which the server reads", k)
		}
	}
	// Values from the file, not the defaults: the file was read whole.
	if printed["callback_hosts"] != "judge.example.org" || printed["data"] != dir+"/server" || printed["queue_timeout"] != spec.FormatTime(24*60*60e9) {
		t.Errorf("kolejka-server config did not take the example's values:\n%s", out)
	}

	help, err := exec.Command(filepath.Join(bin, "kolejka-foreman"), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("kolejka-foreman --help: %v\n%s", err, help)
	}
	named := regexp.MustCompile(`\[foreman\] ([a-z_]+)`).FindAllStringSubmatch(string(help), -1)
	if len(named) == 0 {
		t.Fatalf("kolejka-foreman --help names no [foreman] key:\n%s", help)
	}
	for _, m := range named {
		if !slices.Contains(keys["foreman"], m[1]) {
			t.Errorf("dist/kolejka.conf: [foreman] lacks %s, which the foreman reads", m[1])
		}
	}

	// The worker resolves all of [worker] before it lists its images.
	if out, err := exec.Command(filepath.Join(bin, "kolejka-worker"), "--config-file", conf, "image", "ls").CombinedOutput(); err != nil {
		t.Errorf("kolejka-worker image ls with the example: %v\n%s", err, out)
	}
}
