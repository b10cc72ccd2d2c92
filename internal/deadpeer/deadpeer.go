// Package deadpeer dials TCP connections that end when the peer goes
// silent: its host lost, its network cut without a reset. The kernel's
// defaults would keep such a connection for hours while idle (keepalive
// starts after 2 h) and about 15 min while it has data unacknowledged
// (retransmissions); a request over it would hang as long.
package deadpeer

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Dialer returns a dialer whose TCP connections send keepalive probes
// after idle without traffic, every interval, and give up after count
// unanswered; TCP_USER_TIMEOUT gives up on data unacknowledged for as
// long (idle + count×interval), and bounds the probes too: with both set,
// the kernel ends a probed connection by the user timeout. The peer's
// kernel answers probes whatever its process does, so a slow but live
// peer (a long poll) is never cut. Other networks (unix) are left alone.
func Dialer(connect, idle, interval time.Duration, count int) *net.Dialer {
	dead := idle + time.Duration(count)*interval
	return &net.Dialer{
		Timeout:         connect,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: idle, Interval: interval, Count: count},
		Control: func(network, _ string, c syscall.RawConn) error {
			if network != "tcp" && network != "tcp4" && network != "tcp6" {
				return nil
			}
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(dead.Milliseconds()))
			}); err != nil {
				return err
			}
			return serr
		},
	}
}
