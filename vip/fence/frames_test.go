package fence

import (
	"encoding/binary"
	"net/netip"
)

// Hand-built test frames, VLAN-less Ethernet, laid out from the RFCs (ARP:
// RFC 826; IPv4: RFC 791; IPv6: RFC 8200; neighbour advertisement: RFC 4861
// section 4.4). Only the fields the classifier reads need to be right; the
// rest is filled plausibly.

var (
	macA = []byte{0x02, 0, 0, 0, 0, 0x0a}
	macB = []byte{0x02, 0, 0, 0, 0, 0x0b}
)

func eth(dst, src []byte, etherType uint16, payload []byte) []byte {
	f := make([]byte, 0, 14+len(payload))
	f = append(f, dst...)
	f = append(f, src...)
	f = binary.BigEndian.AppendUint16(f, etherType)
	f = append(f, payload...)
	for len(f) < 60 {
		f = append(f, 0) // Ethernet minimum without FCS
	}
	return f
}

// arpFrame is an Ethernet/IPv4 ARP packet with operation op.
func arpFrame(op uint16, spa, tpa netip.Addr) []byte {
	p := []byte{0, 1, 0x08, 0x00, 6, 4}
	p = binary.BigEndian.AppendUint16(p, op)
	p = append(p, macA...)
	p = append(p, spa.AsSlice()...)
	p = append(p, macB...)
	p = append(p, tpa.AsSlice()...)
	return eth([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, macA, ethPARP, p)
}

// ipv4Frame is an IPv4 packet (UDP, empty) from src to dst.
func ipv4Frame(src, dst netip.Addr) []byte {
	h := []byte{0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0}
	h = append(h, src.AsSlice()...)
	h = append(h, dst.AsSlice()...)
	h = append(h, 0x30, 0x39, 0x1f, 0x90, 0, 8, 0, 0) // UDP 12345 -> 8080
	return eth(macB, macA, ethPIPv4, h)
}

// ipv6Frame is an IPv6 packet from src to dst with the given next header
// and payload.
func ipv6Frame(src, dst netip.Addr, next byte, payload []byte) []byte {
	h := []byte{0x60, 0, 0, 0}
	h = binary.BigEndian.AppendUint16(h, uint16(len(payload)))
	h = append(h, next, 255)
	h = append(h, src.AsSlice()...)
	h = append(h, dst.AsSlice()...)
	h = append(h, payload...)
	return eth(macB, macA, ethPIPv6, h)
}

// icmp6 returns an ICMPv6 message of type typ whose body starts with 4
// bytes of flags/reserved and then target (checksum left zero: the
// classifier does not check it).
func icmp6(typ byte, target netip.Addr) []byte {
	m := []byte{typ, 0, 0, 0, 0x20, 0, 0, 0} // Override flag set for an NA
	m = append(m, target.AsSlice()...)
	return m
}
