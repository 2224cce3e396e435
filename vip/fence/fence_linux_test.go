//go:build linux

package fence

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// These tests need root: they load programs into the kernel and attach
// them to a veth pair in a throw-away network namespace. The packet-level
// behaviour on a real link is tested in package vip, with its lab.

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to load eBPF programs and create network namespaces (run go test as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: the ip command (iproute2) is not installed")
	}
}

// scratchNS creates a network namespace with a veth pair veth0/veth1 (both
// up) and returns its name; it is deleted at cleanup.
func scratchNS(t testing.TB) string {
	t.Helper()
	requireRoot(t)
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	name := "nbfence-" + hex.EncodeToString(rnd[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot create a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("cleanup: ip netns del %s: %v: %s", name, err, out)
		}
	})
	ipIn(t, name, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
	ipIn(t, name, "link", "set", "veth0", "up")
	ipIn(t, name, "link", "set", "veth1", "up")
	return name
}

func ipIn(t testing.TB, ns string, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
}

// tcIn runs tc inside ns and returns its output.
func tcIn(t testing.TB, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "tc"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("tc %s in %s: %v: %s", strings.Join(args, " "), ns, err, out)
	}
	return string(out)
}

// in runs fn on an OS thread inside ns. The thread is never unlocked, so
// the runtime discards it afterwards.
func in(t testing.TB, ns string, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in %s: %v", ns, err)
	}
}

