package vip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// This file holds the pure frame builders and parsers: no sockets, no
// system calls, so golden-byte tests run anywhere without root.

// zeroMAC is the all-zero hardware address: the target hardware address of
// an ARP request (RFC 826 leaves it unset; RFC 5227 sections 2.1.1 and 2.3
// say it SHOULD be zero in probes and announcements).
var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// allNodesMAC is the Ethernet multicast address of ff02::1 (RFC 2464
// section 7: 33:33 followed by the low 32 bits of the group).
var allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}

// allNodes is the IPv6 link-local all-nodes group, the destination of an
// unsolicited neighbour advertisement (RFC 4861 section 7.2.6).
var allNodes = netip.MustParseAddr("ff02::1")

const (
	ipv6HeaderLen   = 40
	protoICMPv6     = 58
	ndpHopLimit     = 255 // RFC 4861 section 7.1.2: receivers drop NDP with any other hop limit
	icmpTypeNA      = 136
	minEthernetSize = 60 // without FCS; ethernet.Frame pads to it
)

// buildARP marshals an Ethernet frame from src to dst carrying one ARP packet.
func buildARP(op arp.Operation, dst, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) ([]byte, error) {
	p, err := arp.NewPacket(op, sha, spa, tha, tpa)
	if err != nil {
		return nil, fmt.Errorf("build arp packet (%s from %s %s to %s %s): %w", op, sha, spa, tha, tpa, err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("marshal arp packet: %w", err)
	}
	f := ethernet.Frame{Destination: dst, Source: sha, EtherType: ethernet.EtherTypeARP, Payload: pb}
	fb, err := f.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("marshal ethernet frame: %w", err)
	}
	return fb, nil
}

// garpRequest builds the request form of a gratuitous ARP: a broadcast ARP
// request with sender IP = target IP = ip and target MAC all zero (RFC 5227
// section 2.3 "Announcing an Address", RFC 5944 section 4.6).
func garpRequest(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	return buildARP(arp.OperationRequest, ethernet.Broadcast, mac, ip, zeroMAC, ip)
}

// garpReply builds the reply form of a gratuitous ARP: an ARP reply, sent to
// the Ethernet broadcast address, with sender IP = target IP = ip and target
// MAC = sender MAC (RFC 5944 section 4.6). Linux treats a reply as
// gratuitous only when the target MAC equals the sender MAC (NOTES.md,
// "Linux: VIP and ARP").
func garpReply(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	return buildARP(arp.OperationReply, ethernet.Broadcast, mac, ip, mac, ip)
}

// probeRequest builds an RFC 5227 ARP probe for ip: a broadcast request with
// sender IP 0.0.0.0 (so no receiver updates its cache from it) and target
// MAC all zero. Every host that has ip answers with a unicast reply.
func probeRequest(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	return buildARP(arp.OperationRequest, ethernet.Broadcast, mac, netip.IPv4Unspecified(), zeroMAC, ip)
}

// unsolicitedNA builds a whole Ethernet frame with an unsolicited neighbour
// advertisement for ip (RFC 4861 section 7.2.6): from ip to ff02::1, hop
// limit 255, Override set, Solicited and Router clear, with the target
// link-layer address option carrying mac. Building the IPv6 header ourselves
// lets it go out through a packet socket, so it does not depend on the
// address having finished duplicate address detection.
func unsolicitedNA(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	if !ip.Is6() || ip.Is4In6() {
		return nil, fmt.Errorf("build neighbor advertisement: %s is not an IPv6 address", ip)
	}
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
	icmp, err := ndp.MarshalMessageChecksum(na, ip, allNodes)
	if err != nil {
		return nil, fmt.Errorf("marshal neighbor advertisement for %s: %w", ip, err)
	}
	pkt := make([]byte, ipv6HeaderLen+len(icmp))
	pkt[0] = 6 << 4 // version 6, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(pkt[4:6], uint16(len(icmp)))
	pkt[6] = protoICMPv6
	pkt[7] = ndpHopLimit
	src, dst := ip.As16(), allNodes.As16()
	copy(pkt[8:24], src[:])
	copy(pkt[24:40], dst[:])
	copy(pkt[40:], icmp)
	f := ethernet.Frame{Destination: allNodesMAC, Source: mac, EtherType: ethernet.EtherTypeIPv6, Payload: pkt}
	fb, err := f.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("marshal ethernet frame: %w", err)
	}
	return fb, nil
}

