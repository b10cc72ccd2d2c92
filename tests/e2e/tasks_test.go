package e2e

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/tasktest"
	"github.com/kolejka-go/kolejka/spec"
)

// Every example task of testdata/tasks, submitted at once with
// `kolejka-client execute` to a grid of two nodes (each pinned to its own
// core, as two machines would be), comes back with the verdict and outputs
// of its expected.json, from either node.
func TestGridRunsEveryTask(t *testing.T) {
	cases, err := tasktest.Cases()
	if err != nil {
		t.Fatal(err)
	}
	g := newGrid(t, "--lease", "5s")
	g.startForeman("a", pin(0))
	g.startForeman("b", pin(1))

	var mu sync.Mutex
	ranOn := map[string]int{}
	t.Run("tasks", func(t *testing.T) {
		for _, c := range cases {
			if !c.AppliesTo("runc") {
				continue
			}
			t.Run(c.Name, func(t *testing.T) {
				t.Parallel()
				resultDir := filepath.Join(t.TempDir(), "result")
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				_, errOut, code := g.KolejkaClient(ctx, "execute", c.Dir, resultDir)
				if code != 0 {
					t.Fatalf("kolejka-client execute: exit %d: %s", code, errOut)
				}
				res, err := spec.LoadResult(resultDir)
				if err != nil {
					t.Fatal(err)
				}
				for _, bad := range c.Check(resultDir, res, OutputLimit) {
					t.Error(bad)
				}
				for _, f := range res.Files {
					if f.Reference == "" {
						t.Errorf("result file %s has no reference: not from the server", f.Path)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				for _, tag := range res.Tags {
					if strings.HasPrefix(tag, "node:") {
						ranOn[tag]++
					}
				}
				if !slices.ContainsFunc(res.Tags, func(s string) bool { return strings.HasPrefix(s, "node:") }) {
					t.Errorf("result tags %v name no node", res.Tags)
				}
			})
		}
	})
	t.Logf("tasks per node: %v", ranOn)
	if len(ranOn) != 2 {
		t.Errorf("tasks ran on %v: both nodes should have taken some", ranOn)
	}
}
