package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/worker/image"
)

// The first run of a task whose image the node lacks, fetched from the
// server (issue 20): `kolejka-client execute` of the trivial task on a
// one-node grid whose store is emptied (the image removed, its content
// collected) before each run, so that every run fetches the image and
// unpacks it. Baselines in the same run: the same command with the image
// in place (the difference is what the fetch and import cost), an import
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
	execute := func(i int) {
		dir := filepath.Join(b.TempDir(), fmt.Sprint("r", i))
		if _, errOut, code := g.KolejkaClient(ctx, "execute", task, dir); code != 0 {
			b.Fatalf("execute: exit %d: %s", code, errOut)
		}
	}
	empty := func() {
		if err := st.Remove(gridtest.TestImage); err != nil {
			b.Fatal(err)
		}
		if err := st.GC(); err != nil {
			b.Fatal(err)
		}
	}
	execute(-1) // warm: page cache, connections
	n := max(b.N, 10)
	b.ResetTimer()
	cold := timed(b, n, func(i int) {
		b.StopTimer()
		empty()
		b.StartTimer()
		execute(i)
	})
	b.StopTimer()
	if fetched := len(gridtest.LogLines(g.Nodes["a"].Log, "image fetched from the server")); fetched != n+1 {
		b.Fatalf("the node fetched the image %d times, want %d", fetched, n+1)
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
	b.ReportMetric(ms(percentile(warm, 0.5)), "warm-p50-ms")
	b.ReportMetric(ms(percentile(local, 0.5)), "import-p50-ms")
	b.ReportMetric(ms(percentile(copied, 0.5)), "skopeo-p50-ms")
	b.Logf("%d runs: execute, image fetched from the server p50 %.1f ms p90 %.1f ms; image in place p50 %.1f ms; "+
		"local import of the archive p50 %.1f ms; skopeo copy docker-archive: → oci: p50 %.1f ms p90 %.1f ms",
		n, ms(percentile(cold, 0.5)), ms(percentile(cold, 0.9)), ms(percentile(warm, 0.5)),
		ms(percentile(local, 0.5)), ms(percentile(copied, 0.5)), ms(percentile(copied, 0.9)))
}
