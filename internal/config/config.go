// Package config reads kolejka.conf, the INI file Kolejka's client,
// foreman and worker share, the way Kolejka reads it: the first file found
// of ~/.config/kolejka/, /etc/kolejka/ and /etc/xdg/kolejka/ (or the one
// named by --config-file); a key missing from a section falls back to the
// same key in [default]; [default] config = NAME selects the client section.
// The commands' settings (cmd/internal/settings) read their keys here.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/ini.v1"
)

// FileName is the configuration file's name.
const FileName = "kolejka.conf"

// SearchPath lists where kolejka.conf is looked for, in order.
func SearchPath() []string {
	var dirs []string
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		dirs = append(dirs, filepath.Join(x, "kolejka"))
	} else if h, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(h, ".config", "kolejka"))
	}
	dirs = append(dirs, "/etc/kolejka")
	if x := os.Getenv("XDG_CONFIG_DIRS"); x != "" {
		for _, d := range strings.Split(x, ":") {
			if d != "" {
				dirs = append(dirs, filepath.Join(d, "kolejka"))
			}
		}
	} else {
		dirs = append(dirs, "/etc/xdg/kolejka")
	}
	paths := make([]string, len(dirs))
	for i, d := range dirs {
		paths[i] = filepath.Join(d, FileName)
	}
	return paths
}

// File is a loaded kolejka.conf. The zero File (no file found) answers
// every lookup with "absent".
type File struct {
	Path string // "" when no file was found
	ini  *ini.File
}

// Load reads path, or when path is "" the first file of SearchPath. No
// file found is not an error; a file that cannot be read or parsed is.
func Load(path string) (*File, error) {
	if path == "" {
		for _, p := range SearchPath() {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				path = p
				break
			}
		}
		if path == "" {
			return &File{}, nil
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("unable to read configuration: %w", err)
	}
	f, err := ini.LoadSources(ini.LoadOptions{
		// Python's configparser: "key: value" and "key = value", # and ;
		// comments, keys case-insensitive, section names not.
		KeyValueDelimiters: "=:",
		InsensitiveKeys:    true,
	}, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{Path: path, ini: f}, nil
}

// Get returns key of section, falling back to [default].
func (f *File) Get(section, key string) (string, bool) {
	if f.ini == nil {
		return "", false
	}
	for _, s := range []string{section, "default"} {
		if sec, err := f.ini.GetSection(s); err == nil && sec.HasKey(key) {
			return strings.TrimSpace(sec.Key(key).String()), true
		}
	}
	return "", false
}

// ClientSection is the client section to use: name if given, else
// [default] config, else "client".
func (f *File) ClientSection(name string) string {
	if name != "" {
		return name
	}
	if v, ok := f.Get("default", "config"); ok && v != "" {
		return v
	}
	return "client"
}

// Error names the file, section and key of a bad value.
func (f *File) Error(section, key string, err error) error {
	file := f.Path
	if file == "" {
		file = FileName
	}
	return fmt.Errorf("%s: [%s] %s: %w", file, section, key, err)
}

// SplitList reads a comma list (tags, for one), dropping blanks; nil for
// none.
func SplitList(v string) []string {
	var out []string
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
