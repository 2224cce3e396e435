package fence

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf/asm"
)

// This file builds the classifier, instruction by instruction, with
// cilium/ebpf's asm package: no clang, no object file, and the VIP is baked
// into the program as immediates when it is built. It is pure (no system
// calls), so its shape is tested anywhere; the root tests run it in the
// kernel with BPF_PROG_TEST_RUN and on real packets.

// tc actions (include/uapi/linux/pkt_cls.h).
const (
	// actUnspec (TC_ACT_UNSPEC) passes the packet on to the next filter,
	// and lets it through if there is none. We return it for everything we
	// do not drop instead of TC_ACT_OK, which would end classification and
	// skip every later filter on the interface: the fence runs first
	// (Priority 1) and must not switch off other people's filters.
	actUnspec = -1
	// actShot (TC_ACT_SHOT) drops the packet.
	actShot = 2
)

// Offsets into struct __sk_buff (include/uapi/linux/bpf.h); the verifier
// rewrites loads of data and data_end into packet pointers.
const (
	skbData    = 76
	skbDataEnd = 80
)

// Packet layout, VLAN-less Ethernet (no 802.1Q tag in the frame; a VLAN
// sub-interface sees its frames untagged).
const (
	ethLen      = 14
	ethTypeOff  = 12
	arpPTypeOff = ethLen + 2  // ARP protocol type
	arpHPLenOff = ethLen + 4  // ARP hardware and protocol address lengths
	arpSPAOff   = ethLen + 14 // ARP sender protocol address
	arpLen      = ethLen + 28
	ip4SrcOff   = ethLen + 12
	ip4DstOff   = ethLen + 16
	ip4Len      = ethLen + 20
	ip6NextOff  = ethLen + 6
	ip6SrcOff   = ethLen + 8
	ip6DstOff   = ethLen + 24
	ip6Len      = ethLen + 40
	icmp6Off    = ip6Len      // ICMPv6 type, when the next header is ICMPv6
	naTargetOff = ip6Len + 8  // target address of a neighbour advertisement
	naLen       = ip6Len + 24 // ICMPv6 header, flags, target
)

// Protocol numbers.
const (
	ethPARP    = 0x0806
	ethPIPv4   = 0x0800
	ethPIPv6   = 0x86dd
	protoICMP6 = 58
	icmp6NA    = 136 // neighbour advertisement (RFC 4861 section 4.4)
)

// mapSymbol is the reference the program uses for the deadline map.
const mapSymbol = "deadline"

// Program names (BPF_OBJ_NAME_LEN: at most 15 characters), as bpftool
// shows them.
const (
	progNameIngress = "nbha_fence_in"
	progNameEgress  = "nbha_fence_eg"
	mapName         = "nbha_deadline"
)

// be16 returns the value a 16-bit load from the packet yields for the
// network-order number v: BPF loads use the host's byte order.
func be16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// words returns the 32-bit immediates that 32-bit loads of ip's bytes from
// the packet yield, in order.
func words(ip netip.Addr) []int32 {
	b := ip.AsSlice()
	out := make([]int32, 0, len(b)/4)
	for i := 0; i+4 <= len(b); i += 4 {
		out = append(out, int32(binary.NativeEndian.Uint32(b[i:i+4])))
	}
	return out
}

// builder accumulates instructions; its helpers keep the emitted code in
// the one shape the verifier accepts: every packet load comes after a
// bounds check covering it, against data_end in R3.
type builder struct {
	insns asm.Instructions
}

func (b *builder) emit(ins ...asm.Instruction) { b.insns = append(b.insns, ins...) }

// need jumps to pass unless the packet holds at least n bytes (R2 = data,
// R3 = data_end; R4 is scratch).
func (b *builder) need(n int32) {
	b.emit(
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, n),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
	)
}

// matchAddr jumps to miss unless the packet bytes at off equal ip.
func (b *builder) matchAddr(off int16, ip netip.Addr, miss string) {
	for i, w := range words(ip) {
		b.emit(
			asm.LoadMem(asm.R5, asm.R2, off+int16(4*i), asm.Word),
			asm.JNE.Imm32(asm.R5, w, miss),
		)
	}
}

