package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// token makes (with an expiry), lists and revokes bearer tokens; passwd
// revokes them all.
func TestTokenCommands(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "kolejka.conf")
	os.WriteFile(conf, []byte("[server]\ntoken_age = 2D\n"), 0o644)
	t.Setenv("KOLEJKA_SERVER_CONFIG_FILE", conf)
	data := filepath.Join(dir, "data")
	must := func(want int, args ...string) (string, string) {
		t.Helper()
		code, out, errOut := run(t, nil, append([]string{"--data", data}, args...)...)
		if code != want {
			t.Fatalf("%v: exit %d, want %d; stdout %q stderr %q", args, code, want, out, errOut)
		}
		return out, errOut
	}
	row := func(list, token string) []string {
		for _, l := range strings.Split(list, "\n") {
			f := strings.Fields(l)
			if len(f) == 6 && strings.HasPrefix(token, strings.TrimSuffix(f[1], "…")) {
				return f
			}
		}
		return nil
	}
	must(0, "adduser", "--clients", "alice", "pw")
	t1, _ := must(0, "token", "alice")
	t2, _ := must(0, "token", "create", "--age", "1W", "alice")
	t3, _ := must(0, "token", "alice")
	t1, t2, t3 = strings.TrimSpace(t1), strings.TrimSpace(t2), strings.TrimSpace(t3)
	list, _ := must(0, "token", "list", "alice")
	r1, r2 := row(list, t1), row(list, t2)
	if r1 == nil || r2 == nil || row(list, t3) == nil || strings.Count(list, "\n") != 4 {
		t.Fatalf("list:\n%s", list)
	}
	// token_age from kolejka.conf, --age on the command line.
	if !strings.HasPrefix(r1[3], dayAfter(r1[2], 2)) || !strings.HasPrefix(r2[3], dayAfter(r2[2], 7)) {
		t.Errorf("expiries: %v, %v; want 2 and 7 days after creation", r1, r2)
	}
	if r1[4] != "-" {
		t.Errorf("an unused token shows last used %q", r1[4])
	}
	if r1[5] != "all" {
		t.Errorf("an unscoped token shows scope %q", r1[5])
	}
	hook, errOut := must(0, "token", "--trigger", "hook", "alice")
	if !strings.Contains(errOut, "only fire trigger:hook") {
		t.Errorf("a scoped token's note: %q", errOut)
	}
	list, _ = must(0, "token", "list", "alice")
	if r := row(list, strings.TrimSpace(hook)); r == nil || r[5] != "trigger:hook" {
		t.Errorf("the scoped token's row %v in\n%s", r, list)
	}
	must(0, "token", "revoke", "alice", strings.TrimSpace(hook))
	must(2, "token", "--trigger", "bad/name", "alice")
	must(2, "token", "--age", "0", "alice")
	must(2, "token", "list", "nobody")
	must(2, "token", "revoke", "alice", "000000000000")
	must(2, "token", "revoke", "alice")
	if out, _ := must(0, "token", "revoke", "alice", r1[0]); !strings.Contains(out, "Revoked 1 tokens") {
		t.Errorf("revoke by id: %q", out)
	}
	must(0, "token", "revoke", "alice", t2) // by the token itself
	list, _ = must(0, "token", "list", "alice")
	if row(list, t1) != nil || row(list, t2) != nil || row(list, t3) == nil {
		t.Fatalf("after revoking two:\n%s", list)
	}
	must(0, "token", "alice")
	if out, _ := must(0, "passwd", "alice", "new"); !strings.Contains(out, "2 bearer tokens revoked") {
		t.Errorf("passwd: %q", out)
	}
	if list, _ = must(0, "token", "list", "alice"); strings.Count(list, "\n") != 1 {
		t.Errorf("tokens left after passwd:\n%s", list)
	}
	must(0, "token", "alice")
	if out, _ := must(0, "token", "revoke", "--all", "alice"); !strings.Contains(out, "Revoked 1 tokens") {
		t.Errorf("revoke --all: %q", out)
	}
}

// dayAfter is the date part of an RFC 3339 time n days later.
func dayAfter(stamp string, n int) string {
	tm, err := time.Parse(time.RFC3339, stamp)
	if err != nil {
		return "unparsable " + stamp
	}
	return tm.AddDate(0, 0, n).Format("2006-01-02T15:04")
}
