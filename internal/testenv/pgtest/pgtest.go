// Package pgtest runs a real PostgreSQL cluster for tests: one cluster per
// test binary, started by the first test that asks for a database and
// stopped by Stop (call it from TestMain), and a fresh database for each
// test. The cluster runs as the `postgres` user from Debian's binaries
// (/usr/lib/postgresql/*/bin, or initdb on PATH); where they are missing
// a test skips (fails under KOLEJKA_REQUIRE_PRIVILEGED=1) via
// testenv.Missing.
//
// Local (socket) connections are trusted; TCP connections on 127.0.0.1
// need the password, so that a test can use a wrong one. The cluster
// trades durability for speed (fsync off): it holds only test data.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/kolejka-go/kolejka/internal/testenv"
)

// Password is the password of the cluster's superuser, User.
const (
	User     = "postgres"
	Password = "kolejka-test"
)

// Cluster is the running cluster.
type Cluster struct {
	Dir  string // data folder, also the socket folder
	Host string
	Port int
	bin  string
}

var (
	mu      sync.Mutex
	running *Cluster
	failed  error
	dbSeq   atomic.Int64
)

// Bin is the folder of PostgreSQL's server binaries, or "" if there is
// none on this machine.
func Bin() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(found) == 0 {
		return ""
	}
	// The newest major version; the glob sorts "9" after "15", so by number.
	sort.Slice(found, func(i, j int) bool { return major(found[i]) < major(found[j]) })
	return filepath.Dir(found[len(found)-1])
}

func major(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

// Get returns the cluster, starting it on first use.
func Get(t testing.TB) *Cluster {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if running != nil {
		return running
	}
	bin := Bin()
	if bin == "" {
		testenv.Missing(t, "needs PostgreSQL's initdb and pg_ctl (apt install postgresql)")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root to run PostgreSQL as the postgres user")
	}
	if failed != nil {
		t.Fatalf("PostgreSQL did not start earlier: %v", failed)
	}
	c, err := start(bin, "")
	if err != nil {
		failed = err
		t.Fatalf("unable to start PostgreSQL: %v", err)
	}
	running = c
	return c
}

// StartOn starts a cluster of t's own that also listens on address host
// (one of this machine's, such as a test network's bridge, gridtest.Net)
// and takes password connections from its /24, so that processes in other
// network namespaces reach it; it is stopped when t ends. Host is then
// the cluster's address in URLs.
func StartOn(t testing.TB, host string) *Cluster {
	t.Helper()
	bin := Bin()
	if bin == "" {
		testenv.Missing(t, "needs PostgreSQL's initdb and pg_ctl (apt install postgresql)")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root to run PostgreSQL as the postgres user")
	}
	c, err := start(bin, host)
	if err != nil {
		t.Fatalf("unable to start PostgreSQL on %s: %v", host, err)
	}
	t.Cleanup(func() { c.stop() })
	c.Host = host
	return c
}

// start runs initdb and pg_ctl start in a new folder, listening on
// 127.0.0.1 and on extra if it is not "".
func start(bin, extra string) (*Cluster, error) {
	pg, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("unable to find the postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	dir, err := os.MkdirTemp("", "kolejka-pg-")
	if err != nil {
		return nil, fmt.Errorf("unable to make the cluster's folder: %w", err)
	}
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(Password+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("unable to write the password file: %w", err)
	}
	for _, p := range []string{dir, pwfile} {
		if err := os.Chown(p, uid, gid); err != nil {
			return nil, fmt.Errorf("unable to hand %s to postgres: %w", p, err)
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, Host: "127.0.0.1", Port: port, bin: bin}
	data := filepath.Join(dir, "data")
	if err := c.run(uid, gid, "initdb", "-D", data, "-U", User, "--auth-local=trust",
		"--auth-host=scram-sha-256", "--pwfile="+pwfile, "-E", "UTF8", "--locale=C"); err != nil {
		return nil, err
	}
	listen := "127.0.0.1"
	if extra != "" {
		listen += "," + extra
		// initdb's host lines name loopback only.
		hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("unable to open pg_hba.conf: %w", err)
		}
		_, err = fmt.Fprintf(hba, "host all all %s/24 scram-sha-256\n", extra)
		if cerr := hba.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("unable to write pg_hba.conf: %w", err)
		}
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", port, dir, listen)
	if err := c.run(uid, gid, "pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		return nil, fmt.Errorf("%w\n%s", err, log)
	}
	return c, nil
}

func (c *Cluster) run(uid, gid int, name string, args ...string) error {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("unable to run %s: %w\n%s", name, err, out)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("unable to find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// URL is the address of database db as user with password, over TCP.
func (c *Cluster) URL(user, password, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password),
		Host: net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), Path: "/" + db}
	return u.String()
}

// Exec runs statements as the superuser in database db.
func (c *Cluster) Exec(t testing.TB, db, query string) {
	t.Helper()
	conn, err := sql.Open("pgx", c.URL(User, Password, db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close() //nolint:errcheck // a test's connection; the statement's error is the news
	if _, err := conn.ExecContext(context.Background(), query); err != nil {
		t.Fatalf("unable to run %q: %v", query, err)
	}
}

// Database creates a fresh, empty database in the test binary's cluster
// and returns its URL (the superuser's). It is dropped when t ends.
func Database(t testing.TB) string {
	t.Helper()
	return Get(t).Database(t)
}

// Database creates a fresh, empty database in c and returns its URL (the
// superuser's). It is dropped when t ends.
func (c *Cluster) Database(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	c.Exec(t, "postgres", "CREATE DATABASE "+name)
	t.Cleanup(func() {
		// WITH (FORCE): a store a test forgot to close must not keep its
		// database (and the cluster's connection slots) alive.
		conn, err := sql.Open("pgx", c.URL(User, Password, "postgres"))
		if err == nil {
			_, _ = conn.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
			_ = conn.Close()
		}
	})
	return c.URL(User, Password, name)
}

// Stop stops the cluster, if one was started, and removes its folder.
// TestMain calls it after the tests.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if running == nil {
		return
	}
	running.stop()
	running = nil
}

// stop stops c and removes its folder.
func (c *Cluster) stop() {
	pg, err := user.Lookup("postgres")
	if err == nil {
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := c.run(uid, gid, "pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "immediate", "-w", "stop"); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
	}
	os.RemoveAll(c.Dir)
}
