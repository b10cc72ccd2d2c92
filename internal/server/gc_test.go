package server_test

import (
	"fmt"
	"sync"
	"testing"
)

// A blob goes when its last reference goes, not before.
func TestGarbageCollection(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	a, b := e.tok("alice"), e.tok("bob")
	data := []byte("shared content")
	r1 := a.upload(data)
	r2 := b.upload(data) // same bytes: one blob, two references
	if n := len(e.blobFiles()); n != 1 {
		t.Fatalf("%d blob files for one content", n)
	}
	mustOK(t, a.do("DELETE", "/blob/reference/"+r1+"/", nil))
	// bob's reference still holds it.
	if got := b.do("GET", "/blob/reference/"+r2+"/", nil); string(got.body) != string(data) {
		t.Fatalf("blob gone while referenced: %v", got)
	}
	mustOK(t, b.do("DELETE", "/blob/reference/"+r2+"/", nil))
	waitFor(t, "the blob to be collected", func() bool { return len(e.blobFiles()) == 0 && e.count("blobs") == 0 })
	// The dedup path no longer finds it.
	if got := a.do("POST", "/blob/blob/"+sha(data)+"/", nil); got.code != 404 {
		t.Errorf("dedup of a collected blob: %v", got)
	}
}

// The race the collector must not lose: uploads and dedups of a content
// whose last reference is being deleted. Every reference the server
// acknowledged must read back whole.
func TestGarbageCollectionRace(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	rounds := 150
	if testing.Short() {
		rounds = 40
	}
	var mu sync.Mutex
	kept := map[string][]byte{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.tok([]string{"alice", "bob", "node", "node2"}[w])
			for i := range rounds {
				data := []byte(fmt.Sprintf("content %d", i%5))
				ref := c.upload(data)
				// Delete it (the blob may become garbage) while others
				// dedup or upload the same content.
				if a := c.do("DELETE", "/blob/reference/"+ref+"/", nil); a.status() != "OK" {
					t.Errorf("delete: %v", a)
				}
				a := c.do("POST", "/blob/blob/"+sha(data)+"/", nil)
				switch a.code {
				case 200:
					ref = a.json["reference"].(map[string]any)["key"].(string)
				case 404:
					ref = c.upload(data)
				default:
					t.Errorf("dedup: %v", a)
					return
				}
				if got := c.do("GET", "/blob/reference/"+ref+"/", nil); string(got.body) != string(data) {
					t.Errorf("acknowledged reference %s reads %v", ref, got)
				}
				if i%3 == 0 {
					mu.Lock()
					kept[ref] = data
					mu.Unlock()
				} else {
					c.do("DELETE", "/blob/reference/"+ref+"/", nil)
				}
			}
		}()
	}
	wg.Wait()
	for ref, data := range kept {
		owner := ""
		for _, name := range []string{"alice", "bob", "node", "node2"} {
			if a := e.tok(name).do("GET", "/blob/reference/"+ref+"/", nil); a.code == 200 {
				owner = name
				if string(a.body) != string(data) {
					t.Errorf("reference %s reads %q, want %q", ref, a.body, data)
				}
			}
		}
		if owner == "" {
			t.Errorf("kept reference %s unreadable", ref)
		}
	}
	// Rows and files agree once the collector is done.
	waitFor(t, "rows and files to agree", func() bool { return e.count("blobs") == len(e.blobFiles()) })
}
