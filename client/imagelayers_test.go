package client

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

// The test image's docker save tar and OCI layout split into manifest,
// config and layers, the manifest made for docker save naming each blob by
// its digest and size, the config the same in both; a root filesystem tar and a file that is no tar are not
// split (pushed whole).
func TestSplitImage(t *testing.T) {
	img := testenv.TestImage(t)
	docker, ok, err := splitImage(filepath.Join(img, "docker-save.tar"), t.TempDir())
	if err != nil || !ok || len(docker) != 3 {
		t.Fatalf("docker save: %v %v %v", docker, ok, err)
	}
	var m ocispec.Manifest
	data, err := os.ReadFile(docker[0].path)
	if err != nil || json.Unmarshal(data, &m) != nil {
		t.Fatalf("the made manifest %q: %v", data, err)
	}
	for i, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		sum, size, err := HashFile(docker[i+1].path)
		if err != nil || "sha256:"+sum != string(d.Digest) || size != d.Size {
			t.Errorf("blob %d: %s %d (%v), the manifest says %s %d", i+1, sum, size, err, d.Digest, d.Size)
		}
	}
	if m.Layers[0].MediaType != ocispec.MediaTypeImageLayer || m.Config.MediaType != ocispec.MediaTypeImageConfig {
		t.Errorf("media types %s %s", m.Config.MediaType, m.Layers[0].MediaType)
	}

	oci, ok, err := splitImage(filepath.Join(img, "oci"), t.TempDir())
	if err != nil || !ok || len(oci) < 3 {
		t.Fatalf("OCI layout: %v %v %v", oci, ok, err)
	}
	// The layout's layer is compressed (skopeo's), the config the same.
	a, _, _ := HashFile(docker[1].path)
	b, _, _ := HashFile(oci[1].path)
	if a != b {
		t.Errorf("the configs of docker save and OCI layout differ: %s %s", docker[1].path, oci[1].path)
	}

	for _, whole := range []string{filepath.Join(img, "rootfs.tar"), filepath.Join(img, "oci", "index.json")} {
		if blobs, ok, err := splitImage(whole, t.TempDir()); ok || err != nil {
			t.Errorf("%s split: %v %v", whole, blobs, err)
		}
	}
}
