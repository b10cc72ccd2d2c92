package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/internal/foreman"
	"github.com/kolejka-go/kolejka/spec"
)

// resolve runs the command line through the app's flags and returns the
// settings it would run with (nothing is started), and the exit code.
func resolve(t *testing.T, args ...string) (foreman.Settings, int) {
	t.Helper()
	a := app()
	var got foreman.Settings
	a.Action = func(c *cli.Context) error {
		s, err := settings(c)
		got = s
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
