package main

// This file is `kolejka-server dev`: a whole grid on one machine, for
// trying Kolejka out and for developing against it. The server runs in
// this process on a temporary data folder; the node is the kolejka-foreman
// beside this binary, a child process with the runc runtime; the test
// image, when built, is imported with the kolejka-worker beside it.
// Everything the grid makes lives in that folder and in a cgroup of its
// own, so that stopping it can remove all of it and check that nothing is
// left.
//
// It is a command of its own rather than `serve --dev`: serve serves a
// data folder that outlives it, read from kolejka.conf and the
// environment, while dev makes its folder, its users and its node, reads
// no settings and removes everything when it ends; a stray variable or
// key must not turn a production server into one that deletes its data.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/internal/server"
)

// The dev grid's accounts and image.
const (
	devUser   = "dev"
	devNode   = "node"
	devImage  = "kolejka-test:latest"
	devListen = "127.0.0.1:0"
)

// How long the dev grid waits for its node to start, and for it to stop
// after it was told to stop now.
const (
	devNodeStart = 2 * time.Minute
	devNodeStop  = time.Minute
)

func devCommand() *cli.Command {
	return &cli.Command{
		Name: "dev",
		Usage: "run a whole grid on this machine until SIGINT or SIGTERM: a server on a temporary data folder, " +
			"a node (kolejka-foreman, runc runtime, every core) and a user with a token; then remove it all (as root)",
		UsageText: "kolejka-server dev [--listen ADDR] [--testimage DIR]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: devListen, Usage: "address to listen on (port 0: a free one)"},
			&cli.StringFlag{Name: "testimage", EnvVars: []string{"KOLEJKA_TESTIMAGE"},
				Usage: "the test image's `DIR` (as make testimage makes it), imported as " + devImage + " (default: build/testimage of the tree whose bin/ holds this binary, if there)"},
		},
		Action: func(c *cli.Context) error {
			if err := cliexit.NoFlagsAfterArgs(c); err != nil {
				return err
			}
			if c.NArg() > 0 {
				return cliexit.UsageError("unexpected arguments %q (usage: %s)", c.Args().Slice(), c.Command.UsageText)
			}
			if c.IsSet("data") {
				return cliexit.UsageError("dev makes a temporary data folder of its own and removes it at the end: --data is not for it")
			}
			return runDev(c)
		},
	}
}

// devGrid is a running one-machine grid.
type devGrid struct {
	dir     string // the temporary folder: everything of the grid
	bin     string // the folder of this binary, kolejka-foreman and kolejka-worker
	cgroup  string // the node's cgroup root
	srv     *server.Server
	served  chan error
	addr    string
	node    *exec.Cmd
	nodeEnd chan error // the node's exit, once
	log     io.Writer
}

func runDev(c *cli.Context) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("unable to start the grid: its node runs tasks in containers and cgroups, which needs root")
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("unable to find this program: %w", err)
	}
	g := &devGrid{bin: filepath.Dir(exe), log: c.App.ErrWriter}
	for _, cmd := range []string{"kolejka-foreman", "kolejka-worker", "kolejka-init"} {
		if _, err := os.Stat(filepath.Join(g.bin, cmd)); err != nil {
			return fmt.Errorf("unable to find %s beside %s (`make build` puts them together): %w", cmd, exe, err)
		}
	}
	image, imageNote, err := findTestImage(c.String("testimage"), g.bin)
	if err != nil {
		return cliexit.WithCode(cliexit.Usage, err)
	}
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return cliexit.WithCode(cliexit.Usage, fmt.Errorf("unable to listen: %w", err))
	}
	// Signals are caught before anything starts, and until everything
	// is stopped: stop hears a second one.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if g.dir, err = os.MkdirTemp("", "kolejka-dev-"); err != nil {
		ln.Close()
		return fmt.Errorf("unable to create the grid's folder: %w", err)
	}
	g.cgroup = "/" + filepath.Base(g.dir)
	// From here on whatever was started is stopped and removed, however
	// the command ends.
	defer func() { err = errors.Join(err, g.stop(sigs)) }()

	served := false
	defer func() {
		if !served {
			ln.Close()
		}
	}()
	g.srv, err = server.Open(server.Config{DataDir: filepath.Join(g.dir, "server"), Logger: slog.Default()})
	if err != nil {
		return err
	}
	passwords := map[string]string{devUser: rand.Text(), devNode: rand.Text()}
	tokens := map[string]string{}
	for name, roles := range map[string]server.Role{devUser: server.Clients | server.Managers, devNode: server.Processors} {
		if err := g.srv.AddUser(c.Context, name, passwords[name], roles); err != nil {
			return err
		}
		if tokens[name], err = g.srv.NewToken(c.Context, name); err != nil {
			return err
		}
	}
	g.addr = ln.Addr().String()
	g.served = make(chan error, 1)
	served = true
	go func() { g.served <- g.srv.Serve(context.Background(), ln) }()
	url := "http://" + g.addr

	if image != "" {
		if err := g.importImage(c.Context, image); err != nil {
			return err
		}
		imageNote = devImage + ", imported from " + image
	}
	capacity, err := g.startNode(url, tokens[devNode], sigs)
	if err != nil || capacity == "" {
		return err // "": a signal came first
	}

	w := c.App.Writer
	fmt.Fprintf(w, "Kolejka's one-machine grid is running; Ctrl-C stops it and removes everything.\n")
	line := func(key, format string, args ...any) {
		fmt.Fprintf(w, "%-8s %s\n", key+":", fmt.Sprintf(format, args...))
	}
	line("server", "%s/", url)
	line("ui", "%s/ui/", url)
	line("user", "%s (client, manager), password %s", devUser, passwords[devUser])
	line("token", "%s", tokens[devUser])
	line("node", "%s (processor): runc runtime, %s", devNode, capacity)
	line("image", "%s", imageNote)
	line("data", "%s (removed at the end)", g.dir)
	line("cgroups", "%s (removed at the end)", g.cgroup)
	line("client", "export KOLEJKA_SERVER=%s KOLEJKA_TOKEN=%s", url, tokens[devUser])

	select {
	case sig := <-sigs:
		fmt.Fprintf(g.log, "%s: stopping the grid: the node drains (running tasks finish); %s again stops them now\n", sig, sig)
	case err := <-g.served:
		g.served <- err // for stop
		return fmt.Errorf("the server stopped: %w", err)
	case err := <-g.nodeEnd:
		g.nodeEnd <- err // for stop
		return fmt.Errorf("the node stopped by itself (its log is above): %v", err)
	}
	return nil
}

