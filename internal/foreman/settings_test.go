package foreman

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/config"
)

func confFile(t *testing.T, text string) *config.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kolejka.conf")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestReadSettings(t *testing.T) {
	f := confFile(t, `
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
output_limit = 1M
cache_size = 2G
memory_reserve = 1G
defaults = cpus=1,memory=256M
`)
	s, err := ReadSettings(f, "")
	if err != nil {
		t.Fatal(err)
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
	if want := lim(t, "cpus", "2", "memory", "4G", "time", "30s", "image", "10G").String(); s.Limits.String() != want {
		t.Errorf("limits %s, want %s", s.Limits, want)
	}
	if s.Runtime != "docker" || s.Images != "/srv/images" || s.OutputLimit != 1<<20 || s.CacheSize != 2<<30 || s.MemoryReserve != 1<<30 {
		t.Errorf("our keys: %+v", s)
	}
	if s.Defaults.String() != lim(t, "cpus", "1", "memory", "256M").String() {
		t.Errorf("defaults %s", s.Defaults)
	}

	// Without a file: Kolejka's defaults and ours.
	s, err = ReadSettings(&config.File{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir != DefaultDir || s.Interval != DefaultInterval || s.Concurrency != DefaultConcurrency || !s.AutoTags ||
		s.MemoryReserve != DefaultMemoryReserve || s.Defaults.String() != "cpus=1" || !s.Limits.IsZero() {
		t.Errorf("defaults: %+v", s)
	}

	// A token instead of a password; a named client section.
	s, err = ReadSettings(confFile(t, "[other]\nserver = x\ntoken = kt_1\n"), "other")
	if err != nil || s.Server != "x" || s.Token != "kt_1" {
		t.Errorf("named section: %+v %v", s, err)
	}
}

// Every bad value is reported at once, naming the file, section and key.
func TestReadSettingsErrors(t *testing.T) {
	f := confFile(t, `
[foreman]
interval = soon
concurency = 0
pull = maybe
memory = lots
cache_size = 1GiB
defaults = cpus
`)
	_, err := ReadSettings(f, "")
	if err == nil {
		t.Fatal("bad values accepted")
	}
	for _, key := range []string{"interval", "concurency", "pull", "memory", "cache_size", "defaults"} {
		if !strings.Contains(err.Error(), "[foreman] "+key+":") {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
	if !strings.Contains(err.Error(), f.Path) {
		t.Errorf("error does not name the file: %v", err)
	}
}
