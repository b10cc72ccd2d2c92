// Package s3test runs a real S3 server for tests: SeaweedFS's `weed`
// (testdata/seaweedfs.sh builds it), started once per test binary on free
// loopback ports in a temporary folder, with one identity so that requests
// are signed and a wrong key is refused. Each test gets its own bucket.
// Without weed the tests skip (fail under KOLEJKA_REQUIRE_PRIVILEGED=1).
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

// Server is the running weed.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT (StartOn: its host)
	cmd      *exec.Cmd
	exited   chan struct{} // closed when weed has exited
	dir      string
	client   *minio.Client
}

var (
	once     sync.Once
	shared   *Server
	startErr error
)

// Start returns the test binary's S3 server, starting it on first use.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("weed")
	if err != nil {
		testenv.Missing(t, "SeaweedFS's weed (testdata/seaweedfs.sh builds it) for the S3 blob store")
	}
	once.Do(func() { shared, startErr = start(bin, "127.0.0.1") })
	if startErr != nil {
		t.Fatalf("unable to start weed: %v", startErr)
	}
	return shared
}

// StartOn starts a server of t's own whose S3 gateway listens on address
// host (one of this machine's, such as a test network's bridge,
// gridtest.Net) instead of loopback, so that processes in other network
// namespaces reach it; the rest of weed stays on loopback. It is stopped
// when t ends.
func StartOn(t testing.TB, host string) *Server {
	t.Helper()
	bin, err := exec.LookPath("weed")
	if err != nil {
		testenv.Missing(t, "SeaweedFS's weed (testdata/seaweedfs.sh builds it) for the S3 blob store")
	}
	s, err := start(bin, host)
	if err != nil {
		t.Fatalf("unable to start weed on %s: %v", host, err)
	}
	t.Cleanup(s.stop)
	return s
}

// Stop stops the server (TestMain calls it after m.Run). weed also dies
// with the test binary (Pdeathsig), should TestMain not run it.
func Stop() {
	if shared == nil {
		return
	}
	shared.stop()
	shared = nil
}

func (s *Server) stop() {
	// Errors are moot: the process may have died already, and its exit
	// status after SIGTERM says nothing.
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	os.RemoveAll(s.dir)
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
	port := func(i int) string { return strconv.Itoa(p[i]) }
	cmd := exec.Command(bin, "server",
		"-dir="+filepath.Join(dir, "data"), "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port="+port(0), "-master.port.grpc="+port(1), "-master.volumeSizeLimitMB=16", "-master.telemetry=false",
		"-volume.port="+port(2), "-volume.port.grpc="+port(3), "-volume.max=0",
		"-filer", "-filer.port="+port(4), "-filer.port.grpc="+port(5),
		"-s3", "-s3.ip.bind="+s3host, "-s3.port="+port(6), "-s3.port.grpc="+port(7), "-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.config="+filepath.Join(dir, "s3.json"))
	log, err := os.Create(filepath.Join(dir, "weed.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	gw := net.JoinHostPort(s3host, port(6))
	s := &Server{Endpoint: "http://" + gw, cmd: cmd, dir: dir, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.exited) }() // its status after SIGTERM says nothing
	s.client, err = minio.New(gw, &minio.Options{Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return nil, err
	}
	// Up when a bucket can be made and written to: the S3 gateway answers
	// before the volume server has registered with the master.
	deadline := time.Now().Add(90 * time.Second)
	for {
		err = s.probe()
		if err == nil {
			return s, nil
		}
		dead := false
		select {
		case <-s.exited:
			dead = true
		default:
		}
		if time.Now().After(deadline) || dead {
			_ = cmd.Process.Kill() // the timeout is the news
			<-s.exited
			out, _ := os.ReadFile(filepath.Join(dir, "weed.log"))
			return nil, fmt.Errorf("S3 did not answer in 90 s: %v\n%s", err, tail(string(out)))
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
