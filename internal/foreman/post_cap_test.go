package foreman

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
)

// A result with more output files than the server stores in one result
// reaches the owner as OLE, with its exit code and stdout, instead of an
// SE; and the node leaves none of its uploads on the server.
func TestPostOverTheCapBecomesOLE(t *testing.T) {
	g := newGrid(t, func(c *server.Config) { c.MaxResultBody = 8 << 10 })
	key := g.submit(`{"image": "x", "args": ["true"], "stdout": "out"}`, nil)
	logs := &syncBuffer{}
	f, j := takeByHand(t, g, logs)
	res := okResult(t, j, "the program's output\n", 3)
	for i := range 300 {
		name := fmt.Sprintf("collected/%03d", i)
		os.MkdirAll(filepath.Join(j.resultDir(), "collected"), 0o755)
		if err := os.WriteFile(filepath.Join(j.resultDir(), name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		res.Files[name] = spec.File{Path: name}
	}
	f.post(j, res)
	r, dir := g.result(key, 5*time.Second)
	if r.Status != spec.StatusOLE || r.Result == nil || *r.Result != 3 || len(r.Files) != 1 {
		t.Fatalf("stored %s, exit %v, %d files; want OLE, exit 3, stdout only; log:\n%s", r.Status, r.Result, len(r.Files), logs)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "out")); string(data) != "the program's output\n" {
		t.Errorf("stdout %q", data)
	}
	if !strings.Contains(logs.String(), "over the server's size cap") {
		t.Errorf("log does not say why:\n%s", logs)
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(g.cfg.DataDir, server.DatabaseFile)+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var nodeRefs, refs int
	db.QueryRow(`SELECT COUNT(*) FROM refs r JOIN users u ON u.id = r.user_id WHERE u.name = 'node'`).Scan(&nodeRefs)
	db.QueryRow(`SELECT COUNT(*) FROM refs`).Scan(&refs)
	if nodeRefs != 0 || refs != 1 {
		t.Errorf("%d references of the node, %d in all; want 0 and 1 (the stored stdout, now alice's)", nodeRefs, refs)
	}
}
