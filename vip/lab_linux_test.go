//go:build linux

package vip

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// This file builds throw-away labs for the root tests: network namespaces
// joined by veth pairs to a bridge in a hub namespace, with test-only
// addresses that exist only inside those namespaces. Everything is deleted
// in t.Cleanup, also when the test fails.

const labIface = "eth0"

// labNode is one namespace plugged into the lab's bridge.
type labNode struct {
	name string // network namespace name (under /run/netns)
	mac  net.HardwareAddr
	ip   netip.Addr // its own primary address
}

// lab is a set of namespaces on one bridge.
type lab struct {
	t     *testing.T
	nodes map[string]*labNode
}

// requireRoot skips the test unless it can create network namespaces.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces (run go test as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: the ip command (iproute2) is not installed")
	}
}

// run runs the ip command and fails the test on error.
func ipRun(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newLab creates a hub namespace with a bridge and one namespace per name,
// each with eth0 (MAC 02:00:00:00:00:0N, address 10.200.0.1N/24) on the
// bridge.
func newLab(t *testing.T, names ...string) *lab {
	t.Helper()
	requireRoot(t)
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "nbvip-" + hex.EncodeToString(rnd[:])
	addNS := func(name string) {
		out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "Operation not permitted") {
				t.Skipf("skipping: cannot create network namespaces here: %s", out)
			}
			t.Fatalf("ip netns add %s: %v: %s", name, err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
				t.Errorf("cleanup: ip netns del %s: %v: %s", name, err, out)
			}
		})
	}
	hub := prefix + "-hub"
	addNS(hub)
	ipRun(t, "-n", hub, "link", "add", "br0", "type", "bridge")
	ipRun(t, "-n", hub, "link", "set", "br0", "up")
	l := &lab{t: t, nodes: map[string]*labNode{}}
	for i, name := range names {
		n := &labNode{
			name: prefix + "-" + name,
			mac:  net.HardwareAddr{0x02, 0, 0, 0, 0, byte(i + 1)},
			ip:   netip.AddrFrom4([4]byte{10, 200, 0, byte(11 + i)}),
		}
		addNS(n.name)
		port := fmt.Sprintf("p%d", i+1)
		ipRun(t, "-n", hub, "link", "add", port, "type", "veth", "peer", "name", labIface, "netns", n.name)
		ipRun(t, "-n", hub, "link", "set", port, "master", "br0", "up")
		ipRun(t, "-n", n.name, "link", "set", labIface, "address", n.mac.String())
		ipRun(t, "-n", n.name, "link", "set", "lo", "up")
		ipRun(t, "-n", n.name, "link", "set", labIface, "up")
		ipRun(t, "-n", n.name, "addr", "add", n.ip.String()+"/24", "dev", labIface)
		l.nodes[name] = n
	}
	return l
}

// node returns a node by its short name.
func (l *lab) node(name string) *labNode {
	n, ok := l.nodes[name]
	if !ok {
		l.t.Fatalf("lab has no node %q", name)
	}
	return n
}

// do runs fn on a goroutine locked to an OS thread inside n's namespace.
// The thread is never unlocked, so the runtime discards it afterwards.
func (n *labNode) do(t *testing.T, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(n.name)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", n.name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", n.name, err)
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in %s: %v", n.name, err)
	}
}

// handle returns a netlink handle inside n's namespace, closed at cleanup.
func (n *labNode) handle(t *testing.T) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromName(n.name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", n.name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", n.name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// manager creates a Manager inside n's namespace, closed at cleanup.
func (n *labNode) manager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	if cfg.Iface == "" {
		cfg.Iface = labIface
	}
	var m *Manager
	n.do(t, func() error {
		var err error
		m, err = New(cfg)
		return err
	})
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// addrs lists n's addresses with ip on eth0.
func (n *labNode) addrs(t *testing.T, h *netlink.Handle, ip netip.Addr) []netlink.Addr {
	t.Helper()
	l, err := h.LinkByName(labIface)
	if err != nil {
		t.Fatalf("link %s in %s: %v", labIface, n.name, err)
	}
	got, err := vipAddrs(h, l, ip)
	if err != nil {
		t.Fatalf("list addresses in %s: %v", n.name, err)
	}
	return got
}

// neighMAC returns the MAC of n's neighbour entry for ip, or nil.
func (n *labNode) neighMAC(t *testing.T, h *netlink.Handle, ip netip.Addr) net.HardwareAddr {
	t.Helper()
	l, err := h.LinkByName(labIface)
	if err != nil {
		t.Fatalf("link %s in %s: %v", labIface, n.name, err)
	}
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := h.NeighList(l.Attrs().Index, family)
	if err != nil {
		t.Fatalf("neighbours of %s: %v", n.name, err)
	}
	for _, ne := range neighs {
		if got, ok := netip.AddrFromSlice(ne.IP); ok && got.Unmap() == ip {
			return ne.HardwareAddr
		}
	}
	return nil
}

// sightingLog records sightings read by a Watcher.
type sightingLog struct {
	mu   sync.Mutex
	list []Sighting
}

// watch starts a Watcher for ip inside n's namespace that records into a log
// until cleanup.
func (n *labNode) watch(t *testing.T, ip netip.Addr) *sightingLog {
	t.Helper()
	var w *Watcher
	n.do(t, func() error {
		var err error
		w, err = Watch(labIface, ip)
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	lg := &sightingLog{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			s, err := w.Next(ctx)
			if err != nil {
				return
			}
			lg.mu.Lock()
			lg.list = append(lg.list, s)
			lg.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = w.Close()
	})
	return lg
}

// from returns the sightings whose claiming MAC is mac.
func (lg *sightingLog) from(mac net.HardwareAddr) []Sighting {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	var out []Sighting
	for _, s := range lg.list {
		if bytes.Equal(s.MAC, mac) {
			out = append(out, s)
		}
	}
	return out
}

// waitFor polls cond every 10 ms until it is true or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// soon returns a Hold deadline comfortably in the future (longer than any
// test runs), as a holder that has just won a lease round would pass.
func soon() time.Duration { return Now() + time.Minute }
