// Command kolejka-worker runs one Kolejka task on this machine, with no
// server: `kolejka-worker execute TASK_DIR RESULT_DIR`. It also manages the
// local images of the runc runtime (`image import|pull|ls|rm`); with the docker
// runtime, `image import` loads the image into the Docker engine as well.
//
// Exit codes: 0 the task ran and its result was written (whatever its
// verdict); 2 bad command line or bad task, nothing changed; 3 the system
// could not run the task, an SE result was written; 1 anything else.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/cmd/internal/settings"
	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/image"
	"github.com/kolejka-go/kolejka/worker/runc"
	"github.com/kolejka-go/kolejka/worker/runtimes"
)

func main() {
	// First, before any parsing: in the process the embedded runc starts
	// a container with (this binary as `<self> init`), become the
	// container's init; elsewhere this returns at once.
	runc.MaybeInit()
	// In a delegated cgroup (systemd's Delegate=yes), first re-executed
	// where /sys/fs/cgroup is that group alone: the embedded runc must not
	// touch the system manager's groups above it.
	confined := cgroup.Confine()
	cliexit.Main(app(), confined)
}

func app() *cli.App {
	return &cli.App{
		Name:  "kolejka-worker",
		Usage: "run Kolejka tasks on this machine",
		Flags: append(cliexit.LogFlags(), settings.FileFlag()),
		Before: func(c *cli.Context) error {
			cliexit.SetLogger(c, slog.LevelWarn)
			return nil
		},
		Commands: []*cli.Command{executeCommand(), imageCommand()},
	}
}

// section is kolejka.conf's section of the worker.
const section = "worker"

// options are the [worker] section with the command line on top.
type options struct {
	runtime  string
	temp     string
	images   string
	initPath string
	output   int64
	registry image.RegistryConfig
	// caps are [worker]'s caps of every task; execute's limit options are
	// the task's own (worker.Options.Caps), not these.
	caps spec.Limits
}

// table is the worker's settings; each command reads the flags it
// declares.
func (o *options) table() []settings.Setting {
	return append([]settings.Setting{
		{Flag: runtimeFlag(runtimeUsage), Section: section, Key: "runtime", Value: settings.String(&o.runtime)},
		{Flag: &cli.StringFlag{Name: "temp", Usage: "folder for scratch space (default: $TMPDIR or /tmp)"},
			Section: section, Key: "temp", Value: settings.String(&o.temp)},
		{Section: section, Key: "images", Value: settings.String(&o.images)},
		{Section: section, Key: "init_path", Value: settings.String(&o.initPath)},
		{Section: section, Key: "registry_auth", Value: settings.String(&o.registry.AuthFile)},
		{Section: section, Key: "registry_ca", Value: settings.String(&o.registry.CAFile)},
		{Section: section, Key: "registry_insecure", Value: settings.List(&o.registry.Insecure)},
		{Flag: &cli.StringFlag{Name: "output-limit", Usage: "cap of each stdout/stderr file (default 64M); past it the task is killed, verdict OLE"},
			Section: section, Key: "output_limit", Value: settings.Size(&o.output)},
	}, settings.FileLimits(&o.caps, section)...)
}

// load resolves the options, and more settings of the command (its own
// options) with them.
func load(c *cli.Context, more ...settings.Setting) (*options, error) {
	f, err := settings.Load(c, "")
	if err != nil {
		return nil, err
	}
	o := new(options)
	return o, settings.Resolve(c, f, append(o.table(), more...))
}

func runtimeFlag(usage string) cli.Flag { return &cli.StringFlag{Name: "runtime", Usage: usage} }