// instructions returns the classifier for one direction. In pseudo-C:
//
//	if the packet is "for the VIP" in this direction:
//	    d = deadline[0]            // missing: drop
//	    if bpf_ktime_get_boot_ns() >= d: return TC_ACT_SHOT
//	return TC_ACT_UNSPEC
//
// where "for the VIP" is, for an IPv4 VIP: egress, an ARP packet whose
// sender protocol address is the VIP, or an IPv4 packet whose source is the
// VIP; ingress, an IPv4 packet whose destination is the VIP. For an IPv6
// VIP: egress, an IPv6 packet whose source is the VIP, or a neighbour
// advertisement whose target is the VIP (whatever its source); ingress, an
// IPv6 packet whose destination is the VIP. A zero deadline is always in
// the past, so a fresh map drops.
func instructions(dir Direction, vip netip.Addr) (asm.Instructions, error) {
	vip = vip.Unmap()
	if !vip.IsValid() {
		return nil, fmt.Errorf("build fence program: invalid address")
	}
	if dir != Ingress && dir != Egress {
		return nil, fmt.Errorf("build fence program: %v", dir)
	}
	b := &builder{}
	b.emit(
		asm.LoadMem(asm.R2, asm.R1, skbData, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, skbDataEnd, asm.Word),
	)
	b.need(ethLen)
	b.emit(asm.LoadMem(asm.R5, asm.R2, ethTypeOff, asm.Half))
	if vip.Is4() {
		if dir == Egress {
			b.emit(asm.JEq.Imm32(asm.R5, be16(ethPARP), "arp"))
		}
		b.emit(asm.JNE.Imm32(asm.R5, be16(ethPIPv4), "pass"))
		b.need(ip4Len)
		off := int16(ip4DstOff)
		if dir == Egress {
			off = ip4SrcOff
		}
		b.matchAddr(off, vip, "pass")
		b.emit(asm.Ja.Label("check"))
		if dir == Egress {
			b.emit(asm.Mov.Reg(asm.R4, asm.R2).WithSymbol("arp"))
			b.emit(asm.Add.Imm(asm.R4, arpLen), asm.JGT.Reg(asm.R4, asm.R3, "pass"))
			b.emit(
				asm.LoadMem(asm.R5, asm.R2, arpPTypeOff, asm.Half),
				asm.JNE.Imm32(asm.R5, be16(ethPIPv4), "pass"),
				asm.LoadMem(asm.R5, asm.R2, arpHPLenOff, asm.Half),
				asm.JNE.Imm32(asm.R5, be16(6<<8|4), "pass"), // hlen 6 (Ethernet), plen 4 (IPv4)
			)
			b.matchAddr(arpSPAOff, vip, "pass")
			b.emit(asm.Ja.Label("check"))
		}
	} else {
		b.emit(asm.JNE.Imm32(asm.R5, be16(ethPIPv6), "pass"))
		b.need(ip6Len)
		if dir == Ingress {
			b.matchAddr(ip6DstOff, vip, "pass")
			b.emit(asm.Ja.Label("check"))
		} else {
			b.matchAddr(ip6SrcOff, vip, "na")
			b.emit(asm.Ja.Label("check"))
			b.emit(asm.LoadMem(asm.R5, asm.R2, ip6NextOff, asm.Byte).WithSymbol("na"))
			b.emit(asm.JNE.Imm32(asm.R5, protoICMP6, "pass"))
			b.need(naLen)
			b.emit(
				asm.LoadMem(asm.R5, asm.R2, icmp6Off, asm.Byte),
				asm.JNE.Imm32(asm.R5, icmp6NA, "pass"),
			)
			b.matchAddr(naTargetOff, vip, "pass")
			b.emit(asm.Ja.Label("check"))
		}
	}
	// check: the packet is the VIP's; drop it once the deadline is reached.
	b.emit(
		asm.StoreImm(asm.R10, -4, 0, asm.Word).WithSymbol("check"), // key 0
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapSymbol),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "drop"), // no value: fail closed
		asm.LoadMem(asm.R6, asm.R0, 0, asm.DWord),
		asm.FnKtimeGetBootNs.Call(),
		asm.JGE.Reg(asm.R0, asm.R6, "drop"), // unsigned: deadline 0 always drops
		asm.Mov.Imm(asm.R0, actUnspec).WithSymbol("pass"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, actShot).WithSymbol("drop"),
		asm.Return(),
	)
	return b.insns, nil
}

// progName returns the kernel name of the program for dir.
func progName(dir Direction) string {
	if dir == Ingress {
		return progNameIngress
	}
	return progNameEgress
}