// findTestImage finds the test image's rootfs.tar: in the folder named
// (an error if it is not there), else in build/testimage of the tree that
// built this binary (bin/ beside build/); none found is no error, and the
// note says what to do.
func findTestImage(named, bin string) (tar, note string, err error) {
	if named != "" {
		tar := filepath.Join(named, "rootfs.tar")
		if _, err := os.Stat(tar); err != nil {
			return "", "", fmt.Errorf("the test image %s (--testimage, KOLEJKA_TESTIMAGE): %w", named, err)
		}
		return tar, "", nil
	}
	dir := filepath.Join(filepath.Dir(bin), "build", "testimage")
	tar = filepath.Join(dir, "rootfs.tar")
	if _, err := os.Stat(tar); err == nil {
		return tar, "", nil
	}
	return "", fmt.Sprintf("none (no test image at %s: `make testimage` makes it, --testimage names another); "+
		"import images with kolejka-worker image import and [worker] images = <data>/images", dir), nil
}

// importImage imports the test image into the node's image store with the
// kolejka-worker beside this binary.
func (g *devGrid) importImage(ctx context.Context, tar string) error {
	conf := filepath.Join(g.dir, "worker.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "[worker]\nimages = %s\n", filepath.Join(g.dir, "images")), 0o600); err != nil {
		return fmt.Errorf("unable to write %s: %w", conf, err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(g.bin, "kolejka-worker"), "--config-file", conf, "image", "import", devImage, tar)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("unable to import the test image %s: %w: %s", tar, err, bytes.TrimSpace(out))
	}
	return nil
}

// startNode starts the kolejka-foreman beside this binary as the grid's
// node and waits until it runs; it returns what the node offers, or ""
// if a signal came first. The foreman has a process group of its own, so
// that a terminal's Ctrl-C reaches this process alone, which stops the
// node before the server it posts its results to.
func (g *devGrid) startNode(url, token string, sigs <-chan os.Signal) (string, error) {
	conf := filepath.Join(g.dir, "foreman.conf")
	text := fmt.Sprintf(`[client]
server = %s
token = %s

[foreman]
runtime = runc
temp = %s
images = %s
state = %s
cgroup_root = %s
interval = 1
`, url, token, filepath.Join(g.dir, "node"), filepath.Join(g.dir, "images"), filepath.Join(g.dir, "state"), g.cgroup)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return "", fmt.Errorf("unable to write %s: %w", conf, err)
	}
	running := &lineWatch{w: g.log, want: "foreman running", found: make(chan string, 1)}
	g.node = exec.Command(filepath.Join(g.bin, "kolejka-foreman"), "--config-file", conf)
	g.node.Stdout, g.node.Stderr = g.log, running
	g.node.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Task containers may hold the log pipe a moment longer than the
	// foreman; its exit is what counts.
	g.node.WaitDelay = 5 * time.Second
	if err := g.node.Start(); err != nil {
		g.node = nil
		return "", fmt.Errorf("unable to start the node: %w", err)
	}
	g.nodeEnd = make(chan error, 1)
	go func() { g.nodeEnd <- g.node.Wait() }()
	select {
	case l := <-running.found:
		return offered(l), nil
	case err := <-g.nodeEnd:
		g.nodeEnd <- err
		return "", fmt.Errorf("the node did not start (its log is above): %v", err)
	case <-time.After(devNodeStart):
		return "", fmt.Errorf("the node did not start in %v", devNodeStart)
	case sig := <-sigs:
		fmt.Fprintf(g.log, "%s: stopping the grid before its node started\n", sig)
		return "", nil
	}
}

