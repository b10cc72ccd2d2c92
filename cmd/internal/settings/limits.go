package settings

// This file owns the limit settings: one per limit key of the task format,
// each with its option (--cpus, --memory, …) and its key in a section of
// kolejka.conf.

import (
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/spec"
)

// Limits are the settings of every limit key into dst, key by key: its
// option, named after the key (--cpus, --memory, …, --cgroup-descendants;
// none for cpus_offset and gpus_offset, which the node sets), and, when
// section is not "", its key in that section of kolejka.conf, where
// Kolejka's older image_size counts for image (image wins where both are
// given). A limit given replaces dst's value of that key, larger or
// smaller; the other keys stay.
func Limits(dst *spec.Limits, section string) []Setting {
	var table []Setting
	if section != "" {
		table = append(table, Setting{Section: section, Key: "image_size", Value: limit(dst, "image")})
	}
	for _, key := range spec.LimitKeys() {
		s := Setting{Value: limit(dst, key)}
		if key != "cpus_offset" && key != "gpus_offset" {
			s.Flag = &cli.StringFlag{Name: strings.ReplaceAll(key, "_", "-"), Usage: "cap " + key, Category: "limits"}
		}
		if section != "" {
			s.Section, s.Key = section, key
		}
		if s.Flag != nil || s.Key != "" {
			table = append(table, s)
		}
	}
	return table
}

// FileLimits are the limit settings of a section of kolejka.conf alone,
// without options (for caps the options do not set: theirs are another
// setting's).
func FileLimits(dst *spec.Limits, section string) []Setting {
	table := Limits(dst, section)
	for i := range table {
		table[i].Flag = nil
	}
	return table
}

// LimitFlags are the options of the limit settings (--cpus, --memory, …),
// for a command to declare.
func LimitFlags() []cli.Flag { return Flags(Limits(new(spec.Limits), "")) }

// LimitOptions are the limits the limit options of c's command line give
// (the caps of one task or run), the other keys absent.
func LimitOptions(c *cli.Context) (spec.Limits, error) {
	var l spec.Limits
	err := Resolve(c, nil, Limits(&l, ""))
	return l, err
}