// announceFrames returns the frames of one announcement of ip from mac: the
// request and reply forms of gratuitous ARP for IPv4, one unsolicited
// neighbour advertisement for IPv6.
func announceFrames(mac net.HardwareAddr, ip netip.Addr) ([][]byte, error) {
	if ip.Is6() {
		na, err := unsolicitedNA(mac, ip)
		if err != nil {
			return nil, err
		}
		return [][]byte{na}, nil
	}
	req, err := garpRequest(mac, ip)
	if err != nil {
		return nil, err
	}
	rep, err := garpReply(mac, ip)
	if err != nil {
		return nil, err
	}
	return [][]byte{req, rep}, nil
}

// errNotForVIP marks a frame that parsed but does not claim the VIP.
var errNotForVIP = errors.New("frame does not claim the vip")

// parseSighting decodes an Ethernet frame and returns a Sighting if the frame
// claims ip: an ARP packet with sender IP ip, or a neighbour advertisement
// with target ip. Any other frame yields errNotForVIP or a parse error.
func parseSighting(frame []byte, ip netip.Addr, at time.Time) (Sighting, error) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil {
		return Sighting{}, fmt.Errorf("parse ethernet frame: %w", err)
	}
	switch f.EtherType {
	case ethernet.EtherTypeARP:
		var p arp.Packet
		if err := p.UnmarshalBinary(f.Payload); err != nil {
			return Sighting{}, fmt.Errorf("parse arp packet: %w", err)
		}
		if p.HardwareType != 1 || p.ProtocolType != uint16(ethernet.EtherTypeIPv4) || p.SenderIP != ip {
			return Sighting{}, errNotForVIP
		}
		s := Sighting{
			At:          at,
			MAC:         cloneMAC(p.SenderHardwareAddr),
			EthernetSrc: cloneMAC(f.Source),
			EthernetDst: cloneMAC(f.Destination),
			TargetMAC:   cloneMAC(p.TargetHardwareAddr),
			TargetIP:    p.TargetIP,
			Gratuitous:  p.TargetIP == p.SenderIP,
		}
		switch p.Operation {
		case arp.OperationRequest:
			s.Kind = KindARPRequest
		case arp.OperationReply:
			s.Kind = KindARPReply
		default:
			return Sighting{}, errNotForVIP
		}
		return s, nil
	case ethernet.EtherTypeIPv6:
		pkt := f.Payload
		if len(pkt) < ipv6HeaderLen || pkt[0]>>4 != 6 || pkt[6] != protoICMPv6 {
			return Sighting{}, errNotForVIP
		}
		plen := int(binary.BigEndian.Uint16(pkt[4:6]))
		body := pkt[ipv6HeaderLen:]
		if plen > len(body) {
			return Sighting{}, fmt.Errorf("parse ipv6 packet: payload length %d exceeds the %d bytes received", plen, len(body))
		}
		body = body[:plen]
		if len(body) == 0 || body[0] != icmpTypeNA || pkt[7] != ndpHopLimit {
			return Sighting{}, errNotForVIP
		}
		m, err := ndp.ParseMessage(body)
		if err != nil {
			return Sighting{}, fmt.Errorf("parse neighbor advertisement: %w", err)
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress != ip {
			return Sighting{}, errNotForVIP
		}
		s := Sighting{
			At:          at,
			Kind:        KindNeighborAdvert,
			MAC:         cloneMAC(f.Source),
			EthernetSrc: cloneMAC(f.Source),
			EthernetDst: cloneMAC(f.Destination),
			TargetIP:    na.TargetAddress,
			Gratuitous:  !na.Solicited,
			Override:    na.Override,
		}
		for _, o := range na.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
				s.MAC = cloneMAC(lla.Addr)
			}
		}
		return s, nil
	default:
		return Sighting{}, errNotForVIP
	}
}

// cloneMAC copies a hardware address out of a reused read buffer.
func cloneMAC(m net.HardwareAddr) net.HardwareAddr {
	if m == nil {
		return nil
	}
	return bytes.Clone(m)
}

// macSet collects distinct hardware addresses in the order first seen.
type macSet struct{ macs []net.HardwareAddr }

// add records m unless it is already present; it reports whether m was new.
func (s *macSet) add(m net.HardwareAddr) bool {
	for _, have := range s.macs {
		if bytes.Equal(have, m) {
			return false
		}
	}
	s.macs = append(s.macs, cloneMAC(m))
	return true
}
