package hardening_test

// Images through the server (/image/, extension "images", issue 20): a bad
// push is refused naming the field and the problem, and nothing changes —
// every row, the blob files and the temp files are the same before and
// after; on a grid, a node given a corrupted blob or an archive that is no
// image refuses it and stores nothing.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/tests/hardening"
	"github.com/kolejka-go/kolejka/worker/image"
)

func TestBadInputImagesServer(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	alice, bob, node := s.bearer("alice"), s.bearer("bob"), s.bearer("node")
	push := func(c *apiClient, name, ref, digest string, size int) answer {
		body, _ := json.Marshal(map[string]any{"name": name, "manifest": map[string]any{
			"kind": "archive", "blobs": []any{map[string]any{"reference": ref, "digest": digest, "size": size}}}})
		return c.do(t, "POST", "/image/", body)
	}
	data := []byte("an image archive")
	ref, _ := alice.upload(t, data)
	digest := "sha256:" + sha256Hex(bytes.NewReader(data))
	if a := push(alice, "mine:1", ref, digest, len(data)); a.status() != "OK" {
		t.Fatalf("push: %v", a)
	}
	other := []byte("bob's bytes")
	bobRef, _ := bob.upload(t, other)
	check := func(t *testing.T, r *hardening.Row, send func() answer, code int, status string, want []string) {
		t.Helper()
		unchanged(t, s, r, send, code, status, want)
	}

	t.Run("BI20", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BI20", "image push: a manifest whose digest is not its blob's",
			"FAIL naming manifest.blobs[0], the blob's digest and the manifest's; nothing stored")
		check(t, r, func() answer { return push(alice, "x:1", ref, "sha256:"+sha256Hex(bytes.NewReader(other)), len(data)) }, 200, "FAIL",
			[]string{"manifest.blobs[0]", sha256Hex(bytes.NewReader(data)), "not the manifest's digest"})
	})
	t.Run("BI21", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BI21", "image push: a manifest whose size is not its blob's",
			"FAIL naming manifest.blobs[0] and both sizes; nothing stored")
		check(t, r, func() answer { return push(alice, "x:1", ref, digest, len(data)+7) }, 200, "FAIL",
			[]string{"manifest.blobs[0]", "not the manifest's size"})
	})
	t.Run("BI22", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BI22", "image push: a manifest naming a blob the user may not read (another user's reference; an unknown one)",
			"FAIL naming manifest.blobs[0] and why; nothing stored")
		check(t, r, func() answer {
			return push(alice, "x:1", bobRef, "sha256:"+sha256Hex(bytes.NewReader(other)), len(other))
		}, 200, "FAIL",
			[]string{"manifest.blobs[0]", "belongs to another user"})
		check(t, r, func() answer { return push(alice, "x:1", "0123456789abcdef", digest, len(data)) }, 200, "FAIL",
			[]string{"manifest.blobs[0]", "is unknown"})
	})
	t.Run("BI23", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BI23", "image push: a name that is not an image name (Bad::Name, empty)",
			"FAIL naming name and the name; nothing stored")
		check(t, r, func() answer { return push(alice, "Bad::Name", ref, digest, len(data)) }, 200, "FAIL", []string{"name", "Bad::Name"})
		check(t, r, func() answer { return push(alice, "", ref, digest, len(data)) }, 200, "FAIL", []string{"name"})
	})
	t.Run("BI24", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BI24", "image push: a malformed manifest (unknown kind, two blobs, no sha256 digest, unknown key)",
			"FAIL naming the field; nothing stored")
		raw := func(body string) func() answer {
			return func() answer { return alice.do(t, "POST", "/image/", []byte(body)) }
		}
		check(t, r, raw(`{"name": "x", "manifest": {"kind": "layers", "blobs": []}}`), 200, "FAIL", []string{"manifest: kind", "layers"})
		check(t, r, raw(`{"name": "x", "manifest": {"kind": "archive", "blobs": [{"reference": "`+ref+`", "digest": "`+digest+`", "size": 1}, {"reference": "`+ref+`", "digest": "`+digest+`", "size": 1}]}}`),
			200, "FAIL", []string{"manifest: blobs", "exactly one blob"})
		check(t, r, raw(`{"name": "x", "manifest": {"kind": "archive", "blobs": [{"reference": "`+ref+`", "digest": "md5:00", "size": 1}]}}`),
			200, "FAIL", []string{"blobs[0].digest", "md5:00"})
		check(t, r, raw(`{"name": "x", "manifest": {"kind": "archive", "blobs": []}, "layers": 1}`), 200, "FAIL", []string{"layers"})
	})
	t.Run("BI25", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BI25", "image: another user's image pushed over or removed; a node pushes",
			"FAIL naming the owner; 403 for the removal and the node; nothing stored or removed")
		check(t, r, func() answer {
			return push(bob, "mine:1", bobRef, "sha256:"+sha256Hex(bytes.NewReader(other)), len(other))
		}, 200, "FAIL",
			[]string{"name", "belongs to user alice"})
		check(t, r, func() answer { return bob.do(t, "DELETE", "/image/mine:1/", nil) }, 403, "", []string{"owner or a manager"})
		check(t, r, func() answer { return push(node, "n:1", ref, digest, len(data)) }, 403, "", []string{"only clients"})
	})
	t.Run("BI26", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BI26", "image: the blob of an image deleted by its owner while the image uses it",
			"FAIL naming the image; the reference and blob stay")
		check(t, r, func() answer { return alice.do(t, "DELETE", "/blob/reference/"+ref+"/", nil) }, 200, "FAIL",
			[]string{"blob of image", "docker.io/library/mine:1"})
	})
}

