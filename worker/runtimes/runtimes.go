// Package runtimes makes a worker runtime from its name, so that every
// command offering --runtime (kolejka-worker, kolejka-foreman) wires them
// the same way. Importing it links the runc runtime, whose re-exec hook
// must be in any binary that starts runc containers. The docker runtime
// needs a Docker engine, reached as the docker command reaches it
// (DOCKER_HOST, by default the local socket).
package runtimes

import (
	"fmt"
	"log/slog"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/docker"
	"github.com/kolejka-go/kolejka/worker/host"
	"github.com/kolejka-go/kolejka/worker/image"
	"github.com/kolejka-go/kolejka/worker/runc"
)

// Default is the runtime used when none is named.
const Default = "runc"

// DefaultImageRoot is the runc runtime's image store.
const DefaultImageRoot = "/var/lib/kolejka/images"

// Names lists the runtimes this build offers.
func Names() []string { return []string{"runc", "host", "docker"} }

// Options configure the runtimes.
type Options struct {
	ImageRoot string // the runc image store; default DefaultImageRoot
	RuncState string // libcontainer's state root; default runc.DefaultStateRoot
	Pull      bool   // docker, and runc with Registry: pull the task's image before every run
	// Registry, if set, makes the runc runtime pull images it lacks.
	Registry *image.RegistryConfig
}

// Open returns the runtime called name.
func Open(name string, o Options) (worker.Runtime, error) {
	switch name {
	case "", "runc":
		store, err := OpenImages(o)
		if err != nil {
			return nil, err
		}
		if !runc.SeccompBuilt {
			slog.Warn("this build's runc runtime has no seccomp filter (build with -tags seccomp, as make does): " +
				"tasks may create user namespaces and reach kernel surface they never need")
		}
		rt, err := runc.New(o.RuncState, store)
		if err != nil {
			return nil, err
		}
		if o.Registry != nil {
			reg, err := image.NewRegistry(*o.Registry)
			if err != nil {
				return nil, err
			}
			rt.PullFrom(reg, o.Pull)
		}
		return rt, nil
	case "host":
		cg, err := cgroup.Host()
		if err != nil {
			return nil, err
		}
		return host.New(cg), nil
	case "docker":
		rt, err := docker.New(docker.Options{Pull: o.Pull})
		if err != nil {
			return nil, err
		}
		return rt, nil
	}
	return nil, fmt.Errorf("unknown runtime %q (choose one of %v)", name, Names())
}

// OpenImages opens the runc runtime's image store.
func OpenImages(o Options) (*image.Store, error) {
	root := o.ImageRoot
	if root == "" {
		root = DefaultImageRoot
	}
	return image.Open(root)
}
