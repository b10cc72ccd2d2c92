package image

// BenchmarkPullSharedBase: the pull of an image whose base layer the store
// already holds (from another image) against the pull of the same image
// into an empty store, from the loopback registry of registrytest.

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/worker/image/registrytest"
)

func BenchmarkPullSharedBase(b *testing.B) {
	r := registrytest.New(b)
	rng := rand.New(rand.NewPCG(1, 2))
	base := map[string]string{}
	for i := range 256 { // 32 MiB in 256 files, incompressible
		buf := make([]byte, 128<<10)
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		base[fmt.Sprintf("lib/f%03d", i)] = string(buf)
	}
	a := registrytest.Image(b, "linux", runtime.GOARCH, base, map[string]string{"which": "a"})
	bb := registrytest.Image(b, "linux", runtime.GOARCH, base, map[string]string{"which": "b"})
	r.Push(b, "a:1", a)
	r.Push(b, "b:1", bb)
	reg := testRegistry(b, RegistryConfig{Insecure: []string{r.Host}})
	var fresh, shared []float64
	var usage, sizes int64
	for range max(b.N, 5) {
		s, err := Open(filepath.Join(b.TempDir(), "images"))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		imgA, err := s.Pull(b.Context(), reg, r.Host+"/a:1")
		if err != nil {
			b.Fatal(err)
		}
		fresh = append(fresh, time.Since(start).Seconds()*1000)
		start = time.Now()
		imgB, err := s.Pull(b.Context(), reg, r.Host+"/b:1")
		if err != nil {
			b.Fatal(err)
		}
		shared = append(shared, time.Since(start).Seconds()*1000)
		if usage, err = s.DiskUsage(); err != nil {
			b.Fatal(err)
		}
		sizes = imgA.Size + imgB.Size
	}
	med := func(x []float64) float64 { slices.Sort(x); return x[len(x)/2] }
	b.ReportMetric(med(fresh), "fresh-pull-ms")
	b.ReportMetric(med(shared), "shared-base-pull-ms")
	b.ReportMetric(float64(usage)/(1<<20), "store-MiB")
	b.ReportMetric(float64(sizes)/(1<<20), "sum-of-sizes-MiB")
}
