package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/worker/image"
)

// The first run of a task whose image the node lacks, fetched from the
// server (issue 20): `kolejka-client execute` of the trivial task on a
// one-node grid whose store is emptied (the image removed, its content
// collected) and whose blob cache is emptied (the node restarted, outside
// the timing) before each run, so that every run fetches the image's blobs
// and unpacks them. Then the same with the blobs left in the node's cache
// (an image the budget evicted: the import alone). Baselines in the same
// run: the same command with the image in place (the difference is what
// the fetch and import cost), an import
// of the same archive from a local file into an empty store (package
// image, in this process: the unpack alone), and `skopeo copy` of the
// same docker save archive to an OCI folder.
func BenchmarkGridImageFromServer(b *testing.B) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		b.Skip("no skopeo")
	}
	g := newGrid(b)
	store := b.TempDir()
	g.NodeImages["a"] = store
	g.StartForeman("a", nil)
	ctx := context.Background()
	archive := filepath.Join(testenv.TestImage(b), "docker-save.tar")
	if _, errOut, code := g.KolejkaClient(ctx, "image", "push", gridtest.TestImage, archive); code != 0 {
		b.Fatalf("image push: exit %d: %s", code, errOut)
	}
	st, err := image.Open(store)
	if err != nil {
		b.Fatal(err)
	}
	task := gridtest.WriteTask(b, trivialTask)
	execute := func(int) { g.execute(b, task) }
	empty := func() {
		if err := st.Remove(gridtest.TestImage); err != nil {
			b.Fatal(err)
		}
		if err := st.GC(); err != nil {
			b.Fatal(err)
		}
	}
	node := g.Nodes["a"]
	// restart stops the node, empties its blob cache and starts it again,
	// so that nothing of the image is on the node.
	restart := func() {
		node.P.Signal(syscall.SIGTERM)
		if _, ok := node.P.Wait(30 * time.Second); !ok {
			b.Fatal("the foreman did not stop")
		}
		if err := os.RemoveAll(filepath.Join(node.Temp, "cache", "blobs")); err != nil {
			b.Fatal(err)
		}
		g.StartForeman("a", nil)
	}
	execute(-1) // warm: page cache, connections
	n := max(b.N, 10)
	b.ResetTimer()
	cold := timed(b, n, func(i int) {
		b.StopTimer()
		empty()
		restart()
		b.StartTimer()
		execute(i)
	})
	b.StopTimer()
	// The image evicted (the image budget) but its blobs in the node's
	// blob cache: the import alone.
	cached := timed(b, n, func(i int) {
		b.StopTimer()
		empty()
		b.StartTimer()
		execute(i)
	})
	// The log is appended across restarts: the warm-up and every cold run
	// fetched all three blobs, every cached run none.
	fetched := strings.Join(gridtest.LogLines(node.Log, "image fetched from the server"), "\n")
	if c0, c3 := strings.Count(fetched, "cached=0"), strings.Count(fetched, "cached=3"); c0 != n+1 || c3 != n {
		b.Fatalf("fetches with nothing cached %d (want %d), with all cached %d (want %d):\n%s", c0, n+1, c3, n, fetched)
	}
	warm := timed(b, n, execute)
	local := timed(b, n, func(i int) {
		ls, err := image.Open(filepath.Join(b.TempDir(), fmt.Sprint("s", i)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ls.Import(ctx, gridtest.TestImage, archive); err != nil {
			b.Fatal(err)
		}
	})
	copied := timed(b, n, func(i int) {
		dst := filepath.Join(b.TempDir(), fmt.Sprint("oci", i))
		cmd := exec.Command(skopeo, "copy", "--quiet", "docker-archive:"+archive, "oci:"+dst+":latest")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("skopeo copy: %v: %s", err, out)
		}
	})
	b.ReportMetric(ms(percentile(cold, 0.5)), "cold-p50-ms")
	b.ReportMetric(ms(percentile(cached, 0.5)), "cached-p50-ms")
	b.ReportMetric(ms(percentile(warm, 0.5)), "warm-p50-ms")
	b.ReportMetric(ms(percentile(local, 0.5)), "import-p50-ms")
	b.ReportMetric(ms(percentile(copied, 0.5)), "skopeo-p50-ms")
	b.Logf("%d runs: execute, image fetched from the server p50 %.1f ms p90 %.1f ms; its blobs in the node's cache p50 %.1f ms; image in place p50 %.1f ms; "+
		"local import of the archive p50 %.1f ms; skopeo copy docker-archive: → oci: p50 %.1f ms p90 %.1f ms",
		n, ms(percentile(cold, 0.5)), ms(percentile(cold, 0.9)), ms(percentile(cached, 0.5)), ms(percentile(warm, 0.5)),
		ms(percentile(local, 0.5)), ms(percentile(copied, 0.5)), ms(percentile(copied, 0.9)))
}
