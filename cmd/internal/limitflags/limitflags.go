// Package limitflags gives every command the same limit options
// (--cpus, --memory, …, --cgroup-descendants), parsed with the task
// format's own rules.
package limitflags

import (
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/spec"
)

// Flags returns one string flag per limit key.
func Flags() []cli.Flag {
	var fs []cli.Flag
	for _, key := range spec.LimitKeys() {
		if key == "cpus_offset" || key == "gpus_offset" {
			continue // set by the node, not the user
		}
		fs = append(fs, &cli.StringFlag{
			Name:     strings.ReplaceAll(key, "_", "-"),
			Usage:    "cap " + key,
			Category: "limits",
		})
	}
	return fs
}

// Parse collects the limit flags that were set.
func Parse(c *cli.Context) (spec.Limits, error) {
	var l spec.Limits
	for _, key := range spec.LimitKeys() {
		name := strings.ReplaceAll(key, "_", "-")
		if !c.IsSet(name) {
			continue
		}
		if err := spec.ParseLimit(&l, key, c.String(name)); err != nil {
			return l, cliexit.UsageError("--%s: %v", name, err)
		}
	}
	return l, nil
}