func install(t testing.TB, ns string, cfg Config) *Fence {
	t.Helper()
	var f *Fence
	in(t, ns, func() error {
		var err error
		f, err = Install(cfg)
		return err
	})
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func listIn(t testing.TB, ns, iface string) []Attached {
	t.Helper()
	var got []Attached
	in(t, ns, func() error {
		var err error
		got, err = List(iface)
		return err
	})
	return got
}

var (
	vip4   = netip.MustParseAddr("10.0.0.50")
	other4 = netip.MustParseAddr("10.0.0.9")
	vip6   = netip.MustParseAddr("fd00::50")
	other6 = netip.MustParseAddr("fd00::9")
	ll6    = netip.MustParseAddr("fe80::1")
)

// TestProgram_Classifies runs both programs in the kernel
// (BPF_PROG_TEST_RUN) on hand-built frames, with the deadline ahead and
// behind.
func TestProgram_Classifies(t *testing.T) {
	requireRoot(t)
	const pass, drop = actUnspec, actShot
	type tc struct {
		name  string
		dir   Direction
		frame []byte
		vip   bool // the frame is the VIP's: dropped once the deadline passes
	}
	v4 := []tc{
		{"egress arp reply from vip", Egress, arpFrame(2, vip4, other4), true},
		{"egress gratuitous arp", Egress, arpFrame(1, vip4, vip4), true},
		{"egress arp request for vip from other", Egress, arpFrame(1, other4, vip4), false},
		{"egress arp from other", Egress, arpFrame(2, other4, other4), false},
		{"egress ipv4 from vip", Egress, ipv4Frame(vip4, other4), true},
		{"egress ipv4 to vip", Egress, ipv4Frame(other4, vip4), false},
		{"egress ipv4 other", Egress, ipv4Frame(other4, other4), false},
		{"egress ipv6", Egress, ipv6Frame(other6, vip6, 17, make([]byte, 8)), false},
		{"egress truncated arp", Egress, arpFrame(2, vip4, other4)[:40], false},
		// BPF_PROG_TEST_RUN refuses an IPv4 frame shorter than its header, so
		// the IPv4 bounds checks are tested by the verifier only.
		{"egress bare ethernet header", Egress, eth(macA, macB, ethPARP, nil)[:14], false},
		{"egress arp with another protocol type", Egress, func() []byte {
			f := arpFrame(2, vip4, other4)
			f[16], f[17] = 0x86, 0xdd
			return f
		}(), false},
		{"ingress ipv4 to vip", Ingress, ipv4Frame(other4, vip4), true},
		{"ingress ipv4 from vip", Ingress, ipv4Frame(vip4, other4), false},
		{"ingress ipv4 other", Ingress, ipv4Frame(other4, other4), false},
		{"ingress arp from vip", Ingress, arpFrame(1, vip4, vip4), false},
		{"ingress arp request for vip", Ingress, arpFrame(1, other4, vip4), false},
		{"ingress bare ethernet header", Ingress, eth(macA, macB, 0x88b5, nil)[:14], false},
	}
	v6 := []tc{
		{"egress ipv6 from vip", Egress, ipv6Frame(vip6, other6, 17, make([]byte, 8)), true},
		{"egress na for vip from link-local", Egress, ipv6Frame(ll6, other6, protoICMP6, icmp6(icmp6NA, vip6)), true},
		{"egress na for other", Egress, ipv6Frame(ll6, other6, protoICMP6, icmp6(icmp6NA, other6)), false},
		{"egress ns for vip", Egress, ipv6Frame(other6, vip6, protoICMP6, icmp6(135, vip6)), false},
		{"egress ipv6 to vip", Egress, ipv6Frame(other6, vip6, 17, make([]byte, 8)), false},
		{"egress ipv4", Egress, ipv4Frame(other4, vip4), false},
		{"egress truncated na", Egress, ipv6Frame(ll6, other6, protoICMP6, icmp6(icmp6NA, vip6))[:70], false},
		{"ingress ipv6 to vip", Ingress, ipv6Frame(other6, vip6, 6, make([]byte, 20)), true},
		{"ingress ipv6 from vip", Ingress, ipv6Frame(vip6, other6, 6, make([]byte, 20)), false},
		{"ingress na for vip", Ingress, ipv6Frame(ll6, other6, protoICMP6, icmp6(icmp6NA, vip6)), false},
	}
	for _, fam := range []struct {
		vip   netip.Addr
		cases []tc
	}{{vip4, v4}, {vip6, v6}} {
		m, err := newDeadlineMap()
		if err != nil {
			t.Fatal(err)
		}
		progs := map[Direction]*ebpf.Program{}
		for _, dir := range directions {
			p, err := loadProgram(dir, fam.vip, m)
			if err != nil {
				t.Fatalf("load %v program for %s: %+v", dir, fam.vip, err)
			}
			progs[dir] = p
		}
		run := func(c tc) int32 {
			ret, err := progs[c.dir].Run(&ebpf.RunOptions{Data: c.frame})
			if err != nil {
				t.Fatalf("%s: test run: %v", c.name, err)
			}
			return int32(ret)
		}
		for _, deadline := range []struct {
			name  string
			value uint64
		}{
			{"zero", 0},
			{"passed", uint64(Now() - time.Millisecond)},
			{"ahead", uint64(Now() + time.Hour)},
			{"max", ^uint64(0)},
		} {
			if err := m.Update(uint32(0), deadline.value, ebpf.UpdateAny); err != nil {
				t.Fatal(err)
			}
			for _, c := range fam.cases {
				want := int32(pass)
				if c.vip && (deadline.name == "zero" || deadline.name == "passed") {
					want = drop
				}
				if got := run(c); got != want {
					t.Errorf("vip %s, deadline %s, %s: returned %d, want %d", fam.vip, deadline.name, c.name, got, want)
				}
			}
		}
		for _, p := range progs {
			p.Close()
		}
		m.Close()
	}
}

// TestDeadlineMap_ReadOnlyForProgramsAndZero checks the map's shape: a
// fresh map holds 0 (drop), and the kernel refuses a program that writes it
// (BPF_F_RDONLY_PROG), so only user space moves the deadline.
func TestDeadlineMap_ReadOnlyForProgramsAndZero(t *testing.T) {
	requireRoot(t)
	m, err := newDeadlineMap()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if d, err := readDeadline(m); err != nil || d != 0 {
		t.Fatalf("fresh map: deadline %v, %v; want 0 (fail closed)", d, err)
	}
	writer := &ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "Dual MIT/GPL",
		Instructions: asm.Instructions{
			asm.StoreImm(asm.R10, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Reg(asm.R2, asm.R10),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.StoreImm(asm.R0, 0, -1, asm.DWord), // deadline = forever
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.Return(),
		},
	}
	if p, err := ebpf.NewProgram(writer); err == nil {
		p.Close()
		t.Fatal("the kernel loaded a program that writes the deadline map")
	}
}

func TestInstall_FreshFenceDropsAndReadsBack(t *testing.T) {
	ns := scratchNS(t)
	f := install(t, ns, Config{Iface: "veth0", VIP: vip4})
	if d, err := f.Deadline(); err != nil || d != 0 {
		t.Fatalf("fresh fence: Deadline = %v, %v; want 0", d, err)
	}
	if f.Handle() != HandleBase+1 {
		t.Errorf("first fence handle %#x, want %#x", f.Handle(), HandleBase+1)
	}
	if err := f.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for _, dir := range directions {
		out := tcIn(t, ns, "filter", "show", "dev", "veth0", dir.String())
		if !strings.Contains(out, FilterName(dir, vip4)) || !strings.Contains(out, "direct-action") ||
			!strings.Contains(out, "pref 1") || !strings.Contains(out, "handle 0x4e420001") {
			t.Errorf("tc filter show dev veth0 %s:\n%s\nwant our named direct-action filter at pref 1, handle 0x4e420001", dir, out)
		}
	}
	got := listIn(t, ns, "veth0")
	if len(got) != 1 || !got[0].Complete() || got[0].VIP != vip4 || got[0].MapID != f.MapID() || got[0].Deadline != 0 {
		t.Fatalf("List = %+v; want one complete fence for %s with map %d", got, vip4, f.MapID())
	}
	d := Now() + time.Hour
	if err := f.SetDeadline(d); err != nil {
		t.Fatalf("SetDeadline: %v", err)
	}
	if got, err := f.Deadline(); err != nil || got != d {
		t.Fatalf("Deadline = %v, %v; want %v", got, err, d)
	}
	if err := f.SetDeadline(-1); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("negative deadline: err = %v", err)
	}
	if got, _ := f.Deadline(); got != d {
		t.Fatalf("a refused write changed the deadline to %v", got)
	}
}

