package vip

import (
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Sentinel errors of this package. Compare with errors.Is.
var (
	// ErrNotSupported is returned on systems other than Linux, where this
	// package cannot manage addresses or send raw frames.
	ErrNotSupported = errors.New("vip: not supported on this operating system (Linux only)")

	// ErrInvalidConfig wraps every validation error of Assignment, Config and
	// MonitorConfig; the message names the bad field and value.
	ErrInvalidConfig = errors.New("invalid vip config")

	// ErrStaleConfirmation is returned by Hold when its deadline is not
	// positive, had passed before the address was written, or passed while
	// it was being written (the address is then removed again): Hold then
	// holds nothing.
	ErrStaleConfirmation = errors.New("leadership confirmation too old to touch the vip")

	// ErrFence is returned (wrapped, with the reason) by Hold when the
	// kernel fence cannot be installed, read back or written: Hold then
	// fails closed and holds nothing.
	ErrFence = errors.New("vip fence not in place")

	// ErrNotHeld is returned by Announce when the address is not on the
	// interface: a host that does not hold the VIP must not announce it.
	ErrNotHeld = errors.New("vip not held on this host")

	// ErrAnnounce is returned (wrapped) by Hold and Announce when the first
	// gratuitous ARP or neighbour advertisement could not be sent. The address
	// stays in place and the remaining repeats are still attempted.
	ErrAnnounce = errors.New("announce vip")

	// ErrClosed is returned by every Manager method after Close.
	ErrClosed = errors.New("vip manager closed")
)

// Forever is the remaining lifetime Held reports for an address that has no
// lifetime (a permanent address, for example one an operator added by hand).
const Forever = time.Duration(math.MaxInt64)

// maxLifetime is the longest lifetime the kernel can express as a finite
// valid_lft: 0xFFFFFFFF seconds means "forever" (INFINITY_LIFE_TIME in the
// kernel's addrconf code), so one second less is the limit.
const maxLifetime = time.Duration(math.MaxUint32-1) * time.Second

// Defaults applied by Config.withDefaults. The burst shape follows the two
// implementations we replace or learn from: Keepalived's garp_master_repeat
// defaults to 5 gratuitous ARPs per transition (keepalived.conf(5)), and
// MetalLB's layer2 announcer repeats its gratuitous ARP every 1100 ms for 5 s
// (internal/layer2/announcer.go, spam). 1.1 s is just over Linux's default
// neighbour locktime (net.ipv4.neigh.*.locktime = 100 jiffies = 1 s): an ARP
// packet that a receiver does not recognise as gratuitous may not override
// an entry updated less than locktime ago (net/ipv4/arp.c, arp_process), so
// spacing repeats wider than that lets each one take effect even there.
const (
	// DefaultGARPRepeat is the number of announcements in a burst.
	DefaultGARPRepeat = 5
	// DefaultGARPInterval is the pause between two announcements of a burst.
	DefaultGARPInterval = 1100 * time.Millisecond
)

// Bounds that keep a misconfiguration from flooding the segment.
const (
	minGARPInterval = 10 * time.Millisecond
	minRefresh      = 100 * time.Millisecond
	maxGARPRepeat   = 100
	maxIfaceNameLen = 15 // IFNAMSIZ (16) less the terminating NUL
)

// Assignment names one virtual IP on one interface. It is the plain input
// type callers (the cluster package) translate their own state into, so this
// package never depends on the replicated state's wire format.
type Assignment struct {
	// Addr is the virtual address with the prefix length it is installed
	// with, for example 192.168.10.50/24 (the address, not the network).
	Addr netip.Prefix
	// Iface is the name of the interface that carries the address.
	Iface string
}

// String formats the assignment as "ADDR/LEN on IFACE".
func (a Assignment) String() string {
	return fmt.Sprintf("%s on %s", a.Addr, a.Iface)
}

// Validate reports the first problem with a, naming the field.
func (a Assignment) Validate() error {
	if !a.Addr.IsValid() {
		return fmt.Errorf("%w: Addr %q: not a valid address/prefix", ErrInvalidConfig, a.Addr.String())
	}
	ip := a.Addr.Addr()
	switch {
	case ip.Is4In6():
		return fmt.Errorf("%w: Addr %s: IPv4-mapped IPv6 address; write it as IPv4 (%s)", ErrInvalidConfig, a.Addr, ip.Unmap())
	case ip.Zone() != "":
		return fmt.Errorf("%w: Addr %s: must not carry a zone", ErrInvalidConfig, a.Addr)
	case ip.IsUnspecified(), ip.IsLoopback(), ip.IsMulticast(), ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return fmt.Errorf("%w: Addr %s: must be a unicast address that is not unspecified, loopback or link-local", ErrInvalidConfig, a.Addr)
	case ip.Is4() && ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%w: Addr %s: must not be the broadcast address", ErrInvalidConfig, a.Addr)
	case ip.Is4() && a.Addr.Bits() < 31 && ip == lastAddr4(a.Addr):
		return fmt.Errorf("%w: Addr %s: is the broadcast address of its prefix", ErrInvalidConfig, a.Addr)
	}
	if a.Iface == "" {
		return fmt.Errorf("%w: Iface: must name an interface", ErrInvalidConfig)
	}
	if len(a.Iface) > maxIfaceNameLen {
		return fmt.Errorf("%w: Iface %q: longer than %d bytes", ErrInvalidConfig, a.Iface, maxIfaceNameLen)
	}
	return nil
}

// lastAddr4 returns the highest address of an IPv4 prefix (its broadcast).
func lastAddr4(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(math.MaxUint32) >> p.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Config configures a Manager. Zero values of the optional fields take the
// defaults named on each field; Validate (run by New) reports bad values.
type Config struct {
	// Assignment is the address and interface this Manager looks after.
	Assignment

	// Lifetime is the kernel-enforced backstop lifetime of the address:
	// Hold installs it with valid_lft = preferred_lft = Lifetime, or the
	// time left to Hold's deadline if that is longer, and the kernel
	// deletes the address once that much time passes without another Hold
	// (the fence stops the VIP's traffic at the deadline already; the
	// lifetime cleans up after a crash). The kernel counts whole seconds,
	// so Lifetime is rounded up to a whole second (see RoundLifetime).
	// Required: there is no safe default, because the right value follows
	// from the caller's leadership timings.
	Lifetime time.Duration

	// GARPRepeat is how many announcements (each a gratuitous ARP request
	// and reply, or one unsolicited neighbour advertisement for IPv6) a burst
	// sends: Keepalived's garp_master_repeat. 0 means DefaultGARPRepeat.
	GARPRepeat int

	// GARPInterval is the pause between two announcements of a burst.
	// 0 means DefaultGARPInterval.
	GARPInterval time.Duration

	// Refresh, when positive, sends one more announcement every Refresh for
	// as long as the address is held, after the initial burst: Keepalived's
	// garp_master_refresh. 0 turns it off (Keepalived's default too).
	Refresh time.Duration

	// FencePinDir, if set, is a directory on a bpffs where Hold's fence pins
	// its deadline map, for operators (bpftool map dump pinned ...); Hold
	// mounts a bpffs there if needed. Empty: nothing is pinned. The fence
	// never needs the pin to be found again (see package vip/fence).
	FencePinDir string

	// Recheck, when positive, is how long Hold trusts what it checked and
	// wrote itself: a fence it verified (filters, programs, map) and an
	// address it wrote (and its lifetime). A renewal within Recheck of those
	// writes only the new deadline into the fence and reads it back; the
	// next one after it checks everything again. The deadline is written on
	// every Hold whatever Recheck says: it is what stops the VIP. What a
	// longer Recheck delays is only the repair of something removed behind
	// the Manager's back (an operator's tc or ip command), by at most
	// Recheck. The address is rewritten at least every half of its
	// lifetime. 0 checks everything on every Hold.
	Recheck time.Duration

	// Logger receives the Manager's log lines. nil discards them.
	Logger *slog.Logger
}

// maxRecheck bounds Config.Recheck: a fence or address removed behind the
// Manager's back is repaired within this long at most.
const maxRecheck = 10 * time.Second

// holdLifetime returns the address lifetime Hold installs when remaining
// is left until the fence's deadline: Lifetime, or more if the deadline is
// further away, so the backstop never removes the address while the fence
// still lets it answer; at most the kernel's largest finite lifetime.
func holdLifetime(lifetime, remaining time.Duration) time.Duration {
	return min(max(lifetime, RoundLifetime(remaining)), maxLifetime)
}

// RoundLifetime returns the lease the kernel will actually enforce for d: d
// rounded up to a whole second, and at least one second. It does not check
// the upper bound; Config.Validate does.
func RoundLifetime(d time.Duration) time.Duration {
	if d <= time.Second {
		return time.Second
	}
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	return d
}

// withDefaults returns c with zero optional fields replaced by defaults and
// Lifetime rounded.
func (c Config) withDefaults() Config {
	if c.GARPRepeat == 0 {
		c.GARPRepeat = DefaultGARPRepeat
	}
	if c.GARPInterval == 0 {
		c.GARPInterval = DefaultGARPInterval
	}
	if c.Lifetime > 0 {
		c.Lifetime = RoundLifetime(c.Lifetime)
	}
	if c.Logger == nil {
		c.Logger = logging.Discard()
	}
	return c
}

// Validate reports the first problem with c, naming the field. Zero optional
// fields are valid (they take defaults).
func (c Config) Validate() error {
	if err := c.Assignment.Validate(); err != nil {
		return err
	}
	switch {
	case c.Lifetime <= 0:
		return fmt.Errorf("%w: Lifetime %v: must be positive (the kernel lease of the address; no default)", ErrInvalidConfig, c.Lifetime)
	case c.Lifetime > maxLifetime:
		return fmt.Errorf("%w: Lifetime %v: longer than the kernel's largest finite lifetime (%v)", ErrInvalidConfig, c.Lifetime, maxLifetime)
	case c.GARPRepeat < 0 || c.GARPRepeat > maxGARPRepeat:
		return fmt.Errorf("%w: GARPRepeat %d: must be between 1 and %d (0 for the default %d)", ErrInvalidConfig, c.GARPRepeat, maxGARPRepeat, DefaultGARPRepeat)
	case c.GARPInterval < 0 || (c.GARPInterval > 0 && c.GARPInterval < minGARPInterval):
		return fmt.Errorf("%w: GARPInterval %v: must be at least %v (0 for the default %v)", ErrInvalidConfig, c.GARPInterval, minGARPInterval, DefaultGARPInterval)
	case c.Refresh < 0 || (c.Refresh > 0 && c.Refresh < minRefresh):
		return fmt.Errorf("%w: Refresh %v: must be 0 (off) or at least %v", ErrInvalidConfig, c.Refresh, minRefresh)
	case c.Recheck < 0 || c.Recheck > maxRecheck:
		return fmt.Errorf("%w: Recheck %v: must be between 0 (every Hold) and %v", ErrInvalidConfig, c.Recheck, maxRecheck)
	case c.FencePinDir != "" && !strings.HasPrefix(c.FencePinDir, "/"):
		return fmt.Errorf("%w: FencePinDir %q: must be an absolute path", ErrInvalidConfig, c.FencePinDir)
	}
	return nil
}

// Kind says what kind of packet a Sighting came from.
type Kind uint8

// Kinds of Sighting.
const (
	// KindARPRequest is an ARP request (op 1) whose sender IP is the VIP.
	KindARPRequest Kind = iota + 1
	// KindARPReply is an ARP reply (op 2) whose sender IP is the VIP.
	KindARPReply
	// KindNeighborAdvert is an IPv6 neighbour advertisement for the VIP.
	KindNeighborAdvert
)

// String returns a short lowercase name of k.
func (k Kind) String() string {
	switch k {
	case KindARPRequest:
		return "arp-request"
	case KindARPReply:
		return "arp-reply"
	case KindNeighborAdvert:
		return "neighbor-advert"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

// A Sighting is one packet seen on the wire in which a host claims the VIP:
// an ARP request or reply whose sender IP is the VIP, or a neighbour
// advertisement whose target is the VIP.
type Sighting struct {
	// At is when the packet was read.
	At time.Time
	// Kind is the packet's kind.
	Kind Kind
	// MAC is the link-layer address that claims the VIP: the ARP sender
	// hardware address, or the advertisement's target link-layer address
	// option (the Ethernet source when the option is absent).
	MAC net.HardwareAddr
	// EthernetSrc and EthernetDst are the frame's Ethernet addresses.
	EthernetSrc, EthernetDst net.HardwareAddr
	// TargetMAC is the ARP target hardware address (nil for IPv6).
	TargetMAC net.HardwareAddr
	// TargetIP is the ARP target protocol address, or the advertisement's
	// target address.
	TargetIP netip.Addr
	// Gratuitous is true for an ARP packet whose target IP equals its sender
	// IP, and for an advertisement with the Solicited flag clear.
	Gratuitous bool
	// Override is the advertisement's Override flag (false for ARP).
	Override bool
}

// ProbeReport is the outcome of one conflict check (ConflictMonitor).
type ProbeReport struct {
	// At is when the probe started.
	At time.Time
	// Holding is whether this host had the VIP on its interface.
	Holding bool
	// MACs lists, in the order first seen, every distinct link-layer address
	// other than this host's own that claimed the VIP during the probe.
	MACs []net.HardwareAddr
	// Conflict is true when the answers show, or may show, more than one
	// holder: see ConflictMonitor for the rules.
	Conflict bool
	// Reason explains Conflict in one line; empty when there is none.
	Reason string
	// Err is set when the probe itself failed; Conflict is then false and
	// MACs empty, and nothing is known about the segment.
	Err error
}
