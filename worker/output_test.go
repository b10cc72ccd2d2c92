package worker

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A capture past its limit keeps the first limit bytes; when its file cannot
// be cut back (/dev/null cannot be truncated: EINVAL), the output stays over
// the limit and wait must say so.
func TestCaptureOverItsLimit(t *testing.T) {
	run := func(t *testing.T, c *capture) error {
		t.Helper()
		exceeded := false
		c.start(func() { exceeded = true })
		if _, err := c.w.Write([]byte("0123456789")); err != nil {
			t.Fatal(err)
		}
		c.closeWriter()
		err := c.wait()
		if !exceeded || !c.exceeded.Load() {
			t.Error("10 bytes past a limit of 4 were not reported as exceeding it")
		}
		return err
	}
	t.Run("cut to the limit", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "stdout")
		c, err := newCapture(path, 4)
		if err != nil {
			t.Fatal(err)
		}
		if err := run(t, c); err != nil {
			t.Fatal(err)
		}
		if data, err := os.ReadFile(path); err != nil || string(data) != "0123" {
			t.Errorf("file holds %q (%v), want the first 4 bytes", data, err)
		}
	})
	t.Run("cannot be cut", func(t *testing.T) {
		c, err := newCapture(filepath.Join(t.TempDir(), "stdout"), 4)
		if err != nil {
			t.Fatal(err)
		}
		c.file.Close()
		if c.file, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0); err != nil {
			t.Fatal(err)
		}
		if err := run(t, c); !errors.Is(err, syscall.EINVAL) {
			t.Fatalf("wait returned %v, want the failed truncate (EINVAL)", err)
		}
	})
}