func TestInstall_IdempotentKeepsDeadline(t *testing.T) {
	ns := scratchNS(t)
	f := install(t, ns, Config{Iface: "veth0", VIP: vip4})
	d := Now() + 42*time.Minute
	if err := f.SetDeadline(d); err != nil {
		t.Fatal(err)
	}
	ids := listIn(t, ns, "veth0")[0]
	// Closing our handles leaves the fence attached, deadline and all.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.SetDeadline(0); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetDeadline after Close: %v", err)
	}
	g := install(t, ns, Config{Iface: "veth0", VIP: vip4})
	if got, err := g.Deadline(); err != nil || got != d {
		t.Fatalf("reinstall: Deadline = %v, %v; want the kept %v", got, err, d)
	}
	again := listIn(t, ns, "veth0")
	if len(again) != 1 || again[0] != ids {
		t.Fatalf("reinstall changed the fence: before %+v, after %+v; want the same programs and map", ids, again)
	}
	var o *Fence
	in(t, ns, func() error {
		var err error
		o, err = Open(Config{Iface: "veth0", VIP: vip4})
		return err
	})
	defer o.Close()
	if o.MapID() != g.MapID() || o.Handle() != g.Handle() {
		t.Fatalf("Open found map %d handle %#x, want %d %#x", o.MapID(), o.Handle(), g.MapID(), g.Handle())
	}
	in(t, ns, func() error {
		if _, err := Open(Config{Iface: "veth0", VIP: other4}); !errors.Is(err, ErrNotInstalled) {
			return fmt.Errorf("Open of another VIP: err = %v, want ErrNotInstalled", err)
		}
		if _, err := Open(Config{Iface: "nosuch0", VIP: vip4}); !errors.Is(err, ErrNotInstalled) {
			return fmt.Errorf("Open on a missing interface: err = %v, want ErrNotInstalled", err)
		}
		if _, err := Install(Config{Iface: "nosuch0", VIP: vip4}); err == nil || !strings.Contains(err.Error(), "nosuch0") {
			return fmt.Errorf("Install on a missing interface: err = %v", err)
		}
		return nil
	})
}

