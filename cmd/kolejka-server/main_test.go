package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

// asMain is the helper (testenv.RunHelpers) that makes the re-executed
// test binary run main with its arguments (the serve test signals it as a
// real process).
const asMain = "main"

func TestMain(m *testing.M) {
	testenv.RunHelpers(testenv.Helpers{asMain: func(string) int { return cliexit.Run(app(), os.Args) }})
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// run runs the command in-process and returns its exit code and output
// (errors go to the process's stderr, as cliexit prints them).
func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	a := app()
	var out, errOut bytes.Buffer
	a.Writer, a.ErrWriter = &out, &errOut
	code := cliexit.Run(a, append([]string{"kolejka-server"}, args...))
	return code, out.String(), errOut.String()
}

func TestAdminCommands(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KOLEJKA_SERVER_CONFIG_FILE", filepath.Join(dir, "none.conf"))
	os.WriteFile(filepath.Join(dir, "none.conf"), nil, 0o644)
	data := filepath.Join(dir, "data")
	must := func(want int, args ...string) string {
		t.Helper()
		code, out, errOut := run(t, nil, append([]string{"--data", data}, args...)...)
		if code != want {
			t.Fatalf("%v: exit %d, want %d; stdout %q stderr %q", args, code, want, out, errOut)
		}
		return out
	}
	must(0, "adduser", "--clients", "alice", "pw")
	must(0, "adduser", "node", "pw", "--processors") // Kolejka's order
	must(2, "adduser", "alice", "again")
	must(2, "adduser", "bad name", "pw")
	must(2, "adduser", "--wizards", "x", "pw")
	must(0, "passwd", "alice", "new")
	must(2, "passwd", "nobody", "x")
	tok := strings.TrimSpace(must(0, "token", "alice"))
	if !strings.HasPrefix(tok, "kt_") || len(tok) != 67 {
		t.Errorf("token %q", tok)
	}
	must(2, "token", "nobody")
	if out := must(0, "lstask"); out != "" {
		t.Errorf("lstask on an empty server: %q", out)
	}
	must(0, "rmtask", "0123456789abcdef0123456789abcdef")
	if out := must(0, "unassign", "10M"); !strings.Contains(out, "unassigned 0 tasks") {
		t.Errorf("unassign: %q", out)
	}
	must(2, "unassign", "10h") // lower-case h is not a unit
	must(2, "lstask", "extra", "--long")
}

// Flags win over the environment, which wins over kolejka.conf.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "kolejka.conf")
	os.WriteFile(conf, []byte("[server]\ndata = "+dir+"/ini-data\nprefix = /ini/\nlease = 30s\nmemory = 2G\ncallback_hosts = a.example, b.example\ndefaults = cpus=2\n"), 0o644)
	get := func(out, key string) string {
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(l, key+" = "); ok {
				return v
			}
		}
		return "?"
	}
	_, out, _ := run(t, nil, "--config-file", conf, "config")
	for k, want := range map[string]string{"data": dir + "/ini-data", "prefix": "/ini/", "lease": "30.0s", "limits": "memory=2G",
		// defaults: the file's cpus, the shipped memory and time.
		"callback_hosts": "a.example,b.example", "defaults": "cpus=2 memory=1G time=3600.0s", "max_attempts": "3", "listen": "127.0.0.1:8000"} {
		if got := get(out, k); got != want {
			t.Errorf("from the file: %s = %q, want %q", k, got, want)
		}
	}
	env := map[string]string{"KOLEJKA_SERVER_PREFIX": "/env/", "KOLEJKA_SERVER_DATA": dir + "/env-data", "KOLEJKA_SERVER_LEASE": "5s"}
	_, out, _ = run(t, env, "--config-file", conf, "config")
	if get(out, "prefix") != "/env/" || get(out, "data") != dir+"/env-data" || get(out, "lease") != "5.0s" {
		t.Errorf("env over file:\n%s", out)
	}
	_, out, _ = run(t, env, "--config-file", conf, "--data", dir+"/flag-data", "config", "--prefix", "/flag/", "--memory", "1G", "--listen", ":9")
	if get(out, "prefix") != "/flag/" || get(out, "data") != dir+"/flag-data" || get(out, "limits") != "memory=1G" || get(out, "listen") != ":9" {
		t.Errorf("flags over env:\n%s", out)
	}
	if code, _, _ := run(t, nil, "--config-file", conf, "config", "--lease", "1h"); code != 2 {
		t.Errorf("bad flag value: exit %d, want 2", code)
	}
}

// serve starts a working server with one command and stops cleanly on
// SIGTERM.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "empty.conf"), nil, 0o644)
	data := filepath.Join(dir, "data")
	base := []string{"--config-file", filepath.Join(dir, "empty.conf"), "--data", data}
	if code, _, e := run(t, nil, append(base, "adduser", "--clients", "alice", "pw")...); code != 0 {
		t.Fatal(e)
	}
	_, tok, _ := run(t, nil, append(base, "token", "alice")...)
	tok = strings.TrimSpace(tok)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := testenv.HelperCommand(asMain, "")
	cmd.Args = append([]string{os.Args[0]}, append(base, "serve", "--listen", addr, "--prefix", "/k/")...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	defer func() {
		if t.Failed() {
			t.Logf("the server's log:\n%s", logs.String())
		}
	}()
	var st map[string]any
	testenv.WaitFor(t, 10*time.Second, "the server comes up", func() bool {
		req, _ := http.NewRequest("GET", "http://"+addr+"/k/settings/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&st) == nil
	})
	if st["status"] != "OK" || st["blob_hash_algorithm"] != "sha256" {
		t.Errorf("settings: %v", st)
	}
	for _, f := range []string{"kolejka.sqlite3", "blobs"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Errorf("data folder lacks %s: %v", f, err)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve exited with %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if !strings.Contains(logs.String(), "route=/settings/") {
		t.Errorf("no access log line in:\n%s", logs.String())
	}
}

// The blob store's keys come from kolejka.conf like the others; config
// shows where blobs are but never the secret key.
func TestConfigBlobsKeys(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "kolejka.conf")
	os.WriteFile(conf, []byte("[server]\ndata = "+dir+"/data\nblobs = s3://kolejka-blobs?endpoint=http://127.0.0.1:9&region=eu-west-1\nblobs_access_key = AKEY\nblobs_secret_key = very-secret\nblobs_grace = 2H\n"), 0o644)
	code, out, stderr := run(t, nil, "--config-file", conf, "config")
	if code != 0 {
		t.Fatalf("config: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"blobs = s3://kolejka-blobs?endpoint=http://127.0.0.1:9&region=eu-west-1\n", "blobs_access_key = AKEY\n",
		"blobs_secret_key = (set, not shown)\n", "blobs_grace = 7200.0s\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("config lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "very-secret") {
		t.Errorf("config prints the secret key:\n%s", out)
	}
}

// serve with a blob store it cannot reach stops at once with a
// configuration error (exit 2; cliexit prints the one line to the process's
// stderr, which the server's tests check), creating no data folder.
func TestServeUnreachableBlobs(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "empty.conf"), nil, 0o644)
	data := filepath.Join(dir, "data")
	code, _, _ := run(t, nil, "--config-file", filepath.Join(dir, "empty.conf"), "--data", data, "serve", "--listen", "127.0.0.1:0",
		"--blobs", "s3://kolejka-blobs?endpoint=http://127.0.0.1:1", "--blobs-access-key", "k", "--blobs-secret-key", "s")
	if code != 2 {
		t.Errorf("serve: exit %d, want 2", code)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("the data folder was created (%v)", err)
	}
}
