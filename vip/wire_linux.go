//go:build linux

package vip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// This file holds the raw-socket side: sending frames and reading ARP and
// neighbour advertisements. It uses AF_PACKET sockets (mdlayher/packet)
// rather than mdlayher/arp's Client, because arp.Dial needs an IPv4 address
// on the interface already (NOTES.md), which a standby or a witness may not
// have on its VIP interface.

// readBufSize fits a full Ethernet frame without FCS.
const readBufSize = 1514

// ethProto returns the EtherType a socket for ip's announcements uses.
func ethProto(ip netip.Addr) int {
	if ip.Is6() {
		return unix.ETH_P_IPV6
	}
	return unix.ETH_P_ARP
}

// linkInfo is what the sockets need to know about an interface.
type linkInfo struct {
	index int
	name  string
	mac   net.HardwareAddr
}

func linkInfoOf(l netlink.Link) (linkInfo, error) {
	a := l.Attrs()
	if len(a.HardwareAddr) != 6 {
		return linkInfo{}, fmt.Errorf("interface %s has link-layer address %q: only Ethernet (6-byte) addresses are supported", a.Name, a.HardwareAddr)
	}
	return linkInfo{index: a.Index, name: a.Name, mac: bytes.Clone(a.HardwareAddr)}, nil
}

// listen opens an AF_PACKET socket for EtherType proto on the link, in the
// calling thread's network namespace.
func listen(li linkInfo, proto int) (*packet.Conn, error) {
	ifi := &net.Interface{Index: li.index, Name: li.name, HardwareAddr: li.mac}
	c, err := packet.Listen(ifi, packet.Raw, proto, nil)
	if err != nil {
		return nil, fmt.Errorf("open packet socket on %s: %w", li.name, err)
	}
	return c, nil
}

// send writes whole Ethernet frames, each to its own destination address.
func send(c *packet.Conn, frames [][]byte) error {
	for _, f := range frames {
		dst := net.HardwareAddr(f[0:6])
		if _, err := c.WriteTo(f, &packet.Addr{HardwareAddr: dst}); err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				// tc egress dropped it (NET_XMIT_DROP): on the VIP's
				// interface, the fence does that once its deadline passed.
				return fmt.Errorf("send frame to %s: dropped on the way out (the vip fence drops the VIP's frames once its deadline has passed): %w", dst, err)
			}
			return fmt.Errorf("send frame to %s: %w", dst, err)
		}
	}
	return nil
}

// untilDone makes reads on c fail once ctx is done. The returned func
// detaches it and must be called before c's deadline is set again.
func untilDone(ctx context.Context, c *packet.Conn) func() {
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = c.SetReadDeadline(time.Unix(1, 0)) // in the past: wakes a blocked read now
	})
	return func() {
		if !stop() {
			<-fired
		}
	}
}

// isTimeout reports whether err is a read deadline expiring.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// probeOn sends one ARP probe for ip from li and collects, until timeout or
// ctx ends, every distinct hardware address other than li's own that claims
// ip: replies to the probe and any other ARP packet with sender IP ip.
func probeOn(ctx context.Context, c *packet.Conn, li linkInfo, ip netip.Addr, timeout time.Duration) ([]net.HardwareAddr, error) {
	frame, err := probeRequest(li.mac, ip)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.SetReadDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set read deadline: %w", err)
	}
	detach := untilDone(ctx, c)
	defer detach()
	if err := send(c, [][]byte{frame}); err != nil {
		return nil, fmt.Errorf("send arp probe for %s on %s: %w", ip, li.name, err)
	}
	var seen macSet
	buf := make([]byte, readBufSize)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if isTimeout(err) {
				return seen.macs, nil
			}
			return nil, fmt.Errorf("read arp on %s: %w", li.name, err)
		}
		s, err := parseSighting(buf[:n], ip, time.Now())
		if err != nil || bytes.Equal(s.MAC, li.mac) {
			continue
		}
		// Only answers to this probe count: an ARP reply sent to our MAC.
		// A gratuitous announcement seen meanwhile (a planned handover
		// announces the new holder a few ms after the old one stopped
		// answering) says who claimed the address a moment ago, not who
		// holds it now; counting it made sequential holders look like a
		// conflict.
		if s.Kind != KindARPReply || !bytes.Equal(s.TargetMAC, li.mac) {
			continue
		}
		seen.add(s.MAC)
	}
}

