package vip

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	testMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	testIP4 = netip.MustParseAddr("192.0.2.10")
	testIP6 = netip.MustParseAddr("2001:db8::10")
)

// unhex decodes a golden frame written with spaces and line breaks.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad golden hex: %v", err)
	}
	return b
}

// The golden frames below are written out by hand from RFC 826 / RFC 5227 /
// RFC 4861 field layouts, not produced by the code under test.
func TestFrames_Golden(t *testing.T) {
	const pad = "000000000000000000000000000000000000" // 18 bytes: 42-byte ARP frame padded to 60
	tests := []struct {
		name  string
		build func(net.HardwareAddr, netip.Addr) ([]byte, error)
		ip    netip.Addr
		want  string
	}{
		{
			name:  "garp request",
			build: garpRequest,
			ip:    testIP4,
			want: "ffffffffffff 020000000001 0806" + // broadcast, from us, ARP
				"0001 0800 06 04 0001" + // Ethernet/IPv4, op request
				"020000000001 c000020a" + // sender: us, VIP
				"000000000000 c000020a" + // target: zero MAC, VIP
				pad,
		},
		{
			name:  "garp reply",
			build: garpReply,
			ip:    testIP4,
			want: "ffffffffffff 020000000001 0806" +
				"0001 0800 06 04 0002" + // op reply
				"020000000001 c000020a" +
				"020000000001 c000020a" + // target MAC == sender MAC
				pad,
		},
		{
			name:  "arp probe",
			build: probeRequest,
			ip:    testIP4,
			want: "ffffffffffff 020000000001 0806" +
				"0001 0800 06 04 0001" +
				"020000000001 00000000" + // sender IP 0.0.0.0
				"000000000000 c000020a" +
				pad,
		},
		{
			name:  "unsolicited neighbor advertisement",
			build: unsolicitedNA,
			ip:    testIP6,
			want: "333300000001 020000000001 86dd" + // all-nodes multicast MAC, IPv6
				"60000000 0020 3a ff" + // v6, payload 32, ICMPv6, hop limit 255
				"20010db8000000000000000000000010" + // src: VIP
				"ff020000000000000000000000000001" + // dst: ff02::1
				"88 00 f90c" + // type 136, code 0, checksum
				"20000000" + // flags: Override only
				"20010db8000000000000000000000010" + // target: VIP
				"0201 020000000001", // target link-layer address option
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.build(testMAC, tt.ip)
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			want := unhex(t, tt.want)
			if !bytes.Equal(got, want) {
				t.Fatalf("frame mismatch\n got %x\nwant %x", got, want)
			}
			if len(got) < minEthernetSize {
				t.Fatalf("frame is %d bytes, shorter than the Ethernet minimum %d", len(got), minEthernetSize)
			}
		})
	}
}