var capacityAttr = regexp.MustCompile(`capacity="([^"]*)"`)

// offered is what the foreman's "foreman running" log line says it
// offers tasks.
func offered(line string) string {
	if m := capacityAttr.FindStringSubmatch(line); m != nil {
		return "offering " + m[1]
	}
	return "running"
}

// stop ends what runs, node first (it drains and posts its results), then
// the server, removes the node's cgroup and the grid's folder, and reports
// what could not be stopped or removed. The folder is kept if mounts are
// left in it: removing through a mount would delete what it shows.
func (g *devGrid) stop(sigs <-chan os.Signal) error {
	var errs []error
	if g.node != nil {
		if err := g.stopNode(sigs); err != nil {
			errs = append(errs, err)
		}
	}
	if g.srv != nil {
		if g.served != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := g.srv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("unable to shut the server down cleanly: %w", err))
			}
			cancel()
			if err := <-g.served; err != nil {
				errs = append(errs, err)
			}
		} else {
			errs = append(errs, g.srv.Close())
		}
	}
	if left := removeCgroup(g.cgroup); len(left) > 0 {
		errs = append(errs, fmt.Errorf("cgroups left (still in use): %s", strings.Join(left, ", ")))
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(g.dir))
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("unable to list the mounts, so %s is kept: %w", g.dir, err))
	case len(mounts) > 0:
		errs = append(errs, fmt.Errorf("%d mounts left below %s (e.g. %s), so it is kept", len(mounts), g.dir, mounts[0].Mountpoint))
	default:
		if err := os.RemoveAll(g.dir); err != nil {
			errs = append(errs, fmt.Errorf("unable to remove %s: %w", g.dir, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(g.log, "grid stopped; %s and cgroup %s removed\n", g.dir, g.cgroup)
	return nil
}

// stopNode drains the node (the foreman's first SIGTERM: running tasks
// finish and post their results) and waits for it. A signal to this
// process meanwhile, or a drain longer than devNodeStop, stops the tasks
// now (its second SIGTERM: they go back to the queue); a node that then
// does not end in devNodeStop is killed.
func (g *devGrid) stopNode(sigs <-chan os.Signal) error {
	select {
	case err := <-g.nodeEnd:
		return nodeExit(err)
	default:
	}
	_ = g.node.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.nodeEnd:
		return nodeExit(err)
	case sig := <-sigs:
		fmt.Fprintf(g.log, "%s: stopping the node's tasks now\n", sig)
	case <-time.After(devNodeStop):
		fmt.Fprintf(g.log, "the node is still draining after %v: stopping its tasks now\n", devNodeStop)
	}
	_ = g.node.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.nodeEnd:
		// Exit 1 is how the foreman says its tasks went back to the
		// queue: asked for here, no failure.
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 1 {
			return nil
		}
		return nodeExit(err)
	case <-time.After(devNodeStop):
	}
	_ = g.node.Process.Kill()
	err := <-g.nodeEnd
	return fmt.Errorf("the node did not stop in %v and was killed (%v): its tasks' containers may be left", devNodeStop, err)
}

func nodeExit(err error) error {
	if err != nil {
		return fmt.Errorf("the node stopped with an error (its log is above): %w", err)
	}
	return nil
}

// removeCgroup removes the node's cgroup root in every hierarchy mounted
// at /sys/fs/cgroup (the unified one, v1 controllers, named ones), its
// empty sub-groups first, and returns the folders left. Only rmdir is
// used: a group holding a process stays and is reported.
func removeCgroup(root string) []string {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", root))
	more, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", root))
	var left []string
	for _, d := range append(dirs, more...) {
		var rm func(string) bool
		rm = func(dir string) bool {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.IsDir() {
					rm(filepath.Join(dir, e.Name()))
				}
			}
			if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				left = append(left, dir)
				return false
			}
			return true
		}
		rm(d)
	}
	return left
}

// lineWatch passes what is written on to w and sends the first line
// containing want to found.
type lineWatch struct {
	w     io.Writer
	want  string
	found chan string
	mu    sync.Mutex
	buf   []byte
	done  bool
}

func (l *lineWatch) Write(p []byte) (int, error) {
	l.mu.Lock()
	if !l.done {
		l.buf = append(l.buf, p...)
		for {
			i := bytes.IndexByte(l.buf, '\n')
			if i < 0 {
				break
			}
			line := string(l.buf[:i])
			l.buf = l.buf[i+1:]
			if strings.Contains(line, l.want) {
				l.done, l.buf = true, nil
				l.found <- line
				break
			}
		}
	}
	l.mu.Unlock()
	return l.w.Write(p)
}
