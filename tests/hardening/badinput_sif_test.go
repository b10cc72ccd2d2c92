package hardening_test

// SIF (Singularity / Apptainer) files given to `kolejka-worker image
// import`, the binary: broken and hostile ones are refused with an error
// naming the file and the problem, the image store keeps no name, content
// or leftover, and nothing is written outside it.

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/apptainer/sif/v2/pkg/sif"

	"github.com/kolejka-go/kolejka/tests/hardening"
	"github.com/kolejka-go/kolejka/worker/image"
	"github.com/kolejka-go/kolejka/worker/image/siftest"
)

func TestBadInputSIF(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(bins(t), "kolejka-worker")
	siftest.RequireTools(t)
	small := t.TempDir()
	os.MkdirAll(filepath.Join(small, "etc"), 0o755)
	os.WriteFile(filepath.Join(small, "etc", "hostname"), []byte("box\n"), 0o644)
	good := siftest.Squashfs(t, small)
	big := t.TempDir()
	os.WriteFile(filepath.Join(big, "text"), bytes.Repeat([]byte("some text to compress\n"), 5000), 0o644)
	text := siftest.Squashfs(t, big)
	outside := t.TempDir() // where the hostile images aim

	garbled := func(b []byte, from, to int) []byte {
		b = bytes.Clone(b)
		for i := from; i < to; i++ {
			b[i] = byte(i*7 + 3)
		}
		return b
	}
	cases := []struct {
		id, name, expect string
		objs             func(t *testing.T) []siftest.Object
		cut              int // bytes cut off the end of the file
		want             []string
	}{
		{"BI10", "SIF: no root partition (only a generic data object)", "refused naming the file and the missing primary system partition; store unchanged",
			func(t *testing.T) []siftest.Object {
				return []siftest.Object{{Type: sif.DataGeneric, Data: []byte("just data")}}
			}, 0, []string{"no primary system partition"}},
		{"BI11", "SIF: the root partition is ext3, not squashfs", "refused naming the partition's file system; store unchanged",
			func(t *testing.T) []siftest.Object {
				return []siftest.Object{{Type: sif.DataPartition, Data: good, FS: sif.FsExt3, Part: sif.PartPrimSys}}
			}, 0, []string{"is Ext3, not squashfs"}},
		{"BI12", "SIF: truncated inside the root partition", "refused: the partition lies past the end of the file; store unchanged",
			func(t *testing.T) []siftest.Object { return []siftest.Object{siftest.RootPartition(good)} },
			len(good) / 2, []string{"past the end of the", "truncated"}},
		{"BI13", "SIF: the squashfs's tables are garbage", "refused: the squashfs is unreadable (unsquashfs's reason); store unchanged",
			func(t *testing.T) []siftest.Object {
				return []siftest.Object{siftest.RootPartition(garbled(good, 96, len(good)))}
			}, 0, []string{"squashfs root partition is unreadable"}},
		{"BI14", "SIF: a file's compressed data in the squashfs is garbage", "refused while extracting; no half image kept",
			func(t *testing.T) []siftest.Object {
				return []siftest.Object{siftest.RootPartition(garbled(text, 96, int(binary.LittleEndian.Uint64(text[64:]))))}
			}, 0, []string{"unable to extract the squashfs root partition"}},
		{"BI15", "SIF: a squashfs entry named ../../../../pwn1", "refused (invalid name) before anything is extracted; nothing written outside",
			func(t *testing.T) []siftest.Object {
				sq := siftest.Hostile(t, func(root string) {
					os.WriteFile(filepath.Join(root, "PLACEHOLDERxxxxx"), []byte("escaped\n"), 0o644)
				}, "PLACEHOLDERxxxxx", "../../../../pwn1")
				return []siftest.Object{siftest.RootPartition(sq)}
			}, 0, []string{"invalid characters in name"}},
		{"BI16", "SIF: a symlink to a host folder, then a folder of the same name with a file in it", "refused (duplicate names) before anything is extracted; nothing written through the link",
			func(t *testing.T) []siftest.Object {
				sq := siftest.Hostile(t, func(root string) {
					os.Symlink(outside, filepath.Join(root, "LINKxx"))
					os.MkdirAll(filepath.Join(root, "DIRxxx"), 0o755)
					os.WriteFile(filepath.Join(root, "DIRxxx", "pwn2"), []byte("escaped\n"), 0o644)
				}, "DIRxxx", "LINKxx")
				return []siftest.Object{siftest.RootPartition(sq)}
			}, 0, []string{"duplicate names"}},
		{"BI17", "SIF: the root partition is for another CPU", "refused naming both architectures; store unchanged",
			func(t *testing.T) []siftest.Object {
				o := siftest.RootPartition(good)
				o.Arch = siftest.OtherArch()
				return []siftest.Object{o}
			}, 0, []string{"the root partition is for " + siftest.OtherArch(), "this machine is"}},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			r := caseOf(t, hardening.BadInput, c.id, c.name, c.expect)
			dir := t.TempDir()
			p := siftest.Write(t, filepath.Join(dir, "bad.sif"), c.objs(t)...)
			if c.cut > 0 {
				b, _ := os.ReadFile(p)
				os.WriteFile(p, b[:len(b)-c.cut], 0o644)
			}
			store := filepath.Join(dir, "images")
			conf := filepath.Join(dir, "kolejka.conf")
			os.WriteFile(conf, []byte("[worker]\nimages = "+store+"\n"), 0o644)
			out, err := exec.Command(bin, "--config-file", conf, "image", "import", "bad:sif", p).CombinedOutput()
			r.Observe("%s", bytes.TrimSpace(out))
			if err == nil {
				t.Fatalf("imported: %s", out)
			}
			checkFragments(t, string(out), append([]string{p}, c.want...))
			s, err := image.Open(store)
			if err != nil {
				t.Fatal(err)
			}
			if imgs, err := s.List(); err != nil || len(imgs) != 0 {
				t.Errorf("the store lists %d images (%v), want none", len(imgs), err)
			}
			for _, sub := range []string{"content", "tmp"} {
				if entries, _ := os.ReadDir(filepath.Join(store, sub)); len(entries) > 0 {
					t.Errorf("left in %s/: %d entries", sub, len(entries))
				}
			}
			for _, escaped := range []string{filepath.Join(dir, "pwn1"), filepath.Join(store, "pwn1"), filepath.Join(outside, "pwn2")} {
				if _, err := os.Lstat(escaped); err == nil {
					t.Errorf("the import wrote %s", escaped)
				}
			}
			r.Observe("store empty; nothing written outside it")
		})
	}
}