func TestInstall_RepairsAMissingDirection(t *testing.T) {
	ns := scratchNS(t)
	f := install(t, ns, Config{Iface: "veth0", VIP: vip4})
	d := Now() + time.Hour
	if err := f.SetDeadline(d); err != nil {
		t.Fatal(err)
	}
	tcIn(t, ns, "filter", "del", "dev", "veth0", "egress", "pref", "1", "handle", fmt.Sprintf("%#x", f.Handle()), "bpf")
	err := f.Verify()
	if !errors.Is(err, ErrNotAttached) || !strings.Contains(err.Error(), "egress") {
		t.Fatalf("Verify with the egress filter deleted: %v; want ErrNotAttached naming egress", err)
	}
	g := install(t, ns, Config{Iface: "veth0", VIP: vip4})
	if g.MapID() != f.MapID() {
		t.Fatalf("repair made a new map %d; want the surviving direction's %d", g.MapID(), f.MapID())
	}
	if got, _ := g.Deadline(); got != d {
		t.Fatalf("repair lost the deadline: %v, want %v", got, d)
	}
	if err := f.Verify(); err != nil {
		t.Fatalf("old handle's Verify after the repair: %v", err)
	}
}

func TestInstall_ReplacesAnotherVersionKeepingTheMap(t *testing.T) {
	ns := scratchNS(t)
	f := install(t, ns, Config{Iface: "veth0", VIP: vip4})
	d := Now() + time.Hour
	if err := f.SetDeadline(d); err != nil {
		t.Fatal(err)
	}
	// Pretend the ingress filter came from an older release.
	in(t, ns, func() error {
		p, err := loadProgram(Ingress, vip4, f.dmap)
		if err != nil {
			return err
		}
		defer p.Close()
		l, err := netlink.LinkByName("veth0")
		if err != nil {
			return err
		}
		return netlink.FilterReplace(&netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_MIN_INGRESS,
				Handle: f.Handle(), Priority: Priority, Protocol: unix.ETH_P_ALL},
			Fd: p.FD(), Name: NamePrefix + "-v0:" + vip4.String(), DirectAction: true,
		})
	})
	if err := f.Verify(); !errors.Is(err, ErrNotAttached) {
		t.Fatalf("Verify with a renamed filter: %v", err)
	}
	g := install(t, ns, Config{Iface: "veth0", VIP: vip4})
	if got, _ := g.Deadline(); got != d || g.MapID() != f.MapID() {
		t.Fatalf("upgrade: map %d deadline %v; want map %d deadline %v", g.MapID(), got, f.MapID(), d)
	}
	if got := listIn(t, ns, "veth0"); len(got) != 1 || got[0].Version != nameVersion || !got[0].Complete() {
		t.Fatalf("after upgrade: %+v", got)
	}
}

func TestInstall_TwoVIPsAndOthersFiltersUntouched(t *testing.T) {
	ns := scratchNS(t)
	// Someone else's filters: a u32 at priority 2 on ingress.
	tcIn(t, ns, "qdisc", "add", "dev", "veth0", "clsact")
	tcIn(t, ns, "filter", "add", "dev", "veth0", "ingress", "pref", "2", "u32", "match", "u32", "0", "0", "flowid", "1:1")
	a := install(t, ns, Config{Iface: "veth0", VIP: vip4})
	b := install(t, ns, Config{Iface: "veth0", VIP: vip6})
	if a.Handle() == b.Handle() || a.MapID() == b.MapID() {
		t.Fatalf("two VIPs share handle %#x/%#x or map %d/%d", a.Handle(), b.Handle(), a.MapID(), b.MapID())
	}
	if got := listIn(t, ns, "veth0"); len(got) != 2 {
		t.Fatalf("List: %+v; want two fences", got)
	}
	if err := a.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := a.Verify(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Verify after Remove: %v", err)
	}
	if got := listIn(t, ns, "veth0"); len(got) != 1 || got[0].VIP != vip6 {
		t.Fatalf("after removing the IPv4 fence: %+v; want the IPv6 one only", got)
	}
	if err := b.Verify(); err != nil {
		t.Fatalf("the other fence after Remove: %v", err)
	}
	in(t, ns, func() error {
		n, err := RemoveAll("veth0", "")
		if err != nil || n != 1 {
			return fmt.Errorf("RemoveAll = %d, %v; want 1", n, err)
		}
		if n, err := RemoveAll("veth0", ""); err != nil || n != 0 {
			return fmt.Errorf("second RemoveAll = %d, %v; want 0", n, err)
		}
		if n, err := RemoveAll("nosuch0", ""); err != nil || n != 0 {
			return fmt.Errorf("RemoveAll on a missing interface = %d, %v", n, err)
		}
		return nil
	})
	out := tcIn(t, ns, "filter", "show", "dev", "veth0", "ingress")
	if !strings.Contains(out, "u32") || strings.Contains(out, NamePrefix) {
		t.Fatalf("ingress filters after removing ours:\n%s\nwant the u32 only", out)
	}
	if q := tcIn(t, ns, "qdisc", "show", "dev", "veth0"); !strings.Contains(q, "clsact") {
		t.Fatalf("someone else's clsact qdisc went: %s", q)
	}
}

