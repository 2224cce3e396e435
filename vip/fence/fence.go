package fence

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Sentinel errors of this package. Compare with errors.Is.
var (
	// ErrNotSupported is returned on systems other than Linux, which have
	// neither eBPF nor tc.
	ErrNotSupported = errors.New("vip fence: not supported on this operating system (Linux only)")

	// ErrInvalidConfig wraps every validation error of Config; the message
	// names the bad field and value.
	ErrInvalidConfig = errors.New("invalid vip fence config")

	// ErrNotInstalled is returned by Open when no fence of ours for the
	// address is attached to the interface.
	ErrNotInstalled = errors.New("no vip fence attached")

	// ErrNotAttached is returned (wrapped) by Verify and by Install's read
	// back when the fence's filters are not both in place, or do not use
	// the fence's deadline map. The message says what is missing.
	ErrNotAttached = errors.New("vip fence not attached")

	// ErrClosed is returned by every Fence method after Close or Remove.
	ErrClosed = errors.New("vip fence closed")
)

// Identification of our filters. Every fence this package attaches is a
// cls_bpf filter at Priority with a handle in [HandleBase+1, HandleBase+
// maxFences] on both the ingress and the egress hook of the interface's
// clsact qdisc, named FilterName(dir, vip). tc shows them as
//
//	filter protocol all pref 1 bpf chain 0 handle 0x4e420001 newbieha-fence-v1:10.0.0.50#3f2a9c1e direct-action ...
//
// List and RemoveAll look for the name prefix; the handle and priority only
// make the filters easy to spot and to delete by hand:
//
//	tc filter del dev eth0 ingress pref 1 handle 0x4e420001 bpf
const (
	// Priority is the tc priority ("pref") of our filters. 1 is the first
	// to run, so no filter of lower priority can accept (TC_ACT_OK) a VIP
	// packet before the fence sees it.
	Priority = 1

	// HandleBase is the base of our filter handles: "NB" in ASCII. The
	// first fence on an interface gets HandleBase+1, the next free one the
	// next, and so on.
	HandleBase = 0x4e420000

	// NamePrefix starts the tc name (TCA_BPF_NAME) of every filter of ours.
	NamePrefix = "newbieha-fence"

	// nameVersion is the version of the naming scheme and program in the
	// filter's name. A fence with another version is still ours: Install
	// reuses its deadline map and replaces its programs.
	nameVersion = "v1"

	// maxFences bounds how many fences (VIPs) one interface can carry.
	maxFences = 256

	maxIfaceNameLen = 15 // IFNAMSIZ (16) less the terminating NUL
)

// Config names the interface and the address one fence guards.
type Config struct {
	// Iface is the interface that carries the VIP (the one the fence's tc
	// filters are attached to), in the network namespace of the thread
	// that calls Install or Open.
	Iface string

	// VIP is the virtual address. IPv4 or IPv6, without zone; an
	// IPv4-mapped IPv6 address is taken as its IPv4 form.
	VIP netip.Addr

	// PinDir, if set, is a directory on a bpffs where Install pins the
	// deadline map (for bpftool and operators; the fence itself never
	// needs the pin). If the directory is not on a bpffs, Install mounts
	// one: on /sys/fs/bpf if PinDir is below it, else on PinDir itself.
	// Empty: nothing is pinned. Note that `ip netns exec` gives each
	// process a fresh mount namespace, with its own /sys/fs/bpf, so the pin
	// is not how fences are found: List reads the tc filters.
	PinDir string
}

// normalized returns c with VIP unmapped.
func (c Config) normalized() Config {
	c.VIP = c.VIP.Unmap()
	return c
}

// Validate reports the first problem with c, naming the field.
func (c Config) Validate() error {
	switch {
	case c.Iface == "":
		return fmt.Errorf("%w: Iface: must name an interface", ErrInvalidConfig)
	case len(c.Iface) > maxIfaceNameLen:
		return fmt.Errorf("%w: Iface %q: longer than %d bytes", ErrInvalidConfig, c.Iface, maxIfaceNameLen)
	case strings.ContainsAny(c.Iface, "/ \t\n"):
		return fmt.Errorf("%w: Iface %q: not a valid interface name", ErrInvalidConfig, c.Iface)
	case !c.VIP.IsValid():
		return fmt.Errorf("%w: VIP: not a valid address", ErrInvalidConfig)
	case c.VIP.Zone() != "":
		return fmt.Errorf("%w: VIP %s: must not carry a zone", ErrInvalidConfig, c.VIP)
	case c.VIP.IsUnspecified() || c.VIP.IsMulticast():
		return fmt.Errorf("%w: VIP %s: must be a unicast address", ErrInvalidConfig, c.VIP)
	case c.PinDir != "" && !strings.HasPrefix(c.PinDir, "/"):
		return fmt.Errorf("%w: PinDir %q: must be an absolute path", ErrInvalidConfig, c.PinDir)
	}
	return nil
}

