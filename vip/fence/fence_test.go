package fence

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"
)

// Pure tests: no kernel, no root.

func TestConfig_Validate(t *testing.T) {
	ok := Config{Iface: "eth0", VIP: netip.MustParseAddr("192.0.2.10")}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, c := range map[string]Config{
		"no iface":       {VIP: ok.VIP},
		"long iface":     {Iface: "abcdefghijklmnop", VIP: ok.VIP},
		"slash in iface": {Iface: "eth/0", VIP: ok.VIP},
		"no vip":         {Iface: "eth0"},
		"zone":           {Iface: "eth0", VIP: netip.MustParseAddr("fe80::1%eth0")},
		"unspecified":    {Iface: "eth0", VIP: netip.MustParseAddr("0.0.0.0")},
		"multicast":      {Iface: "eth0", VIP: netip.MustParseAddr("ff02::1")},
		"relative pin":   {Iface: "eth0", VIP: ok.VIP, PinDir: "bpf/x"},
	} {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v, want ErrInvalidConfig", name, err)
		}
	}
	mapped := Config{Iface: "eth0", VIP: netip.MustParseAddr("::ffff:192.0.2.10")}.normalized()
	if mapped.VIP != ok.VIP {
		t.Errorf("normalized IPv4-mapped VIP = %s, want %s", mapped.VIP, ok.VIP)
	}
}

func TestFilterName_RoundTrip(t *testing.T) {
	for _, s := range []string{"192.0.2.10", "2001:db8::10"} {
		vip := netip.MustParseAddr(s)
		for _, dir := range []Direction{Ingress, Egress} {
			name := FilterName(dir, vip)
			if !strings.HasPrefix(name, NamePrefix+"-v1:"+s+"#") || len(name) != len(NamePrefix+"-v1:"+s+"#")+8 {
				t.Errorf("FilterName(%v, %s) = %q", dir, s, name)
			}
			got, version, ours := parseFilterName(name)
			if !ours || got != vip || version != nameVersion {
				t.Errorf("parseFilterName(%q) = %s, %q, %v", name, got, version, ours)
			}
		}
		if FilterName(Ingress, vip) == FilterName(Egress, vip) {
			t.Errorf("ingress and egress filters of %s have one name", s)
		}
	}
	if FilterName(Egress, netip.MustParseAddr("192.0.2.10")) == FilterName(Egress, netip.MustParseAddr("192.0.2.11")) {
		t.Error("two VIPs give one filter name")
	}
	for name, want := range map[string]struct {
		ours  bool
		valid bool
	}{
		"cilium-ingress":                 {false, false},
		"":                               {false, false},
		"newbieha-fence":                 {false, false},
		"newbieha-fence-v0:10.0.0.1":     {true, true},
		"newbieha-fence-v9:10.0.0.1#abc": {true, true},
		"newbieha-fence-v1:garbage":      {true, false},
		"newbieha-fence-v1":              {true, false},
	} {
		vip, _, ours := parseFilterName(name)
		if ours != want.ours || vip.IsValid() != want.valid {
			t.Errorf("parseFilterName(%q) = %v, ours %v; want ours %v, valid address %v", name, vip, ours, want.ours, want.valid)
		}
	}
}

func TestPinName_NoDots(t *testing.T) {
	for _, c := range []struct {
		iface, vip, want string
	}{
		{"eth0", "10.0.0.50", "newbieha_fence_eth0_10_0_0_50"},
		{"eth0.100", "fd00::50", "newbieha_fence_eth0_100_fd00__50"},
	} {
		if got := pinName(c.iface, netip.MustParseAddr(c.vip)); got != c.want {
			t.Errorf("pinName(%s, %s) = %q, want %q (bpffs refuses dots)", c.iface, c.vip, got, c.want)
		}
	}
}

func TestFreeHandle(t *testing.T) {
	if h, err := freeHandle(nil); err != nil || h != HandleBase+1 {
		t.Fatalf("freeHandle(none used) = %#x, %v", h, err)
	}
	used := map[uint32]bool{HandleBase + 1: true, HandleBase + 2: true, 1: true}
	if h, err := freeHandle(used); err != nil || h != HandleBase+3 {
		t.Fatalf("freeHandle = %#x, %v; want %#x", h, err, HandleBase+3)
	}
	for h := uint32(HandleBase + 1); h <= HandleBase+maxFences; h++ {
		used[h] = true
	}
	if _, err := freeHandle(used); err == nil {
		t.Fatal("freeHandle found a handle with all taken")
	}
}

// TestInstructions_Shape checks what can be checked without a kernel: the
// program builds for both families and directions, reads the map once,
// carries the VIP as immediates, and every jump lands on a label.
func TestInstructions_Shape(t *testing.T) {
	for _, s := range []string{"10.1.2.3", "fd00::1:2"} {
		vip := netip.MustParseAddr(s)
		for _, dir := range []Direction{Ingress, Egress} {
			insns, err := instructions(dir, vip)
			if err != nil {
				t.Fatalf("%s %v: %v", s, dir, err)
			}
			syms, err := insns.SymbolOffsets()
			if err != nil {
				t.Fatalf("%s %v: symbols: %v", s, dir, err)
			}
			refs := 0
			for _, ins := range insns {
				ref := ins.Reference()
				switch {
				case ref == mapSymbol:
					refs++
				case ref != "":
					if _, ok := syms[ref]; !ok {
						t.Errorf("%s %v: jump to undefined label %q", s, dir, ref)
					}
				}
			}
			if refs != 1 {
				t.Errorf("%s %v: %d references to the map, want 1", s, dir, refs)
			}
			imms := map[int64]bool{}
			for _, ins := range insns {
				if ins.OpCode.JumpOp() == asm.JNE {
					imms[ins.Constant] = true
				}
			}
			for _, w := range words(vip) {
				if !imms[int64(w)] {
					t.Errorf("%s %v: no comparison with VIP word %#x", s, dir, uint32(w))
				}
			}
			if last := insns[len(insns)-1]; last.OpCode.JumpOp() != asm.Exit {
				t.Errorf("%s %v: last instruction %v is not exit", s, dir, last)
			}
		}
	}
	if _, err := instructions(Ingress, netip.Addr{}); err == nil {
		t.Error("instructions accepted an invalid address")
	}
	if _, err := instructions(Direction(7), netip.MustParseAddr("10.1.2.3")); err == nil {
		t.Error("instructions accepted an unknown direction")
	}
}

func TestImmediates_MatchPacketBytes(t *testing.T) {
	// A BPF load reads memory in the host's byte order, so an immediate is
	// right when its in-memory bytes are the packet's bytes.
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], uint16(be16(ethPARP)))
	if b != [2]byte{0x08, 0x06} {
		t.Errorf("be16(ETH_P_ARP) lays out as % x, want 08 06", b)
	}
	ip := netip.MustParseAddr("10.1.2.3")
	var w [4]byte
	binary.NativeEndian.PutUint32(w[:], uint32(words(ip)[0]))
	if w != ip.As4() {
		t.Errorf("words(10.1.2.3) lays out as % x", w)
	}
	if n := len(words(netip.MustParseAddr("fd00::1"))); n != 4 {
		t.Errorf("an IPv6 address gives %d words, want 4", n)
	}
}
