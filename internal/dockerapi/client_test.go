package dockerapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"

	"github.com/kolejka-go/kolejka/internal/dockerapi"
	"github.com/kolejka-go/kolejka/internal/testenv"
)

// engine is a client of the real engine, with the test image loaded.
func engine(t *testing.T) *dockerapi.Client {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireDocker(t)
	img := testenv.TestImage(t)
	cli, err := dockerapi.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	f, err := os.Open(filepath.Join(img, "docker-save.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := cli.ImageLoad(context.Background(), f); err != nil {
		t.Fatalf("ImageLoad: %v", err)
	}
	return cli
}

const testImage = "kolejka-test:latest"

// The engine's answers: its description, an image by name, not-found
// errors as errdefs, a tag made and removed.
func TestEngineImages(t *testing.T) {
	cli := engine(t)
	ctx := context.Background()
	info, err := cli.Info(ctx)
	if err != nil || info.Driver == "" {
		t.Fatalf("Info: %v, driver %q", err, info.Driver)
	}
	in, err := cli.ImageInspect(ctx, testImage)
	if err != nil || !strings.HasPrefix(in.ID, "sha256:") {
		t.Fatalf("ImageInspect: %v, id %q", err, in.ID)
	}
	_, err = cli.ImageInspect(ctx, "kolejka-dockerapi-test/missing:1")
	var e *dockerapi.Error
	if !cerrdefs.IsNotFound(err) || !errors.As(err, &e) || e.Status != http.StatusNotFound || e.Message == "" {
		t.Fatalf("ImageInspect of a missing image: %v, want a 404 *Error, not found", err)
	}
	if _, err := cli.ContainerInspect(ctx, "kolejka-dockerapi-test-missing"); !cerrdefs.IsNotFound(err) {
		t.Fatalf("ContainerInspect of a missing container: %v, want not found", err)
	}

	const tagged = "kolejka-dockerapi-test/tagged:1"
	if err := cli.ImageTag(ctx, in.ID, "kolejka-dockerapi-test/tagged", "1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.ImageRemove(ctx, tagged, dockerapi.ImageRemoveOptions{Force: true}) })
	list, err := cli.ImageList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, it := range list {
		for _, tag := range it.RepoTags {
			found = found || tag == tagged && it.ID == in.ID
		}
	}
	if !found {
		t.Fatalf("ImageList has no %s", tagged)
	}
	if _, err := cli.ImageRemove(ctx, tagged, dockerapi.ImageRemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ImageRemove(ctx, tagged, dockerapi.ImageRemoveOptions{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("second ImageRemove: %v, want not found", err)
	}
	if err := cli.ImagePull(ctx, "kolejka-dockerapi-test/missing", "1"); err == nil {
		t.Fatal("ImagePull of an image no registry has succeeded")
	}
}

// A container's life: waits registered before the start see its exit
// status and its removal; a running container cannot be removed without
// force (conflict); cancelling a wait's context ends it.
func TestEngineContainer(t *testing.T) {
	cli := engine(t)
	ctx := context.Background()
	name := fmt.Sprintf("kolejka-dockerapi-test-%d", os.Getpid())
	create := func(cmd string) string {
		t.Helper()
		ct, err := cli.ContainerCreate(ctx, name, &container.Config{Image: testImage, Entrypoint: []string{"/bin/sh", "-c", cmd},
			Labels: map[string]string{"org.kolejka.dockerapi-test": name}}, &container.HostConfig{NetworkMode: "none"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.ContainerRemove(ctx, ct.ID, dockerapi.ContainerRemoveOptions{Force: true}) })
		return ct.ID
	}

	id := create("exit 7")
	exit, err := cli.ContainerWait(ctx, id, container.WaitConditionNextExit)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := cli.ContainerWait(ctx, id, container.WaitConditionRemoved)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerStart(ctx, id); err != nil {
		t.Fatal(err)
	}
	if r := <-exit; r.Err != nil || r.Response.StatusCode != 7 {
		t.Fatalf("wait for the exit: %+v", r)
	}
	in, err := cli.ContainerInspect(ctx, id)
	if err != nil || in.State == nil || in.State.ExitCode != 7 || in.Name != "/"+name {
		t.Fatalf("ContainerInspect: %v %+v", err, in.State)
	}
	if err := cli.ContainerRemove(ctx, id, dockerapi.ContainerRemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-gone:
		if r.Err != nil {
			t.Fatalf("wait for the removal: %v", r.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the wait for the removal did not end")
	}

	id = create("sleep 60")
	if err := cli.ContainerStart(ctx, id); err != nil {
		t.Fatal(err)
	}
	list, err := cli.ContainerList(ctx, dockerapi.ContainerListOptions{Labels: []string{"org.kolejka.dockerapi-test=" + name}})
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("ContainerList: %v %+v", err, list)
	}
	if err := cli.ContainerRemove(ctx, id, dockerapi.ContainerRemoveOptions{}); !cerrdefs.IsConflict(err) {
		t.Fatalf("ContainerRemove of a running container: %v, want conflict", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	w, err := cli.ContainerWait(wctx, id, container.WaitConditionNotRunning)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case r := <-w:
		if r.Err == nil {
			t.Fatalf("cancelled wait: %+v, want an error", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled wait did not end")
	}
	exit, err = cli.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerKill(ctx, id, "KILL"); err != nil {
		t.Fatal(err)
	}
	if r := <-exit; r.Err != nil || r.Response.StatusCode != 137 {
		t.Fatalf("wait after KILL: %+v", r)
	}
	if err := cli.ContainerRemove(ctx, id, dockerapi.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerKill(ctx, id, "KILL"); !cerrdefs.IsNotFound(err) {
		t.Fatalf("ContainerKill of a removed container: %v, want not found", err)
	}
}

// fake is an engine of httptest serving API version version; handle
// answers what is not /_ping.
func fake(t *testing.T, version string, handle http.HandlerFunc) *dockerapi.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_ping" {
			if version != "" {
				w.Header().Set("API-Version", version)
			}
			fmt.Fprint(w, "OK")
			return
		}
		handle(w, r)
	}))
	t.Cleanup(srv.Close)
	cli, err := dockerapi.New("tcp://" + strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// The version spoken is the engine's, capped at MaxAPIVersion; an engine
// older than MinAPIVersion, or one that does not say, is refused.
func TestNegotiation(t *testing.T) {
	for _, c := range []struct{ server, want string }{
		{"1.41", "/v1.41/"},
		{"1.99", "/v" + dockerapi.MaxAPIVersion + "/"},
		{"2.0", "/v" + dockerapi.MaxAPIVersion + "/"},
		{"1.39", ""},
		{"", ""},
		{"x", ""},
	} {
		t.Run(c.server, func(t *testing.T) {
			var got string
			cli := fake(t, c.server, func(w http.ResponseWriter, r *http.Request) {
				got = r.URL.Path
				fmt.Fprint(w, "[]")
			})
			_, err := cli.ImageList(context.Background())
			if c.want == "" {
				if err == nil || !strings.Contains(err.Error(), "API version") {
					t.Fatalf("err = %v, want a refusal naming the API version", err)
				}
				return
			}
			if err != nil || got != c.want+"images/json" {
				t.Fatalf("err %v, path %q, want %simages/json", err, got, c.want)
			}
		})
	}
}

// The engine's refusals are *Error matching errdefs; a progress stream
// that reports a failure after the 200 is an error carrying its message.
func TestErrorShapes(t *testing.T) {
	cli := fake(t, "1.41", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/containers/missing/json"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"message":"No such container: missing"}`)
		case strings.HasSuffix(r.URL.Path, "/containers/busy"):
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, "removal already in progress")
		case r.URL.Query().Get("fromImage") == "broken/detail":
			fmt.Fprint(w, `{"status":"Pulling from broken/detail","id":"latest"}`+"\n")
			fmt.Fprint(w, `{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}`+"\n")
		case r.URL.Query().Get("fromImage") == "broken/old":
			fmt.Fprint(w, `{"error":"old style failure"}`+"\n")
		case r.URL.Query().Get("fromImage") == "ok" && r.URL.Query().Get("tag") == "latest":
			fmt.Fprint(w, `{"status":"Pulling"}`+"\n"+`{"status":"Digest: sha256:0"}`+"\n")
		case r.URL.Query().Get("fromImage") == "cut":
			fmt.Fprint(w, `{"status":"Pull`)
		default:
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, `{"message":"unexpected %s"}`, r.URL)
		}
	})
	ctx := context.Background()

	_, err := cli.ContainerInspect(ctx, "missing")
	var e *dockerapi.Error
	if !errors.As(err, &e) || e.Status != 404 || e.Message != "No such container: missing" || !cerrdefs.IsNotFound(err) || cerrdefs.IsConflict(err) {
		t.Fatalf("404: %v", err)
	}
	err = cli.ContainerRemove(ctx, "busy", dockerapi.ContainerRemoveOptions{})
	if !cerrdefs.IsConflict(err) || !strings.Contains(err.Error(), "removal already in progress") {
		t.Fatalf("409 with a plain body: %v", err)
	}
	if err := cli.ContainerStart(ctx, "other"); !cerrdefs.IsInternal(err) || !strings.Contains(err.Error(), "unexpected") {
		t.Fatalf("500: %v", err)
	}

	if err := cli.ImagePull(ctx, "broken/detail", "latest"); err == nil || !strings.Contains(err.Error(), "manifest unknown") {
		t.Fatalf("pull stream with errorDetail: %v", err)
	}
	if err := cli.ImagePull(ctx, "broken/old", "latest"); err == nil || !strings.Contains(err.Error(), "old style failure") {
		t.Fatalf("pull stream with error: %v", err)
	}
	if err := cli.ImagePull(ctx, "ok", "latest"); err != nil {
		t.Fatalf("pull of ok:latest: %v", err)
	}
	if err := cli.ImagePull(ctx, "cut", "latest"); err == nil {
		t.Fatal("a cut pull stream is no error")
	}
}

// A call whose context ends while the engine has not answered returns.
func TestCancelAbortsACall(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	cli := fake(t, "1.41", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := cli.Info(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
}

// DOCKER_HOST is read as the docker command reads it; what this client
// cannot speak is refused, naming DOCKER_HOST.
func TestFromEnv(t *testing.T) {
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"", true},
		{"unix:///run/docker.sock", true},
		{"tcp://127.0.0.1:2375", true},
		{"ssh://user@host", false},
		{"npipe:////./pipe/docker_engine", false},
		{"tcp://", false},
		{"unix://", false},
	} {
		t.Setenv("DOCKER_HOST", c.host)
		cli, err := dockerapi.FromEnv()
		if c.ok != (err == nil) {
			t.Errorf("DOCKER_HOST=%s: %v", c.host, err)
		}
		if err != nil && !strings.Contains(err.Error(), "DOCKER_HOST="+c.host) {
			t.Errorf("DOCKER_HOST=%s: %v does not name DOCKER_HOST", c.host, err)
		}
		if err == nil && c.host == "" && cli.Host() != dockerapi.DefaultHost {
			t.Errorf("default host %s", cli.Host())
		}
	}
	t.Setenv("DOCKER_HOST", "")
	t.Setenv("DOCKER_TLS_VERIFY", "1")
	if _, err := dockerapi.FromEnv(); err == nil || !strings.Contains(err.Error(), "DOCKER_HOST") {
		t.Errorf("TLS: %v", err)
	}
	t.Setenv("DOCKER_TLS_VERIFY", "")
	t.Setenv("DOCKER_API_VERSION", "latest")
	if _, err := dockerapi.FromEnv(); err == nil || !strings.Contains(err.Error(), "DOCKER_API_VERSION") {
		t.Errorf("DOCKER_API_VERSION=latest: %v", err)
	}
}
