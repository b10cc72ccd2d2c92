// Package s3test runs a real S3 server for tests: SeaweedFS's `weed`
// (testdata/seaweedfs.sh builds it), started once per test binary on free
// loopback ports in a temporary folder, with one identity so that requests
// are signed and a wrong key is refused. Each test gets its own bucket.
// A test that takes the store away (New) gets a weed of its own, which it
// kills and restarts over the same data and ports. Without weed the tests
// skip (fail under KOLEJKA_REQUIRE_PRIVILEGED=1).
package s3test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	blobss3 "github.com/kolejka-go/kolejka/internal/server/blobs/s3"
	"github.com/kolejka-go/kolejka/internal/testenv"
)

// The identity the server knows.
const (
	AccessKey = "kolejkatest"
	SecretKey = "kolejka-test-secret-key"
)

// Server is a running weed.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT (StartOn: its host)
	bin      string
	dir      string
	s3host   string // the address the S3 gateway listens on
	ports    []int
	client   *minio.Client

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when this cmd has exited
}

var (
	once     sync.Once
	shared   *Server
	startErr error
)

// Start returns the test binary's S3 server, starting it on first use.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := weedBinary(t)
	once.Do(func() { shared, startErr = start(bin, "127.0.0.1") })
	if startErr != nil {
		t.Fatalf("unable to start weed: %v", startErr)
	}
	return shared
}

// New starts a weed of t's own, for tests that stop and restart it (an
// outage of the blob store): the shared one serves other tests at the same
// time. It is killed and its folder removed when t ends.
func New(t testing.TB) *Server {
	t.Helper()
	s, err := start(weedBinary(t), "127.0.0.1")
	if err != nil {
		t.Fatalf("unable to start weed: %v", err)
	}
	t.Cleanup(s.close)
	return s
}

// StartOn starts a server of t's own whose S3 gateway listens on address
// host (one of this machine's, such as a test network's bridge,
// gridtest.Net) instead of loopback, so that processes in other network
// namespaces reach it; the rest of weed stays on loopback. It is stopped
// when t ends.
func StartOn(t testing.TB, host string) *Server {
	t.Helper()
	s, err := start(weedBinary(t), host)
	if err != nil {
		t.Fatalf("unable to start weed on %s: %v", host, err)
	}
	t.Cleanup(s.close)
	return s
}

func weedBinary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("weed")
	if err != nil {
		testenv.Missing(t, "SeaweedFS's weed (testdata/seaweedfs.sh builds it) for the S3 blob store")
	}
	return bin
}

// Stop stops the shared server (TestMain calls it after m.Run). weed also
// dies with the test binary (Pdeathsig), should TestMain not run it.
func Stop() {
	if shared == nil {
		return
	}
	shared.close()
	shared = nil
}

// close ends weed (SIGTERM, then SIGKILL after 10 s) and removes its
// folder.
func (s *Server) close() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd != nil {
		// Errors are moot: the process may have died already, and its
		// exit status after SIGTERM says nothing.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	os.RemoveAll(s.dir)
}

// Kill ends weed at once with SIGKILL, as a crashed or unplugged S3 server:
// open connections are cut, new ones refused, until Restart. Its data stay.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		t.Fatal("s3test: Kill of a weed that is not running")
	}
	_ = cmd.Process.Kill() // it may have died already: the wait below is what counts
	<-exited
}

// Restart starts weed again after Kill, on the same ports over the same
// data, and returns once it takes writes.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.run(); err != nil {
		t.Fatalf("unable to restart weed: %v", err)
	}
}

// Running reports whether weed runs (between Kill and Restart it does not).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// start starts weed on loopback with its S3 gateway on s3host.
func start(bin, s3host string) (*Server, error) {
	dir, err := os.MkdirTemp("", "kolejka-weed-")
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`{"identities":[{"name":"kolejka","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","Write","List","Tagging"]}]}`, AccessKey, SecretKey)
	if err := os.WriteFile(filepath.Join(dir, "s3.json"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o750); err != nil {
		return nil, err
	}
	p, err := freePorts(8)
	if err != nil {
		return nil, err
	}
	gw := net.JoinHostPort(s3host, strconv.Itoa(p[6]))
	s := &Server{Endpoint: "http://" + gw, bin: bin, dir: dir, s3host: s3host, ports: p}
	s.client, err = minio.New(gw, &minio.Options{Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return nil, err
	}
	if err := s.run(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// run starts weed over s's folder and ports and waits until it takes
// writes.
func (s *Server) run() error {
	port := func(i int) string { return strconv.Itoa(s.ports[i]) }
	dir := s.dir
	cmd := exec.Command(s.bin, "server",
		"-dir="+filepath.Join(dir, "data"), "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port="+port(0), "-master.port.grpc="+port(1), "-master.volumeSizeLimitMB=16", "-master.telemetry=false", "-master.electionTimeout=1s",
		"-volume.port="+port(2), "-volume.port.grpc="+port(3), "-volume.max=0",
		"-filer", "-filer.port="+port(4), "-filer.port.grpc="+port(5),
		"-s3", "-s3.ip.bind="+s.s3host, "-s3.port="+port(6), "-s3.port.grpc="+port(7), "-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.config="+filepath.Join(dir, "s3.json"))
	cmd.Dir = dir // whatever weed keeps relative to its working folder stays in dir
	// Appended: a restart keeps the log of the run before.
	log, err := os.OpenFile(filepath.Join(dir, "weed.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // its status after a signal says nothing
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	// Up when a bucket can be made and written to: the S3 gateway answers
	// before the volume server has registered with the master.
	deadline := time.Now().Add(90 * time.Second)
	for {
		err = s.probe()
		if err == nil {
			return nil
		}
		dead := false
		select {
		case <-exited:
			dead = true
		default:
		}
		if time.Now().After(deadline) || dead {
			_ = cmd.Process.Kill() // the timeout is the news
			<-exited
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			out, _ := os.ReadFile(filepath.Join(dir, "weed.log"))
			return fmt.Errorf("S3 did not answer in 90 s: %v\n%s", err, tail(string(out)))
		}
		time.Sleep(200 * time.Millisecond) // polling a starting server
	}
}

func tail(s string) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}

func (s *Server) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b := "probe"
	if ok, err := s.client.BucketExists(ctx, b); err != nil {
		return err
	} else if !ok {
		if err := s.client.MakeBucket(ctx, b, minio.MakeBucketOptions{}); err != nil {
			return err
		}
	}
	_, err := s.client.PutObject(ctx, b, "x", strings.NewReader("x"), 1, minio.PutObjectOptions{})
	return err
}

// Client is a client signed in as the identity.
func (s *Server) Client() *minio.Client { return s.client }

// Bucket makes a new empty bucket for t and returns the options that
// open it with the right credentials.
func (s *Server) Bucket(t testing.TB) blobss3.Options {
	t.Helper()
	name := "t-" + strings.ToLower(rand.Text()[:16])
	if err := s.client.MakeBucket(t.Context(), name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("unable to make bucket: %v", err)
	}
	return blobss3.Options{Bucket: name, Endpoint: s.Endpoint, Region: "us-east-1", AccessKey: AccessKey, SecretKey: SecretKey}
}

// URL is the blobs setting of o (credentials apart).
func URL(o blobss3.Options) string {
	return "s3://" + o.Bucket + "?endpoint=" + o.Endpoint + "&region=" + o.Region
}
