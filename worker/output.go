package worker

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
)

// capture copies one of the task's output streams from a pipe into a result
// file, up to limit bytes. Past the limit it keeps only the first limit
// bytes, calls onExceed once (the worker kills the task: OLE) and drains the
// pipe to EOF so that no writer blocks on a full pipe meanwhile.
type capture struct {
	r        *os.File // the pipe's read end
	w        *os.File // the pipe's write end, handed to the container
	file     *os.File
	limit    int64 // < 0: unlimited
	exceeded atomic.Bool
	done     chan error
}

func newCapture(path string, limit int64) (*capture, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("unable to create %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("unable to create %s: %w", path, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("unable to create a pipe: %w", err)
	}
	return &capture{r: r, w: w, file: f, limit: limit, done: make(chan error, 1)}, nil
}

func (c *capture) start(onExceed func()) {
	go func() { c.done <- c.copy(onExceed) }()
}

func (c *capture) copy(onExceed func()) error {
	var err error
	if c.limit < 0 {
		_, err = io.Copy(c.file, c.r)
	} else {
		// One byte more than allowed tells "exactly at the limit" from "past it".
		var n int64
		n, err = io.CopyN(c.file, c.r, c.limit+1)
		if n > c.limit {
			c.exceeded.Store(true)
			onExceed()
			// CopyN copied all it was asked for, so err is nil here; a
			// failed Truncate leaves the file over the limit, and says so.
			if terr := c.file.Truncate(c.limit); terr != nil {
				err = fmt.Errorf("unable to cut %s to the output limit: %w", c.file.Name(), terr)
			}
			_, _ = io.Copy(io.Discard, c.r)
		} else if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	if cerr := c.file.Close(); err == nil {
		err = cerr
	}
	c.r.Close()
	return err
}

// closeWriter drops our copy of the write end once the container holds it,
// so EOF comes when the last task process is gone.
func (c *capture) closeWriter() {
	if c.w != nil {
		c.w.Close()
		c.w = nil
	}
}

// wait returns when the stream has reached EOF and the file is closed.
func (c *capture) wait() error { return <-c.done }

// abort releases a capture that was never started.
func (c *capture) abort() {
	c.closeWriter()
	c.r.Close()
	c.file.Close()
}
