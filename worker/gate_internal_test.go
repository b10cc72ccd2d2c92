package worker

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// An interrupted run stops waiting for kolejka-init at once, whether init
// never connects or connects and never reports (stopped, starved): the
// wait ends with the interruption as its cause, not at the gate's 30 s
// deadline (hardening F20 saw 30 s runs when SIGSTOP came before the
// report).
func TestGateWaitEndsWhenInterrupted(t *testing.T) {
	for _, connect := range []bool{false, true} {
		g, err := newGate(filepath.Join(t.TempDir(), "gate"))
		if err != nil {
			t.Fatal(err)
		}
		if connect {
			c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: filepath.Join(g.dir, gateSocket), Net: "unixpacket"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close() // connected, silent: a stopped kolejka-init
		}
		ctx, cancel := context.WithTimeout(context.Background(), gateTimeout)
		interrupted := errors.New("interrupted")
		ictx, interrupt := context.WithCancelCause(ctx)
		time.AfterFunc(100*time.Millisecond, func() { interrupt(interrupted) })
		start := time.Now()
		_, err = g.wait(ictx, make(chan struct{}))
		took := time.Since(start)
		cancel()
		if !errors.Is(err, interrupted) || took > 5*time.Second {
			t.Errorf("connected %v: wait returned %v after %v; want the interruption within moments", connect, err, took)
		}
		g.ln.Close()
		g.dirf.Close()
	}
}