// FilterName returns the tc name of our filter on dir for vip, for example
// "newbieha-fence-v1:10.0.0.50#3f2a9c1e". The part after '#' is a digest
// of the program this build attaches there, so a filter with exactly this
// name runs exactly that program; Install replaces a filter of ours with
// any other name (an older release's) and keeps its deadline map.
func FilterName(dir Direction, vip netip.Addr) string {
	return NamePrefix + "-" + nameVersion + ":" + vip.Unmap().String() + "#" + programDigest(dir, vip)
}

// programDigest returns 8 hex digits of a SHA-256 over the program's
// instruction listing. (The kernel's own program tag would do, but since
// Linux 6.18 it is computed differently, and cilium/ebpf cannot always
// reproduce it.)
func programDigest(dir Direction, vip netip.Addr) string {
	insns, err := instructions(dir, vip)
	if err != nil {
		return "invalid"
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%v %v", dir, insns))
	return hex.EncodeToString(sum[:4])
}

// parseFilterName reports whether name is one of our filter names and, if
// so, the address it fences and the program version. A name of ours whose
// address does not parse is reported as ours with an invalid address, so
// RemoveAll still removes it.
func parseFilterName(name string) (vip netip.Addr, version string, ours bool) {
	rest, ok := strings.CutPrefix(name, NamePrefix+"-")
	if !ok {
		return netip.Addr{}, "", false
	}
	version, addr, ok := strings.Cut(rest, ":")
	if !ok || version == "" {
		return netip.Addr{}, "", true
	}
	addr, _, _ = strings.Cut(addr, "#")
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Addr{}, version, true
	}
	return a.Unmap(), version, true
}

// pinName returns the file name under PinDir of the deadline map of the
// fence for vip on iface. bpffs refuses names with a dot, so dots and
// colons become underscores.
func pinName(iface string, vip netip.Addr) string {
	r := strings.NewReplacer(".", "_", ":", "_")
	return "newbieha_fence_" + r.Replace(iface) + "_" + r.Replace(vip.Unmap().String())
}

// freeHandle returns the lowest handle HandleBase+1 .. HandleBase+maxFences
// not in used.
func freeHandle(used map[uint32]bool) (uint32, error) {
	for h := uint32(HandleBase + 1); h <= HandleBase+maxFences; h++ {
		if !used[h] {
			return h, nil
		}
	}
	return 0, fmt.Errorf("all %d fence handles %#x-%#x are in use at priority %d", maxFences, HandleBase+1, HandleBase+maxFences, Priority)
}

// Direction is a tc hook: ingress or egress.
type Direction uint8

// The two hooks a fence attaches to.
const (
	Ingress Direction = iota + 1
	Egress
)

// String returns "ingress" or "egress".
func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	default:
		return fmt.Sprintf("direction(%d)", uint8(d))
	}
}

// Attached describes one fence of ours found on an interface (List).
type Attached struct {
	// VIP is the address the fence guards, from the filter's name; invalid
	// if the name could not be parsed.
	VIP netip.Addr
	// Version is the program version in the filter's name.
	Version string
	// Handle is the filters' tc handle.
	Handle uint32
	// IngressProg and EgressProg are the kernel IDs of the attached
	// programs; 0 if that direction has no filter of ours.
	IngressProg, EgressProg uint32
	// MapID is the kernel ID of the deadline map the programs read; 0 if it
	// could not be found (Err says why).
	MapID uint32
	// Deadline is the value in the map, on CLOCK_BOOTTIME.
	Deadline time.Duration
	// Err is set when the programs or the map could not be read.
	Err error
}

// Complete reports whether both directions have a filter and the map was
// read.
func (a Attached) Complete() bool {
	return a.IngressProg != 0 && a.EgressProg != 0 && a.MapID != 0 && a.Err == nil
}
