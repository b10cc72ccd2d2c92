package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/dockerapi"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/worker/image/siftest"
)

// `image import` with the docker runtime (by flag or by [worker] runtime)
// loads the image into the engine under its name, from each format the
// store takes (a SIF file through the store's unpacked root); the engine
// can then run it.
func TestImageImportLoadsIntoTheEngine(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireDocker(t)
	img := testenv.TestImage(t)
	cli, err := dockerapi.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.conf")
	withDocker := filepath.Join(dir, "docker.conf")
	os.WriteFile(plain, []byte("[worker]\nimages = "+filepath.Join(dir, "images")+"\n"), 0o644)
	os.WriteFile(withDocker, []byte("[worker]\nruntime = docker\nimages = "+filepath.Join(dir, "images")+"\n"), 0o644)

	for _, c := range []struct {
		name, file string
		args       []string
	}{
		{"kolejka-import-test/save:1", "docker-save.tar", []string{"--config-file", plain, "image", "import", "--runtime", "docker"}},
		{"kolejka-import-test/rootfs:1", "rootfs.tar", []string{"--config-file", withDocker, "image", "import"}},
		{"kolejka-import-test/oci:1", "oci", []string{"--config-file", plain, "image", "import", "--runtime", "docker"}},
		{"kolejka-import-test/sif:1", siftest.FromRootfsTar(t, filepath.Join(img, "rootfs.tar")), []string{"--config-file", plain, "image", "import", "--runtime", "docker"}},
	} {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			ctx := context.Background()
			cli.ImageRemove(ctx, c.name, dockerapi.ImageRemoveOptions{Force: true})
			t.Cleanup(func() { cli.ImageRemove(ctx, c.name, dockerapi.ImageRemoveOptions{Force: true}) })
			file := c.file
			if !filepath.IsAbs(file) {
				file = filepath.Join(img, file)
			}
			args := append(append([]string{"kolejka-worker"}, c.args...), c.name, file)
			if err := app().Run(args); err != nil {
				t.Fatalf("%v: %v", args, err)
			}
			if _, err := cli.ImageInspect(ctx, c.name); err != nil {
				t.Fatalf("the engine has no %s: %v", c.name, err)
			}
			out, err := exec.Command("docker", "run", "--rm", "--network", "none", c.name, "/bin/sh", "-c", "echo ran").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "ran" {
				t.Fatalf("docker run %s: %v %s", c.name, err, out)
			}
		})
	}

	// Without the docker runtime, the engine is left alone.
	const name = "kolejka-import-test/runc-only:1"
	if err := app().Run([]string{"kolejka-worker", "--config-file", plain, "image", "import", name, filepath.Join(img, "rootfs.tar")}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ImageInspect(context.Background(), name); err == nil {
		cli.ImageRemove(context.Background(), name, dockerapi.ImageRemoveOptions{Force: true})
		t.Errorf("the runc runtime's import loaded %s into the engine", name)
	}
}