// icmpv6Checksum is an independent RFC 1071 sum over the IPv6 pseudo-header
// and the ICMPv6 message; it returns 0 for a message with a correct checksum.
func icmpv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	s, d := src.As16(), dst.As16()
	buf := append(append(append([]byte{}, s[:]...), d[:]...), 0, 0, byte(len(msg)>>8), byte(len(msg)), 0, 0, 0, 58)
	buf = append(buf, msg...)
	if len(buf)%2 == 1 {
		buf = append(buf, 0)
	}
	var sum uint32
	for i := 0; i < len(buf); i += 2 {
		sum += uint32(buf[i])<<8 | uint32(buf[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func TestUnsolicitedNA_ChecksumVerifies(t *testing.T) {
	for _, ip := range []string{"2001:db8::10", "fd00:200::100", "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe"} {
		a := netip.MustParseAddr(ip)
		f, err := unsolicitedNA(testMAC, a)
		if err != nil {
			t.Fatalf("%s: %v", ip, err)
		}
		if got := icmpv6Checksum(a, allNodes, f[14+ipv6HeaderLen:]); got != 0 {
			t.Errorf("%s: checksum does not verify (residue %#04x)", ip, got)
		}
	}
}

func TestFrames_RejectBadInput(t *testing.T) {
	if _, err := garpRequest(testMAC, testIP6); err == nil {
		t.Error("garpRequest accepted an IPv6 address")
	}
	if _, err := garpReply(net.HardwareAddr{1, 2, 3}, testIP4); err == nil {
		t.Error("garpReply accepted a 3-byte MAC")
	}
	if _, err := unsolicitedNA(testMAC, testIP4); err == nil {
		t.Error("unsolicitedNA accepted an IPv4 address")
	}
	if _, err := unsolicitedNA(testMAC, netip.MustParseAddr("::ffff:192.0.2.10")); err == nil {
		t.Error("unsolicitedNA accepted an IPv4-mapped address")
	}
}

func TestAnnounceFrames(t *testing.T) {
	f4, err := announceFrames(testMAC, testIP4)
	if err != nil {
		t.Fatal(err)
	}
	if len(f4) != 2 {
		t.Fatalf("IPv4 announcement has %d frames, want 2 (request and reply forms)", len(f4))
	}
	f6, err := announceFrames(testMAC, testIP6)
	if err != nil {
		t.Fatal(err)
	}
	if len(f6) != 1 {
		t.Fatalf("IPv6 announcement has %d frames, want 1", len(f6))
	}
}

func TestParseSighting_RoundTrip(t *testing.T) {
	at := time.Unix(1700000000, 0)
	req, _ := garpRequest(testMAC, testIP4)
	rep, _ := garpReply(testMAC, testIP4)
	prb, _ := probeRequest(testMAC, testIP4)
	na, _ := unsolicitedNA(testMAC, testIP6)

	s, err := parseSighting(req, testIP4, at)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if s.Kind != KindARPRequest || !bytes.Equal(s.MAC, testMAC) || !s.Gratuitous ||
		!bytes.Equal(s.TargetMAC, zeroMAC) || s.TargetIP != testIP4 || !s.At.Equal(at) ||
		s.EthernetDst.String() != "ff:ff:ff:ff:ff:ff" || !bytes.Equal(s.EthernetSrc, testMAC) {
		t.Errorf("request sighting = %+v", s)
	}

	s, err = parseSighting(rep, testIP4, at)
	if err != nil {
		t.Fatalf("reply: %v", err)
	}
	if s.Kind != KindARPReply || !bytes.Equal(s.MAC, testMAC) || !bytes.Equal(s.TargetMAC, testMAC) || !s.Gratuitous {
		t.Errorf("reply sighting = %+v", s)
	}

	// A probe's sender IP is 0.0.0.0: it claims nothing.
	if _, err := parseSighting(prb, testIP4, at); !errors.Is(err, errNotForVIP) {
		t.Errorf("probe parsed as a claim: err = %v", err)
	}
	// A GARP for another address is not for our VIP.
	if _, err := parseSighting(req, netip.MustParseAddr("192.0.2.11"), at); !errors.Is(err, errNotForVIP) {
		t.Errorf("garp for another ip: err = %v", err)
	}

	s, err = parseSighting(na, testIP6, at)
	if err != nil {
		t.Fatalf("neighbor advertisement: %v", err)
	}
	if s.Kind != KindNeighborAdvert || !bytes.Equal(s.MAC, testMAC) || !s.Override || !s.Gratuitous ||
		s.TargetIP != testIP6 || !bytes.Equal(s.EthernetDst, allNodesMAC) {
		t.Errorf("advertisement sighting = %+v", s)
	}
	if _, err := parseSighting(na, netip.MustParseAddr("2001:db8::11"), at); !errors.Is(err, errNotForVIP) {
		t.Errorf("advertisement for another ip: err = %v", err)
	}
}

func TestParseSighting_Garbage(t *testing.T) {
	na, _ := unsolicitedNA(testMAC, testIP6)
	bad := bytes.Clone(na)
	bad[14+7] = 64 // hop limit other than 255: receivers must ignore it
	if _, err := parseSighting(bad, testIP6, time.Now()); !errors.Is(err, errNotForVIP) {
		t.Errorf("advertisement with hop limit 64: err = %v, want errNotForVIP", err)
	}
	short := bytes.Clone(na)
	short[14+4], short[14+5] = 0x01, 0x00 // payload length 256 > what is there
	if _, err := parseSighting(short, testIP6, time.Now()); err == nil {
		t.Error("advertisement with an overlong payload length parsed")
	}
	req, _ := garpRequest(testMAC, testIP4)
	for n := 0; n < 42; n++ { // 14-byte Ethernet header + 28-byte ARP packet
		if _, err := parseSighting(req[:n], testIP4, time.Now()); err == nil {
			t.Errorf("%d-byte truncated frame parsed", n)
		}
	}
}

func FuzzParseSighting(f *testing.F) {
	req, _ := garpRequest(testMAC, testIP4)
	na, _ := unsolicitedNA(testMAC, testIP6)
	f.Add(req)
	f.Add(na)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, ip := range []netip.Addr{testIP4, testIP6} {
			s, err := parseSighting(b, ip, time.Time{})
			if err == nil && s.TargetIP.IsValid() && s.Kind == 0 {
				t.Fatalf("sighting without kind: %+v", s)
			}
		}
	})
}

func TestMACSet(t *testing.T) {
	var s macSet
	a := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	b := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	if !s.add(a) || !s.add(b) || s.add(bytes.Clone(a)) {
		t.Fatal("add did not report new/duplicate correctly")
	}
	a[5] = 9 // the set must hold its own copy
	if len(s.macs) != 2 || s.macs[0].String() != "02:00:00:00:00:01" || s.macs[1].String() != "02:00:00:00:00:02" {
		t.Fatalf("macs = %v", s.macs)
	}
}

func BenchmarkBuildGARP(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := announceFrames(testMAC, testIP4); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseSighting(b *testing.B) {
	rep, _ := garpReply(testMAC, testIP4)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseSighting(rep, testIP4, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
}
