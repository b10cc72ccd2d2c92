package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/internal/foreman"
	"github.com/kolejka-go/kolejka/spec"
)

// resolve runs the command line through the app's flags and returns the
// settings it would run with (nothing is started), and the exit code.
func resolve(t *testing.T, args ...string) (options, int) {
	t.Helper()
	a := app()
	var got options
	a.Action = func(c *cli.Context) error {
		o, err := load(c)
		got = o
		return err
	}
	code := cliexit.Run(a, append([]string{"kolejka-foreman"}, args...))
	return got, code
}

func writeConf(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kolejka.conf")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const conf = `[client]
server = http://127.0.0.1:1
username = node
password = pw

[foreman]
temp = /srv/node
tags = a,b
concurency = 3
cpus = 4
memory = 8G
time = 60s
runtime = runc
output_limit = 2M
`

// Without options the file is read as Kolejka reads it.
func TestSettingsFromFile(t *testing.T) {
	s, code := resolve(t, "--config-file", writeConf(t, conf))
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if s.Server != "http://127.0.0.1:1" || s.Username != "node" || s.Dir != "/srv/node" || s.Concurrency != 3 ||
		!slices.Equal(s.Tags, []string{"a", "b"}) || s.Runtime != "runc" || s.OutputLimit != 2<<20 || !s.AutoTags {
		t.Errorf("settings %+v", s)
	}
	if s.Limits.String() != "cpus=4 memory=8G time=60.0s" {
		t.Errorf("limits %s", s.Limits)
	}
}

// Options win over the file, limits included, larger or smaller.
func TestSettingsOptionsWin(t *testing.T) {
	s, code := resolve(t, "--config-file", writeConf(t, conf),
		"--temp", "/tmp/x", "--tags", "c", "--concurency", "1", "--cpus", "8", "--memory", "1G", "--time", "2M",
		"--runtime", "host", "--output-limit", "64k", "--auto-tags=false", "--token", "kt_x", "--interval", "0.5",
		"--defaults", "cpus=1,memory=128M", "--cache-size", "-1", "--memory-reserve", "0")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if s.Dir != "/tmp/x" || !slices.Equal(s.Tags, []string{"c"}) || s.Concurrency != 1 || s.Runtime != "host" ||
		s.OutputLimit != 64<<10 || s.AutoTags || s.Token != "kt_x" || s.Interval != 500*time.Millisecond ||
		s.CacheSize != -1 || s.MemoryReserve != 0 {
		t.Errorf("settings %+v", s)
	}
	if s.Limits.String() != "cpus=8 memory=1G time=120.0s" {
		t.Errorf("limits %s: options must replace the file's", s.Limits)
	}
	if s, _ := resolve(t, "--config-file", writeConf(t, conf), "--concurrency", "2"); s.Concurrency != 2 {
		t.Errorf("--concurrency (the alias): concurency %d, want 2", s.Concurrency)
	}
	var want spec.Limits
	spec.ParseLimit(&want, "cpus", "1")
	spec.ParseLimit(&want, "memory", "128M")
	if s.Defaults.String() != want.String() {
		t.Errorf("defaults %s", s.Defaults)
	}
}

// Bad options and bad files: exit 2, with nothing started.
func TestSettingsRefused(t *testing.T) {
	good := writeConf(t, conf)
	for name, args := range map[string][]string{
		"concurency 0":   {"--config-file", good, "--concurency", "0"},
		"bad memory":     {"--config-file", good, "--memory", "lots"},
		"bad defaults":   {"--config-file", good, "--defaults", "cpus"},
		"bad interval":   {"--config-file", good, "--interval", "-1"},
		"bad size":       {"--config-file", good, "--cache-size", "1GiB"},
		"bad file value": {"--config-file", writeConf(t, "[foreman]\nconcurency = many\n")},
		"root cgroup":    {"--config-file", writeConf(t, "[foreman]\ncgroup_root = /\n")},
		"relative group": {"--config-file", writeConf(t, "[foreman]\ncgroup_root = kolejka\n")},
		"missing file":   {"--config-file", filepath.Join(t.TempDir(), "none.conf")},
	} {
		if _, code := resolve(t, args...); code != cliexit.Usage {
			t.Errorf("%s: exit %d, want %d", name, code, cliexit.Usage)
		}
	}
	// The real command refuses arguments before it reads anything.
	if code := cliexit.Run(app(), []string{"kolejka-foreman", "--config-file", good, "extra"}); code != cliexit.Usage {
		t.Errorf("arguments: exit %d, want %d", code, cliexit.Usage)
	}
}

// limits are the limits of key, value pairs.
func limits(t *testing.T, pairs ...string) spec.Limits {
	t.Helper()
	var l spec.Limits
	for i := 0; i < len(pairs); i += 2 {
		if err := spec.ParseLimit(&l, pairs[i], pairs[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// Every key of the client section and [foreman], as Kolejka reads them:
// [default] config names the client section; keys fall back to [default].
func TestSettingsEveryKey(t *testing.T) {
	s, code := resolve(t, "--config-file", writeConf(t, `
[default]
config = grid
memory = 4G
time = 30s

[grid]
server = http://127.0.0.1:8000
username = node1
password = secret

[foreman]
temp = /srv/kolejka
interval = 2.5
concurency = 3
pull = yes
auto_tags = no
tags = gpu-less, fast ,
cpus = 2
image = 10G
runtime = docker
images = /srv/images
init_path = /opt/kolejka-init
state = /srv/state
cgroup_root = /kolejka-node1
output_limit = 1M
cache = /srv/cache
cache_size = 2G
memory_reserve = 1G
defaults = cpus=1,memory=256M
registry_auth = /srv/auth.json
registry_ca = /srv/ca.pem
registry_insecure = 127.0.0.1:5000, localhost:5001
`))
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if s.Server != "http://127.0.0.1:8000" || s.Username != "node1" || s.Password != "secret" || s.Token != "" {
		t.Errorf("client section: %+v", s)
	}
	if s.Dir != "/srv/kolejka" || s.Interval != 2500*time.Millisecond || s.Concurrency != 3 || !s.Pull || s.AutoTags {
		t.Errorf("node keys: dir %q interval %v concurency %d pull %v auto_tags %v", s.Dir, s.Interval, s.Concurrency, s.Pull, s.AutoTags)
	}
	if !slices.Equal(s.Tags, []string{"gpu-less", "fast"}) {
		t.Errorf("tags %q", s.Tags)
	}
	// memory and time fall back to [default], as in Kolejka.
	if want := limits(t, "cpus", "2", "memory", "4G", "time", "30s", "image", "10G").String(); s.Limits.String() != want {
		t.Errorf("limits %s, want %s", s.Limits, want)
	}
	if s.Runtime != "docker" || s.Images != "/srv/images" || s.InitPath != "/opt/kolejka-init" || s.OutputLimit != 1<<20 ||
		s.Cache != "/srv/cache" || s.CacheSize != 2<<30 || s.MemoryReserve != 1<<30 || s.State != "/srv/state" || s.CgroupRoot != "/kolejka-node1" {
		t.Errorf("our keys: %+v", s)
	}
	if s.Registry.AuthFile != "/srv/auth.json" || s.Registry.CAFile != "/srv/ca.pem" ||
		!slices.Equal(s.Registry.Insecure, []string{"127.0.0.1:5000", "localhost:5001"}) {
		t.Errorf("registry keys: %+v", s.Registry)
	}
	if s.Defaults.String() != limits(t, "cpus", "1", "memory", "256M").String() {
		t.Errorf("defaults %s", s.Defaults)
	}

	// An empty file: Kolejka's defaults and ours.
	s, code = resolve(t, "--config-file", writeConf(t, ""))
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if s.Dir != defaultDir || s.Interval != foreman.DefaultInterval || s.Concurrency != foreman.DefaultConcurrency || !s.AutoTags ||
		s.MemoryReserve != foreman.DefaultMemoryReserve || s.Defaults.String() != "cpus=1" || !s.Limits.IsZero() ||
		s.State != "" || s.CgroupRoot != "" {
		t.Errorf("defaults: %+v", s)
	}
	if s.Warm != foreman.DefaultWarm {
		t.Errorf("warm %d by default, want %d", s.Warm, foreman.DefaultWarm)
	}
	// Warm containers off, more of them, and a count that cannot be.
	for _, n := range []int{0, 2} {
		if s, code := resolve(t, "--config-file", writeConf(t, fmt.Sprintf("[foreman]\nwarm = %d\n", n))); code != 0 || s.Warm != n {
			t.Errorf("warm = %d: exit %d, warm %d", n, code, s.Warm)
		}
	}
	if _, code := resolve(t, "--config-file", writeConf(t, "[foreman]\nwarm = -1\n")); code == 0 {
		t.Error("warm = -1 was accepted")
	}

	// A token instead of a password; the client section --config names.
	s, code = resolve(t, "--config-file", writeConf(t, "[other]\nserver = x\ntoken = kt_1\n"), "--config", "other")
	if code != 0 || s.Server != "x" || s.Token != "kt_1" {
		t.Errorf("named section: %+v, exit %d", s, code)
	}
}

// Every bad value of the file is reported at once, naming the file,
// section and key.
func TestSettingsErrorsNameTheKeys(t *testing.T) {
	path := writeConf(t, `
[foreman]
interval = soon
concurency = 0
pull = maybe
memory = lots
cache_size = 1GiB
defaults = cpus
cgroup_root = kolejka/../x
`)
	a := app()
	var err error
	a.Action = func(c *cli.Context) error {
		_, err = load(c)
		return err
	}
	if code := cliexit.Run(a, []string{"kolejka-foreman", "--config-file", path}); code != cliexit.Usage {
		t.Fatalf("exit %d, want %d", code, cliexit.Usage)
	}
	for _, key := range []string{"interval", "concurency", "pull", "memory", "cache_size", "defaults", "cgroup_root"} {
		if !strings.Contains(err.Error(), path+": [foreman] "+key+":") {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}

// pass_env: the file's comma list, replaced by --pass-env.
func TestSettingsPassEnv(t *testing.T) {
	file := writeConf(t, conf+"pass_env = HTTP_PROXY, LANG\n")
	if s, code := resolve(t, "--config-file", file); code != 0 || !slices.Equal(s.PassEnv, []string{"HTTP_PROXY", "LANG"}) {
		t.Errorf("from the file: %q (exit %d)", s.PassEnv, code)
	}
	if s, code := resolve(t, "--config-file", file, "--pass-env", "TZ"); code != 0 || !slices.Equal(s.PassEnv, []string{"TZ"}) {
		t.Errorf("--pass-env: %q (exit %d)", s.PassEnv, code)
	}
	if s, _ := resolve(t, "--config-file", writeConf(t, conf)); len(s.PassEnv) != 0 {
		t.Errorf("none by default: %q", s.PassEnv)
	}
}
