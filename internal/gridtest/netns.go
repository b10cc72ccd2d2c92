package gridtest

// This file owns the private network of the tests that put processes on
// separate hosts: a bridge in the root network namespace with a /24 of its
// own, and hosts that are network namespaces joined to it by veth pairs.
// The root namespace is the bridge's address (.1); host i is .(i+2). A
// host's network is cut silently by taking its veth end in the root
// namespace down: its packets vanish, no RST or FIN reaches either side.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

// Net is a bridge in the root network namespace and its hosts.
type Net struct {
	t      testing.TB
	Bridge string // the bridge's name
	Gate   string // the root namespace's address on the bridge
	Hosts  []*Host
}

// Host is a network namespace on a Net.
type Host struct {
	NS   string // the namespace's name (ip netns)
	Addr string // its address on the bridge
	peer string // its veth end in the root namespace
}

var netSeq atomic.Int64

// NewNet makes a bridge with hosts network namespaces, all removed when t
// ends (whether it passed or not). It needs root and ip(8); without them t
// skips (fails under KOLEJKA_REQUIRE_PRIVILEGED=1). Names carry the test
// binary's pid and a sequence number, and the /24 is one no address of
// this machine is in, so that parallel runs do not collide.
func NewNet(t testing.TB, hosts int) *Net {
	t.Helper()
	testenv.RequireRootUser(t)
	if _, err := exec.LookPath("ip"); err != nil {
		testenv.Missing(t, "needs ip(8) (iproute2) for network namespaces")
	}
	tag := fmt.Sprintf("%d%d", os.Getpid()%100000, netSeq.Add(1))
	n := &Net{t: t, Bridge: "kjb" + tag}
	subnet := freeSubnet(t)
	n.Gate = subnet + ".1"
	t.Cleanup(n.remove)
	n.ip("link", "add", n.Bridge, "type", "bridge")
	n.ip("addr", "add", n.Gate+"/24", "dev", n.Bridge)
	n.ip("link", "set", n.Bridge, "up")
	for i := range hosts {
		h := &Host{NS: fmt.Sprintf("kjn%s-%d", tag, i), Addr: fmt.Sprintf("%s.%d", subnet, i+2),
			peer: fmt.Sprintf("kjv%s-%d", tag, i)}
		n.Hosts = append(n.Hosts, h)
		n.ip("netns", "add", h.NS)
		n.ip("link", "add", h.peer, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
		n.ip("link", "set", h.peer, "master", n.Bridge)
		n.ip("link", "set", h.peer, "up")
		n.ip("-n", h.NS, "addr", "add", h.Addr+"/24", "dev", "eth0")
		n.ip("-n", h.NS, "link", "set", "eth0", "up")
		n.ip("-n", h.NS, "link", "set", "lo", "up")
	}
	return n
}

// freeSubnet is the first three octets of a 10.231.x.0/24 that no address
// or route of this machine is in, starting from one picked by pid.
func freeSubnet(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		t.Fatalf("unable to list routes: %v", err)
	}
	addrs, _ := net.InterfaceAddrs()
	used := string(out)
	for _, a := range addrs {
		used += " " + a.String()
	}
	start := os.Getpid() + int(netSeq.Load())*7
	for k := range 256 {
		s := fmt.Sprintf("10.231.%d", (start+k)%256)
		if !strings.Contains(used, s+".") {
			return s
		}
	}
	t.Fatal("no free 10.231.x.0/24 for a test network")
	return ""
}

func (n *Net) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the namespaces (their veth pairs go with them) and the
// bridge; what is already gone is no error.
func (n *Net) remove() {
	for _, h := range n.Hosts {
		_ = exec.Command("ip", "link", "del", h.peer).Run()
		_ = exec.Command("ip", "netns", "del", h.NS).Run()
	}
	_ = exec.Command("ip", "link", "del", n.Bridge).Run()
}

// Wrap is the command prefix that runs a command on host h.
func (h *Host) Wrap() []string { return []string{"ip", "netns", "exec", h.NS} }

// Cut takes host h off the network silently: its veth end on the bridge
// goes down, so that its packets, and the bridge's to it, are dropped
// without a word to either side (an unplugged cable, a dead switch port).
func (n *Net) Cut(h *Host) { n.ip("link", "set", h.peer, "down") }

// Mend puts host h back on the network.
func (n *Net) Mend(h *Host) { n.ip("link", "set", h.peer, "up") }
