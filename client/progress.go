package client

import (
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// ProgressFunc wraps a transfer's reader to show its progress. size is -1
// when unknown.
type ProgressFunc func(desc string, size int64, r io.Reader) io.Reader

func (c *Client) progress(desc string, size int64, r io.Reader) io.Reader {
	if c.cfg.Progress == nil {
		return r
	}
	return c.cfg.Progress(desc, size, r)
}

// TerminalProgress draws progress bars on f when f is a terminal, and
// nothing otherwise (progressbar itself does not check, and would fill a
// log file with escape codes).
func TerminalProgress(f *os.File) ProgressFunc {
	if !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return func(desc string, size int64, r io.Reader) io.Reader {
		bar := progressbar.NewOptions64(size,
			progressbar.OptionSetWriter(f),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionShowBytes(true),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100_000_000),
		)
		pr := progressbar.NewReader(r, bar)
		return &pr
	}
}