func TestRemove_DeletesTheQdiscItAdded(t *testing.T) {
	ns := scratchNS(t)
	f := install(t, ns, Config{Iface: "veth0", VIP: vip4})
	if q := tcIn(t, ns, "qdisc", "show", "dev", "veth0"); !strings.Contains(q, "clsact") {
		t.Fatalf("no clsact after Install: %s", q)
	}
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if q := tcIn(t, ns, "qdisc", "show", "dev", "veth0"); strings.Contains(q, "clsact") {
		t.Fatalf("clsact still there after removing the only fence, which added it: %s", q)
	}
	if err := f.Remove(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Remove: %v", err)
	}
}

func TestInstall_PriorityTakenByAnotherKindFailsClearly(t *testing.T) {
	ns := scratchNS(t)
	tcIn(t, ns, "qdisc", "add", "dev", "veth0", "clsact")
	tcIn(t, ns, "filter", "add", "dev", "veth0", "egress", "pref", "1", "u32", "match", "u32", "0", "0", "flowid", "1:1")
	in(t, ns, func() error {
		_, err := Install(Config{Iface: "veth0", VIP: vip4})
		if err == nil || !strings.Contains(err.Error(), "priority 1") {
			return fmt.Errorf("Install with a u32 at pref 1: err = %v; want one naming priority 1", err)
		}
		t.Logf("Install refused as it should: %v", err)
		if got, err := List("veth0"); err != nil || len(got) != 0 {
			return fmt.Errorf("after a failed fresh Install: List = %+v, %v; want nothing left behind", got, err)
		}
		return nil
	})
	if out := tcIn(t, ns, "filter", "show", "dev", "veth0", "egress"); !strings.Contains(out, "u32") {
		t.Fatalf("the other filter went: %s", out)
	}
}

func TestInstall_PinsUnderPinDir(t *testing.T) {
	ns := scratchNS(t)
	dir := filepath.Join(t.TempDir(), "bpf")
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	f := install(t, ns, Config{Iface: "veth0", VIP: vip4, PinDir: dir})
	if !isBPFFS(dir) {
		t.Fatalf("%s is not a bpffs after Install", dir)
	}
	path := filepath.Join(dir, pinName("veth0", vip4))
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		t.Fatalf("pinned map: %v", err)
	}
	id, _ := mapIDOf(m)
	m.Close()
	if uint32(id) != f.MapID() {
		t.Fatalf("pin holds map %d, want %d", id, f.MapID())
	}
	// Idempotent with the pin in place.
	g := install(t, ns, Config{Iface: "veth0", VIP: vip4, PinDir: dir})
	if g.MapID() != f.MapID() {
		t.Fatal("reinstall with PinDir made a new map")
	}
	in(t, ns, func() error {
		_, err := RemoveAll("veth0", dir)
		return err
	})
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin %s still there after RemoveAll: %v", path, err)
	}
}

func BenchmarkSetDeadline(b *testing.B) {
	ns := scratchNS(b)
	f := install(b, ns, Config{Iface: "veth0", VIP: vip4})
	d := Now() + time.Hour
	for i := 0; b.Loop(); i++ {
		if err := f.SetDeadline(d + time.Duration(i)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	ns := scratchNS(b)
	f := install(b, ns, Config{Iface: "veth0", VIP: vip4})
	for b.Loop() {
		if err := f.Verify(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBoottimeOffset(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"monotonic           0         0\nboottime            0         0\n": 0,
		"monotonic 5 0\nboottime 86400 500\n":                                86400*time.Second + 500,
		"7 -3 0\n":                                                           -3 * time.Second,
		"":                                                                   0,
	} {
		got, err := boottimeOffset(in)
		if err != nil || got != want {
			t.Errorf("boottimeOffset(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := boottimeOffset("boottime x y"); err == nil {
		t.Error("boottimeOffset accepted garbage")
	}
}
