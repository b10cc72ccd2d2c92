package server_test

import (
	"net/url"
	"slices"
	"testing"
)

// pushImage posts an image whose manifest names blob ref with digest and
// size.
func pushImage(c *tokenClient, name, ref, digest string, size int) answer {
	c.t.Helper()
	return c.postJSON("/image/", map[string]any{"name": name, "manifest": map[string]any{
		"kind": "archive", "blobs": []any{map[string]any{"reference": ref, "digest": digest, "size": size}}}})
}

func TestImagePushListReadRemove(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	alice, bob, node, max := e.tok("alice"), e.tok("bob"), e.tok("node"), e.tok("max")
	st := mustOK(t, alice.do("GET", "/settings/", nil))
	if !slices.Contains(st.json["extensions"].([]any), any("images")) {
		t.Errorf("extensions %v lack images", st.json["extensions"])
	}
	data := []byte("pretend this is a docker save tar")
	ref := alice.upload(data)
	digest := "sha256:" + sha(data)
	a := mustOK(t, pushImage(alice, "kolejka-test:latest", ref, digest, len(data)))
	const full = "docker.io/library/kolejka-test:latest"
	if a.json["name"] != full {
		t.Fatalf("pushed as %v, want %s", a.json["name"], full)
	}

	// Refusals name the field and the problem, and store nothing.
	before := e.count("images")
	other := []byte("other bytes")
	bobRef := bob.upload(other)
	wantFail(t, pushImage(alice, "t1", ref, "sha256:"+sha(other), len(data)), "manifest.blobs[0]", "not the manifest's digest")
	wantFail(t, pushImage(alice, "t2", ref, digest, len(data)+1), "manifest.blobs[0]", "not the manifest's size")
	wantFail(t, pushImage(alice, "t3", bobRef, "sha256:"+sha(other), len(other)), "manifest.blobs[0]", "belongs to another user")
	wantFail(t, pushImage(alice, "t4", "nosuchref", digest, len(data)), "manifest.blobs[0]", "is unknown")
	wantFail(t, pushImage(alice, "Bad::Name", ref, digest, len(data)), "image: name:", "Bad::Name")
	wantFail(t, pushImage(alice, "t5", ref, "md5:abc", len(data)), "blobs[0].digest", "md5:abc")
	wantFail(t, alice.postJSON("/image/", map[string]any{"name": "t6", "manifest": map[string]any{"kind": "layers", "blobs": []any{}}}),
		"manifest: kind", "layers")
	wantFail(t, alice.do("POST", "/image/", []byte(`{"name": "t7", "typo": 1}`)), "image:", "typo")
	oneBlob := []any{map[string]any{"reference": ref, "digest": digest, "size": len(data)}}
	wantFail(t, alice.postJSON("/image/", map[string]any{"name": "t8", "manifest": map[string]any{"kind": "oci", "blobs": oneBlob}}),
		"manifest: blobs", "not 1 blobs")
	twoBlobs := append(oneBlob, map[string]any{"reference": bobRef, "digest": "sha256:" + sha(other), "size": len(other)})
	wantFail(t, alice.postJSON("/image/", map[string]any{"name": "t9", "manifest": map[string]any{"kind": "oci", "blobs": twoBlobs}}),
		"manifest.blobs[1]", "belongs to another user")
	wantFail(t, pushImage(bob, "kolejka-test", bobRef, "sha256:"+sha(other), len(other)), "name", "belongs to user alice")
	if a := pushImage(node, "n", ref, digest, len(data)); a.code != 403 {
		t.Errorf("a processor's push: %v", a)
	}
	if e.count("images") != before {
		t.Errorf("refused pushes stored images: %d → %d", before, e.count("images"))
	}

	// Every signed-in user lists images and reads manifests; a name with
	// a registry and a path travels path-escaped.
	slashed := "registry.example:5000/team/x:1"
	mustOK(t, pushImage(alice, slashed, ref, digest, len(data)))
	list := mustOK(t, bob.do("GET", "/image/", nil)).json["images"].([]any)
	if len(list) != 2 || list[0].(map[string]any)["name"] != full || list[0].(map[string]any)["owner"] != "alice" ||
		list[0].(map[string]any)["size"] != float64(len(data)) {
		t.Fatalf("bob lists %v", list)
	}
	got := mustOK(t, node.do("GET", "/image/"+url.PathEscape(slashed)+"/", nil))
	blobs := got.json["manifest"].(map[string]any)["blobs"].([]any)
	if len(blobs) != 1 || blobs[0].(map[string]any)["reference"] != ref || blobs[0].(map[string]any)["digest"] != digest {
		t.Fatalf("manifest %v", got.json)
	}
	if a := node.do("GET", "/image/nosuch/", nil); a.code != 404 {
		t.Errorf("an unknown image: %v", a)
	}

	// A node reads an image's blob (any task may name it); another client
	// does not.
	if a := node.do("GET", "/blob/reference/"+ref+"/", nil); a.code != 200 || string(a.body) != string(data) {
		t.Errorf("node reads the image's blob: %d %q", a.code, a.body)
	}
	if a := bob.do("GET", "/blob/reference/"+ref+"/", nil); a.code != 403 {
		t.Errorf("bob reads alice's image blob: %v", a)
	}
	if a := node.do("DELETE", "/blob/reference/"+ref+"/", nil); a.code != 403 {
		t.Errorf("node deletes an image's blob: %v", a)
	}

	// The blob stays while an image uses it.
	wantFail(t, alice.do("DELETE", "/blob/reference/"+ref+"/", nil), "blob of image")
	if a := bob.do("DELETE", "/image/kolejka-test/", nil); a.code != 403 {
		t.Errorf("bob removes alice's image: %v", a)
	}
	mustOK(t, alice.do("DELETE", "/image/kolejka-test:latest/", nil))
	mustOK(t, max.do("DELETE", "/image/"+url.PathEscape(slashed)+"/", nil))
	if a := alice.do("GET", "/image/kolejka-test/", nil); a.code != 404 {
		t.Errorf("a removed image: %v", a)
	}
	mustOK(t, alice.do("DELETE", "/blob/reference/"+ref+"/", nil))
}

// TestImageRepush: the owner's second push replaces the manifest, and the
// old blob is free again.
func TestImageRepush(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	alice := e.tok("alice")
	one, two := []byte("first archive"), []byte("second archive")
	r1, r2 := alice.upload(one), alice.upload(two)
	mustOK(t, pushImage(alice, "x", r1, "sha256:"+sha(one), len(one)))
	mustOK(t, pushImage(alice, "x", r2, "sha256:"+sha(two), len(two)))
	got := mustOK(t, alice.do("GET", "/image/x/", nil))
	if b := got.json["manifest"].(map[string]any)["blobs"].([]any)[0].(map[string]any); b["reference"] != r2 {
		t.Fatalf("after the second push: %v", b)
	}
	if e.count("images") != 1 || e.count("image_files") != 1 {
		t.Errorf("images %d, image_files %d", e.count("images"), e.count("image_files"))
	}
	mustOK(t, alice.do("DELETE", "/blob/reference/"+r1+"/", nil))
	wantFail(t, alice.do("DELETE", "/blob/reference/"+r2+"/", nil), "blob of image")
}