func executeCommand() *cli.Command {
	flags := append(settings.Flags(new(options).table()),
		&cli.BoolFlag{Name: "consume", Usage: "take the task's files without copying (hard links where possible) and remove the task folder once the result is written; never on a failure"},
		&cli.BoolFlag{Name: "pull", Usage: "pull the task's image from its registry before the run (otherwise only when the local store or the engine lacks it); ignored by host"},
	)
	return &cli.Command{
		Name:      "execute",
		Usage:     "run a task folder and write its result folder",
		UsageText: "kolejka-worker execute [options] TASK_DIR RESULT_DIR",
		Flags:     append(flags, settings.LimitFlags()...),
		Action: func(c *cli.Context) error {
			if err := cliexit.NeedArgs(c, 2, "TASK_DIR and RESULT_DIR"); err != nil {
				return err
			}
			var caps spec.Limits // the task's own, from the limit options
			s, err := load(c, settings.Limits(&caps, "")...)
			if err != nil {
				return err
			}
			rt, err := runtimes.Open(s.runtime, runtimes.Options{ImageRoot: s.images, Pull: c.Bool("pull"), Registry: &s.registry})
			if err != nil {
				return cliexit.WithCode(cliexit.Usage, err)
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			w, err := worker.New(ctx, worker.Config{
				Temp:        s.temp,
				Caps:        s.caps,
				OutputLimit: s.output,
				InitPath:    s.initPath,
				Logger:      slog.Default(),
			}, rt)
			if err != nil {
				return err
			}
			res, err := w.Execute(ctx, c.Args().Get(0), c.Args().Get(1), worker.Options{Consume: c.Bool("consume"), Caps: caps})
			switch {
			case res == nil:
				return cliexit.WithCode(cliexit.Usage, err)
			case err != nil:
				return cliexit.WithCode(cliexit.Degraded, fmt.Errorf("task %s: %s: %w", res.ID, res.Status, err))
			}
			slog.Info("result written", "task", res.ID, "status", res.Status)
			return nil
		},
	}
}

// runtimeUsage documents --runtime (and [worker] runtime).
const runtimeUsage = "runc (default: containers from local images, no daemon), host (plain processes, no image), " +
	"docker (containers of the Docker engine at $DOCKER_HOST or the local socket; its images, pulled when missing)"

// engineImages is a runtime that keeps images of its own (docker: the
// engine's), into which `image import` loads what it imported.
type engineImages interface {
	ImportImage(ctx context.Context, img *image.Image, path string) error
}

func imageCommand() *cli.Command {
	open := func(c *cli.Context) (*image.Store, error) {
		s, err := load(c)
		if err != nil {
			return nil, err
		}
		return runtimes.OpenImages(runtimes.Options{ImageRoot: s.images})
	}
	return &cli.Command{
		Name:  "image",
		Usage: "manage the runc runtime's local images",
		Subcommands: []*cli.Command{
			{
				Name: "import",
				Usage: "import a rootfs tar, a `docker save` tar, an OCI layout (folder or tar) or a Singularity/Apptainer " +
					"SIF file (its squashfs root; needs unsquashfs from squashfs-tools) as NAME; " +
					"with the docker runtime, also load it into the Docker engine",
				UsageText: "kolejka-worker image import [--runtime NAME] NAME FILE",
				Flags:     []cli.Flag{runtimeFlag("the runtime the image is for (default: [worker] runtime, else runc): " + runtimeUsage)},
				Action: func(c *cli.Context) error {
					if err := cliexit.NeedArgs(c, 2, "NAME and FILE"); err != nil {
						return err
					}
					s, err := load(c)
					if err != nil {
						return err
					}
					var engine engineImages
					switch s.runtime {
					case "", "runc", "host":
					case "docker":
						// Before importing anything: an engine that does not
						// answer must leave the store unchanged too.
						rt, err := runtimes.Open(s.runtime, runtimes.Options{ImageRoot: s.images})
						if err != nil {
							return cliexit.WithCode(cliexit.Usage, err)
						}
						engine, _ = rt.(engineImages)
					default:
						return cliexit.UsageError("unknown runtime %q (choose one of %v)", s.runtime, runtimes.Names())
					}
					st, err := runtimes.OpenImages(runtimes.Options{ImageRoot: s.images})
					if err != nil {
						return err
					}
					img, err := st.Import(c.Context, c.Args().Get(0), c.Args().Get(1))
					if err != nil {
						return cliexit.UsageIf(err, image.ErrBadArchive)
					}
					if engine != nil {
						if err := engine.ImportImage(c.Context, img, c.Args().Get(1)); err != nil {
							return err
						}
					}
					fmt.Printf("%s %s\n", img.Name, img.ID)
					return nil
				},
			},
			{
				Name: "pull",
				Usage: "pull NAME (registry/name:tag or name@sha256:…) from its registry into the runc runtime's store, " +
					"even if the store has it; [worker] registry_auth, registry_ca and registry_insecure say how",
				UsageText: "kolejka-worker image pull NAME",
				Action: func(c *cli.Context) error {
					if err := cliexit.NeedArgs(c, 1, "NAME"); err != nil {
						return err
					}
					s, err := load(c)
					if err != nil {
						return err
					}
					reg, err := image.NewRegistry(s.registry)
					if err != nil {
						return cliexit.WithCode(cliexit.Usage, err)
					}
					st, err := runtimes.OpenImages(runtimes.Options{ImageRoot: s.images})
					if err != nil {
						return err
					}
					img, err := st.Pull(c.Context, reg, c.Args().Get(0))
					if err != nil {
						return cliexit.UsageIf(err, image.ErrBadArchive, image.ErrNotFound, image.ErrInvalidName)
					}
					fmt.Printf("%s %s\n", img.Name, img.ID)
					return nil
				},
			},
			{
				Name:  "ls",
				Usage: "list images",
				Action: func(c *cli.Context) error {
					st, err := open(c)
					if err != nil {
						return err
					}
					imgs, err := st.List()
					if err != nil {
						return err
					}
					tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tID\tSIZE\tIMPORTED")
					for _, img := range imgs {
						id := img.ID
						if len(id) > 19 {
							id = id[:19]
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", img.Name, id, strconv.FormatInt(img.Size, 10), img.Created.Format("2006-01-02 15:04"))
					}
					return tw.Flush()
				},
			},
			{
				Name:      "rm",
				Usage:     "remove an image",
				UsageText: "kolejka-worker image rm NAME",
				Action: func(c *cli.Context) error {
					if err := cliexit.NeedArgs(c, 1, "NAME"); err != nil {
						return err
					}
					st, err := open(c)
					if err != nil {
						return err
					}
					if err := st.Remove(c.Args().Get(0)); err != nil {
						if errors.Is(err, image.ErrInUse) {
							// The name is gone; the space comes back when the task ends.
							slog.Warn(err.Error())
							return nil
						}
						return cliexit.UsageIf(err, image.ErrNotFound)
					}
					return nil
				},
			},
		},
	}
}