// On a grid whose node has no image: a blob corrupted on the server, and
// an archive that is no image, are refused by the node (SE), its image
// store left empty.
func TestBadInputImagesNode(t *testing.T) {
	g := newGrid(t, "", "")
	store := t.TempDir()
	g.NodeImages["a"] = store
	g.startForeman("a")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := func(t *testing.T, r *hardening.Row, name, logWant string) {
		t.Helper()
		dir := gridtest.WriteTask(t, `{"image": "`+name+`", "args": ["true"], "limits": {"time": "10s"}, "requires": ["node:a"]}`)
		key := g.Put(dir)
		st, res, err := g.waitResult(key, time.Minute)
		if err != nil {
			t.Fatalf("the task's result: %v", err)
		}
		r.Observe("task %s: %s", st, res.Status)
		if res.Status != spec.StatusSE {
			t.Errorf("status %s, want SE", res.Status)
		}
		lines := gridtest.LogLines(g.Nodes["a"].Log, logWant)
		if len(lines) == 0 {
			t.Errorf("the node's log does not say %q:\n%s", logWant, gridtest.Tail(g.Nodes["a"].Log))
		} else {
			r.Observe("node: %s", short(lines[0], 300))
		}
		st2, err := image.Open(store)
		if err != nil {
			t.Fatal(err)
		}
		imgs, err := st2.List()
		if err != nil || len(imgs) != 0 {
			t.Errorf("the node's store holds %v (%v), want nothing", imgs, err)
		}
		tmp, _ := os.ReadDir(filepath.Join(store, "tmp"))
		r.Observe("node store: %d images, %d temp entries", len(imgs), len(tmp))
		if len(tmp) != 0 {
			t.Errorf("the node's store keeps temp entries %v", tmp)
		}
	}

	t.Run("BI27", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BI27", "image fetch: the image's blob corrupted on the server after the push",
			"the node refuses it (hash mismatch): SE, its log naming the image; nothing imported")
		archive := filepath.Join(testenv.TestImage(t), "rootfs.tar")
		if _, errOut, code := g.KolejkaClient(ctx, "image", "push", "corrupt:1", archive); code != 0 {
			t.Fatalf("image push: %d %s", code, errOut)
		}
		data, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		hash := sha256Hex(bytes.NewReader(data))
		blob := filepath.Join(g.Data, server.BlobsDir, hash[:2], hash[2:4], hash)
		f, err := os.OpenFile(blob, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("CORRUPT"), 4096); err != nil {
			t.Fatal(err)
		}
		f.Close()
		run(t, r, "corrupt:1", "unable to fetch image docker.io/library/corrupt:1")
	})
	t.Run("BI28", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BI28", "image fetch: a pushed file that is no image (text)",
			"the node's import refuses it: SE, its log naming the image and the problem; nothing imported")
		junk := filepath.Join(t.TempDir(), "junk.tar")
		if err := os.WriteFile(junk, []byte(strings.Repeat("not a tar\n", 100)), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, errOut, code := g.KolejkaClient(ctx, "image", "push", "junk:1", junk); code != 0 {
			t.Fatalf("image push: %d %s", code, errOut)
		}
		run(t, r, "junk:1", "unable to import image docker.io/library/junk:1")
	})
	t.Run("BI29", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BI29", "image fetch: an oci manifest whose blobs are no image (its image manifest names a layer it does not list)",
			"the node's import of the assembled layout refuses it: SE, its log naming the image; nothing imported")
		dir := t.TempDir()
		config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("a", 64) + `"]}}`)
		manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` +
			sha256Hex(bytes.NewReader(config)) + `","size":` + fmt.Sprint(len(config)) + `},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:` + strings.Repeat("b", 64) + `","size":10}]}`)
		var blobs []any
		for i, data := range [][]byte{manifest, config} {
			p := filepath.Join(dir, fmt.Sprint(i))
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			ref, err := g.Alice.BlobPut(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			blobs = append(blobs, map[string]any{"reference": ref.Key, "digest": "sha256:" + ref.Blob, "size": ref.Size})
		}
		body, _ := json.Marshal(map[string]any{"name": "broken:1", "manifest": map[string]any{"kind": "oci", "blobs": blobs}})
		req, _ := http.NewRequest("POST", "http://"+g.Addr+"/image/", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+g.Tokens["alice"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("push: HTTP %d", resp.StatusCode)
		}
		run(t, r, "broken:1", "unable to import image docker.io/library/broken:1")
	})
}