// Probe sends an RFC 5227 ARP probe for ip (sender IP 0.0.0.0, so nobody
// learns anything from it) on iface and returns every distinct hardware
// address, other than iface's own, that answered it within timeout: the
// hosts that hold ip now. Gratuitous announcements seen meanwhile do not
// count (Watch reports those). IPv4 only. It acts in the network namespace of the calling
// OS thread and needs CAP_NET_RAW.
func Probe(ctx context.Context, iface string, ip netip.Addr, timeout time.Duration) ([]net.HardwareAddr, error) {
	if err := checkProbeArgs(ip, timeout); err != nil {
		return nil, err
	}
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("look up interface %s: %w", iface, err)
	}
	li, err := linkInfoOf(l)
	if err != nil {
		return nil, err
	}
	c, err := listen(li, unix.ETH_P_ARP)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return probeOn(ctx, c, li, ip, timeout)
}

func checkProbeArgs(ip netip.Addr, timeout time.Duration) error {
	if !ip.Is4() {
		return fmt.Errorf("probe %s: conflict probing covers IPv4 addresses only: %w", ip, ErrNotSupported)
	}
	if timeout <= 0 {
		return fmt.Errorf("%w: probe timeout %v: must be positive", ErrInvalidConfig, timeout)
	}
	return nil
}

// A Watcher reports every packet on one interface in which a host claims
// one address: ARP requests and replies whose sender IP is the address, or,
// for IPv6, neighbour advertisements whose target is the address. It is the
// passive half of conflict detection and what tests use to see announcements.
type Watcher struct {
	c   *packet.Conn
	ip  netip.Addr
	buf []byte
}

// Watch opens a Watcher for ip on iface. The socket is open when Watch
// returns, so nothing sent afterwards is missed. It acts in the network
// namespace of the calling OS thread and needs CAP_NET_RAW.
func Watch(iface string, ip netip.Addr) (*Watcher, error) {
	if !ip.IsValid() {
		return nil, fmt.Errorf("%w: watch address: invalid", ErrInvalidConfig)
	}
	ip = ip.Unmap()
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("look up interface %s: %w", iface, err)
	}
	li, err := linkInfoOf(l)
	if err != nil {
		return nil, err
	}
	c, err := listen(li, ethProto(ip))
	if err != nil {
		return nil, err
	}
	return &Watcher{c: c, ip: ip, buf: make([]byte, readBufSize)}, nil
}

// Next blocks until the next sighting or until ctx is done. It must not be
// called concurrently with itself.
func (w *Watcher) Next(ctx context.Context) (Sighting, error) {
	var deadline time.Time
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	if err := w.c.SetReadDeadline(deadline); err != nil {
		return Sighting{}, fmt.Errorf("set read deadline: %w", err)
	}
	detach := untilDone(ctx, w.c)
	defer detach()
	for {
		n, _, err := w.c.ReadFrom(w.buf)
		if err != nil {
			if ctx.Err() != nil {
				return Sighting{}, ctx.Err()
			}
			return Sighting{}, fmt.Errorf("watch %s: read: %w", w.ip, err)
		}
		s, err := parseSighting(w.buf[:n], w.ip, time.Now())
		if err != nil {
			continue
		}
		return s, nil
	}
}

// Close closes the Watcher's socket; a blocked Next returns an error.
func (w *Watcher) Close() error {
	return w.c.Close()
}
