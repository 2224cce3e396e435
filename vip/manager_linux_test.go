//go:build linux

package vip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/newbieha/newbieha/vip/fence"
)

var (
	labVIP  = netip.MustParsePrefix("10.200.0.100/24")
	labVIP6 = netip.MustParsePrefix("fd00:200::100/64")
)

func labConfig(lifetime time.Duration) Config {
	return Config{
		Assignment:   Assignment{Addr: labVIP, Iface: labIface},
		Lifetime:     lifetime,
		GARPRepeat:   1,
		GARPInterval: 50 * time.Millisecond,
	}
}

func TestNew_MissingInterface(t *testing.T) {
	l := newLab(t, "a")
	cfg := labConfig(time.Second)
	cfg.Iface = "nosuch0"
	l.node("a").do(t, func() error {
		if _, err := New(cfg); err == nil {
			t.Error("New accepted an interface that does not exist")
		}
		return nil
	})
}

func TestHold_AddsAddressWithLifetime(t *testing.T) {
	t.Parallel()
	l := newLab(t, "a")
	a := l.node("a")
	m := a.manager(t, labConfig(2500*time.Millisecond))
	if m.Lifetime() != 3*time.Second {
		t.Fatalf("Lifetime() = %v, want 2.5s rounded up to 3s", m.Lifetime())
	}
	if held, _, err := m.Held(); err != nil || held {
		t.Fatalf("before claim: Held = %v, %v; want false, nil", held, err)
	}
	// A deadline within the lifetime: the backstop lifetime is Lifetime.
	ctx := context.Background()
	if claimed, err := m.Hold(ctx, Now()+2*time.Second); err != nil || !claimed {
		t.Fatalf("Hold: %v, %v; want claimed", claimed, err)
	}
	got := a.addrs(t, a.handle(t), labVIP.Addr())
	if len(got) != 1 {
		t.Fatalf("after claim: %d addresses with the VIP, want 1: %v", len(got), got)
	}
	if ones, _ := got[0].Mask.Size(); ones != labVIP.Bits() {
		t.Errorf("prefix length %d, want %d", ones, labVIP.Bits())
	}
	// The kernel reports the remainder (lifetime less whole elapsed seconds).
	if got[0].ValidLft < 2 || got[0].ValidLft > 3 || got[0].PreferedLft != got[0].ValidLft {
		t.Errorf("valid_lft %d, preferred_lft %d; want both 3 (or 2 on a slow host)", got[0].ValidLft, got[0].PreferedLft)
	}
	if got[0].Flags&unix.IFA_F_PERMANENT != 0 {
		t.Errorf("address is permanent (flags %#x); want a lifetime", got[0].Flags)
	}
	held, left, err := m.Held()
	if err != nil || !held || left < 2*time.Second || left > 3*time.Second {
		t.Errorf("Held = %v, %v, %v; want true, 2-3s, nil", held, left, err)
	}
	// Holding again is idempotent: still exactly one address, no new claim.
	if claimed, err := m.Hold(ctx, Now()+2*time.Second); err != nil || claimed {
		t.Fatalf("second Hold: %v, %v; want not claimed (already held)", claimed, err)
	}
	if got := a.addrs(t, a.handle(t), labVIP.Addr()); len(got) != 1 {
		t.Fatalf("after second hold: %d addresses, want 1", len(got))
	}
	// A deadline further away than Lifetime stretches the backstop to it,
	// so the kernel never removes the address while the fence allows it.
	if _, err := m.Hold(ctx, Now()+10*time.Second); err != nil {
		t.Fatalf("Hold with a 10s deadline: %v", err)
	}
	got = a.addrs(t, a.handle(t), labVIP.Addr())
	if len(got) != 1 || got[0].ValidLft < 9 || got[0].ValidLft > 10 || got[0].PreferedLft != got[0].ValidLft {
		t.Fatalf("after a 10s deadline: %+v; want one address with valid_lft = preferred_lft = 10 (or 9)", got)
	}
}

// holdFor holds the VIP with a deadline d from now, and fails the test
// unless that claims it.
func holdFor(t *testing.T, m *Manager, d time.Duration) {
	t.Helper()
	if claimed, err := m.Hold(context.Background(), Now()+d); err != nil || !claimed {
		t.Fatalf("Hold: %v, %v; want claimed", claimed, err)
	}
}

// The backstop: without another Hold, the kernel removes the address once
// its lifetime runs out, whatever the fence does.
func TestLease_KernelRemovesAddressWithoutRenewal(t *testing.T) {
	t.Parallel()
	l := newLab(t, "a")
	m := l.node("a").manager(t, labConfig(time.Second))
	holdFor(t, m, time.Second) // within the lifetime: the backstop is 1s
	start := time.Now()
	waitFor(t, 5*time.Second, func() bool {
		held, _, err := m.Held()
		if err != nil {
			t.Fatalf("Held: %v", err)
		}
		return !held
	}, "the kernel to remove the address after its 1s lifetime")
	gone := time.Since(start)
	// The kernel may delete up to HZ/50 early and about a second late.
	if gone < 950*time.Millisecond || gone > 3*time.Second {
		t.Fatalf("address gone after %v, want about 1s (0.95s-3s)", gone)
	}
	t.Logf("1s lease: address removed by the kernel %v after the claim", gone)
}

func TestHold_RenewalsExtendTheLease(t *testing.T) {
	t.Parallel()
	l := newLab(t, "a")
	m := l.node("a").manager(t, labConfig(2*time.Second))
	ctx := context.Background()
	// Every deadline lies within the 2s lifetime, so the backstop is 2s.
	holdFor(t, m, 2*time.Second)
	start := time.Now()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last time.Time
	for time.Since(start) < 3500*time.Millisecond {
		<-tick.C // renewal cadence, well inside the 2s lifetime
		if claimed, err := m.Hold(ctx, Now()+2*time.Second); err != nil || claimed {
			t.Fatalf("renewing Hold at %v: %v, %v; want not claimed (still held)", time.Since(start), claimed, err)
		}
		last = time.Now()
		if held, _, err := m.Held(); err != nil || !held {
			t.Fatalf("at %v after claim, with renewals: Held = %v, %v", time.Since(start), held, err)
		}
	}
	// 3.5s > 2s lifetime: only the renewals kept it. Now stop renewing.
	waitFor(t, 5*time.Second, func() bool {
		held, _, err := m.Held()
		return err == nil && !held
	}, "the address to expire once renewals stop")
	if after := time.Since(last); after < 1900*time.Millisecond {
		t.Fatalf("address expired %v after the last renewal, want about 2s", after)
	}
}

func TestHold_ReaddsMissingAddress(t *testing.T) {
	l := newLab(t, "a", "c")
	a, c := l.node("a"), l.node("c")
	seen := c.watch(t, labVIP.Addr())
	m := a.manager(t, labConfig(5*time.Second))
	ctx := context.Background()
	holdFor(t, m, time.Minute)
	waitFor(t, 3*time.Second, func() bool { return len(seen.from(a.mac)) >= 2 }, "the claim's announcement")
	ipRun(t, "-n", a.name, "addr", "del", labVIP.String(), "dev", labIface)
	if held, _, _ := m.Held(); held {
		t.Fatal("address still held after ip addr del")
	}
	if claimed, err := m.Hold(ctx, soon()); err != nil || !claimed {
		t.Fatalf("Hold after the address went: %v, %v; want claimed (re-added)", claimed, err)
	}
	if held, left, err := m.Held(); err != nil || !held || left < 4*time.Second {
		t.Fatalf("after the re-adding Hold: Held = %v, %v, %v; want the address back with a fresh lifetime", held, left, err)
	}
	// A re-added address is announced again.
	waitFor(t, 3*time.Second, func() bool { return len(seen.from(a.mac)) >= 4 }, "a fresh announcement after the re-add")
}

// With Recheck, a renewal soon after a full Hold only writes the deadline:
// an address removed behind the Manager's back comes back at the first
// Hold after Recheck, not at once. The fence's deadline follows every Hold.
func TestHold_RecheckTrustsItsOwnWritesForAWhile(t *testing.T) {
	l := newLab(t, "a")
	a := l.node("a")
	cfg := labConfig(5 * time.Second)
	cfg.Recheck = 500 * time.Millisecond
	m := a.manager(t, cfg)
	ctx := context.Background()
	holdFor(t, m, 2*time.Second)
	start := time.Now()
	ipRun(t, "-n", a.name, "addr", "del", labVIP.String(), "dev", labIface)
	d := Now() + 2*time.Second
	if claimed, err := m.Hold(ctx, d); err != nil || claimed {
		t.Fatalf("renewing Hold within Recheck: %v, %v; want not claimed", claimed, err)
	}
	if time.Since(start) < cfg.Recheck {
		if held, _, _ := m.Held(); held {
			t.Fatal("a renewal within Recheck rewrote the address")
		}
	}
	a.do(t, func() error {
		found, err := fence.List(labIface)
		if err != nil || len(found) != 1 || found[0].Deadline != d {
			return fmt.Errorf("fence after a quick renewal: %+v, %v; want deadline %v", found, err, d)
		}
		return nil
	})
	time.Sleep(time.Until(start.Add(cfg.Recheck)))
	if claimed, err := m.Hold(ctx, Now()+2*time.Second); err != nil || !claimed {
		t.Fatalf("Hold after Recheck: %v, %v; want claimed (re-added)", claimed, err)
	}
	if held, _, err := m.Held(); err != nil || !held {
		t.Fatalf("after Recheck: Held = %v, %v; want the address back", held, err)
	}
}

// A deadline that is not in the future holds nothing, and a refused Hold
// removes an address it held before. (The deadline passing during the
// write: TestHold_RefusesAndRemovesWhenTheDeadlinePassesDuringTheWrite.)
func TestHold_RefusesStaleDeadline(t *testing.T) {
	l := newLab(t, "a")
	m := l.node("a").manager(t, labConfig(5*time.Second))
	ctx := context.Background()
	stale := []struct {
		name     string
		deadline func() time.Duration
	}{
		{"zero", func() time.Duration { return 0 }},
		{"negative", func() time.Duration { return -time.Second }},
		{"past", func() time.Duration { return Now() - time.Millisecond }},
		{"now", Now},
	}
	for _, tc := range stale {
		claimed, err := m.Hold(ctx, tc.deadline())
		if !errors.Is(err, ErrStaleConfirmation) || claimed {
			t.Errorf("Hold with a %s deadline: %v, %v; want ErrStaleConfirmation", tc.name, claimed, err)
		}
		if held, _, _ := m.Held(); held {
			t.Fatalf("address added despite a %s deadline", tc.name)
		}
	}
	for _, tc := range stale {
		holdFor(t, m, time.Minute)
		if _, err := m.Hold(ctx, tc.deadline()); !errors.Is(err, ErrStaleConfirmation) {
			t.Errorf("renewing Hold with a %s deadline: err = %v, want ErrStaleConfirmation", tc.name, err)
		}
		if held, _, err := m.Held(); err != nil || held {
			t.Fatalf("after a renewing Hold with a %s deadline: Held = %v, %v; want the address removed", tc.name, held, err)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if claimed, err := m.Hold(cancelled, soon()); !errors.Is(err, context.Canceled) || claimed {
		t.Errorf("Hold with a cancelled context: %v, %v; want context.Canceled", claimed, err)
	}
	if held, _, _ := m.Held(); held {
		t.Fatal("address added despite a cancelled context")
	}
}

func TestRelease(t *testing.T) {
	l := newLab(t, "a")
	a := l.node("a")
	m := a.manager(t, labConfig(30*time.Second))
	holdFor(t, m, time.Minute)
	if err := m.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if held, _, err := m.Held(); err != nil || held {
		t.Fatalf("after Release: Held = %v, %v", held, err)
	}
	if err := m.Release(); err != nil {
		t.Fatalf("second Release (address absent): %v", err)
	}
	if err := m.Announce(context.Background()); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Announce without the address: err = %v, want ErrNotHeld", err)
	}

	// ReleaseAddr: absent address, missing interface, and a permanent
	// address with another prefix length added by hand.
	a.do(t, func() error {
		if err := ReleaseAddr(Assignment{Addr: labVIP, Iface: labIface}); err != nil {
			t.Errorf("ReleaseAddr of an absent address: %v", err)
		}
		if err := ReleaseAddr(Assignment{Addr: labVIP, Iface: "nosuch0"}); err != nil {
			t.Errorf("ReleaseAddr on a missing interface: %v", err)
		}
		if err := ReleaseAddr(Assignment{Addr: labVIP}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ReleaseAddr without an interface: err = %v, want ErrInvalidConfig", err)
		}
		return nil
	})
	ipRun(t, "-n", a.name, "addr", "add", "10.200.0.100/32", "dev", labIface)
	held, left, err := m.Held()
	if err != nil || !held || left != Forever {
		t.Fatalf("hand-added permanent address: Held = %v, %v, %v; want true, Forever", held, left, err)
	}
	a.do(t, func() error { return ReleaseAddr(Assignment{Addr: labVIP, Iface: labIface}) })
	if held, _, _ := m.Held(); held {
		t.Fatal("ReleaseAddr left the hand-added /32 in place")
	}
}

func TestClose(t *testing.T) {
	l := newLab(t, "a")
	m := l.node("a").manager(t, labConfig(30*time.Second))
	holdFor(t, m, time.Minute)
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	hold := func() error {
		claimed, err := m.Hold(ctx, soon())
		if claimed {
			t.Error("Hold after Close claimed the VIP")
		}
		return err
	}
	for name, err := range map[string]error{
		"Hold":     hold(),
		"Prepare":  m.Prepare(),
		"Announce": m.Announce(ctx),
		"Release":  m.Release(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
	if _, _, err := m.Held(); !errors.Is(err, ErrClosed) {
		t.Errorf("Held after Close: err = %v, want ErrClosed", err)
	}
	if _, err := m.Probe(ctx, time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("Probe after Close: err = %v, want ErrClosed", err)
	}
	// Close is a clean stop: it removes the address.
	a := l.node("a")
	if got := a.addrs(t, a.handle(t), labVIP.Addr()); len(got) != 0 {
		t.Fatalf("Close left %d addresses with the VIP; a clean stop removes it", len(got))
	}
}

func TestHold_GARPBurstSeenByPeer(t *testing.T) {
	l := newLab(t, "a", "c")
	a, c := l.node("a"), l.node("c")
	seen := c.watch(t, labVIP.Addr())
	cfg := labConfig(30 * time.Second)
	cfg.GARPRepeat, cfg.GARPInterval = 3, 100*time.Millisecond
	m := a.manager(t, cfg)
	holdFor(t, m, time.Minute)
	waitFor(t, 5*time.Second, func() bool { return len(seen.from(a.mac)) >= 6 }, "3 announcements of 2 frames each")
	// Let the burst run past its end; it must not send more.
	time.Sleep(4 * cfg.GARPInterval)
	got := seen.from(a.mac)
	if len(got) != 6 {
		t.Fatalf("peer saw %d frames from the holder, want exactly 6 (3 requests, 3 replies)", len(got))
	}
	var reqs, reps []Sighting
	for _, s := range got {
		if !s.Gratuitous || s.TargetIP != labVIP.Addr() || !bytes.Equal(s.EthernetSrc, a.mac) ||
			s.EthernetDst.String() != "ff:ff:ff:ff:ff:ff" {
			t.Errorf("not a broadcast gratuitous ARP for the VIP from the holder: %+v", s)
		}
		switch s.Kind {
		case KindARPRequest:
			if !bytes.Equal(s.TargetMAC, zeroMAC) {
				t.Errorf("request form with target MAC %s, want 00:00:00:00:00:00", s.TargetMAC)
			}
			reqs = append(reqs, s)
		case KindARPReply:
			if !bytes.Equal(s.TargetMAC, a.mac) {
				t.Errorf("reply form with target MAC %s, want the sender's %s", s.TargetMAC, a.mac)
			}
			reps = append(reps, s)
		default:
			t.Errorf("unexpected kind %s", s.Kind)
		}
	}
	if len(reqs) != 3 || len(reps) != 3 {
		t.Fatalf("%d requests and %d replies, want 3 and 3", len(reqs), len(reps))
	}
	for i := 1; i < len(reqs); i++ {
		if gap := reqs[i].At.Sub(reqs[i-1].At); gap < 80*time.Millisecond {
			t.Errorf("announcements %d and %d only %v apart, want about %v", i, i+1, gap, cfg.GARPInterval)
		}
	}
}

// sendFrom sends frames from inside n's namespace on eth0.
func sendFrom(t *testing.T, n *labNode, frames ...[]byte) {
	t.Helper()
	n.do(t, func() error {
		c, err := listen(linkInfo{index: ifIndex(t, n), name: labIface, mac: n.mac}, unix.ETH_P_ARP)
		if err != nil {
			return err
		}
		defer c.Close()
		return send(c, frames)
	})
}

// ifIndex returns the index of n's eth0.
func ifIndex(t *testing.T, n *labNode) int {
	t.Helper()
	l, err := n.handle(t).LinkByName(labIface)
	if err != nil {
		t.Fatalf("link in %s: %v", n.name, err)
	}
	return l.Attrs().Index
}

func TestGARP_UpdatesPeerNeighbourEntry(t *testing.T) {
	staleMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	vip := labVIP.Addr()
	build := map[string]func() ([][]byte, error){
		"request form only": func() ([][]byte, error) {
			f, err := garpRequest(net.HardwareAddr{0x02, 0, 0, 0, 0, 1}, vip)
			return [][]byte{f}, err
		},
		"reply form only": func() ([][]byte, error) {
			f, err := garpReply(net.HardwareAddr{0x02, 0, 0, 0, 0, 1}, vip)
			return [][]byte{f}, err
		},
		"manager hold": nil,
	}
	for name, frames := range build {
		t.Run(name, func(t *testing.T) {
			l := newLab(t, "a", "c")
			a, c := l.node("a"), l.node("c")
			hc := c.handle(t)
			ipRun(t, "-n", c.name, "neigh", "replace", vip.String(), "lladdr", staleMAC.String(), "dev", labIface, "nud", "stale")
			if got := c.neighMAC(t, hc, vip); !bytes.Equal(got, staleMAC) {
				t.Fatalf("pre-seeded entry has MAC %s, want %s", got, staleMAC)
			}
			if frames == nil {
				m := a.manager(t, labConfig(30*time.Second))
				holdFor(t, m, time.Minute)
			} else {
				f, err := frames()
				if err != nil {
					t.Fatal(err)
				}
				sendFrom(t, a, f...)
			}
			waitFor(t, 2*time.Second, func() bool { return bytes.Equal(c.neighMAC(t, hc, vip), a.mac) },
				"the peer's neighbour entry for %s to move from %s to the holder's %s", vip, staleMAC, a.mac)
		})
	}
}

func TestProbe_CountsHolders(t *testing.T) {
	l := newLab(t, "a", "b", "c")
	a, b, c := l.node("a"), l.node("b"), l.node("c")
	ctx := context.Background()
	holder := a.manager(t, labConfig(30*time.Second))
	observer := c.manager(t, labConfig(30*time.Second)) // same VIP, never claims
	holdFor(t, holder, time.Minute)

	macs, err := observer.Probe(ctx, 500*time.Millisecond)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if len(macs) != 1 || !bytes.Equal(macs[0], a.mac) {
		t.Fatalf("one holder: probe saw %v, want exactly [%s]", macs, a.mac)
	}
	others, err := holder.Probe(ctx, 300*time.Millisecond)
	if err != nil || len(others) != 0 {
		t.Fatalf("holder's own probe: %v, %v; want no other MAC", others, err)
	}

	// The VIP wrongly added on a second host as well.
	ipRun(t, "-n", b.name, "addr", "add", labVIP.String(), "dev", labIface)
	macs, err = observer.Probe(ctx, 500*time.Millisecond)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	slices.SortFunc(macs, func(x, y net.HardwareAddr) int { return bytes.Compare(x, y) })
	if len(macs) != 2 || !bytes.Equal(macs[0], a.mac) || !bytes.Equal(macs[1], b.mac) {
		t.Fatalf("two holders: probe saw %v, want [%s %s]", macs, a.mac, b.mac)
	}
	// The package-level Probe, run inside the observer's namespace.
	c.do(t, func() error {
		macs, err := Probe(ctx, labIface, labVIP.Addr(), 500*time.Millisecond)
		if err != nil {
			return err
		}
		if len(macs) != 2 {
			t.Errorf("package Probe saw %v, want two MACs", macs)
		}
		return nil
	})
	others, err = holder.Probe(ctx, 300*time.Millisecond)
	if err != nil || len(others) != 1 || !bytes.Equal(others[0], b.mac) {
		t.Fatalf("holder's probe with a second holder: %v, %v; want [%s]", others, err, b.mac)
	}

	// A probe ends with its context.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := observer.Probe(short, 10*time.Second); !errors.Is(err, context.DeadlineExceeded) && err != nil {
		t.Fatalf("Probe with a short context: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Probe ignored its context's deadline: took %v", took)
	}
}

func TestProbe_RejectsIPv6(t *testing.T) {
	l := newLab(t, "a")
	cfg := labConfig(time.Second)
	cfg.Addr = labVIP6
	m := l.node("a").manager(t, cfg)
	if _, err := m.Probe(context.Background(), time.Second); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("IPv6 probe: err = %v, want ErrNotSupported", err)
	}
}

func TestConflictMonitor_ReportsSecondHolder(t *testing.T) {
	l := newLab(t, "a", "b", "c")
	a, b, c := l.node("a"), l.node("b"), l.node("c")
	ctx := context.Background()
	holder := a.manager(t, labConfig(30*time.Second))
	observer := c.manager(t, labConfig(30*time.Second))
	holdFor(t, holder, time.Minute)
	newMon := func(m *Manager, expected net.HardwareAddr) (*ConflictMonitor, chan ProbeReport) {
		reports := make(chan ProbeReport, 64)
		mon, err := NewConflictMonitor(m, MonitorConfig{
			Interval: 100 * time.Millisecond, Timeout: 200 * time.Millisecond,
			ExpectedMAC: func() net.HardwareAddr { return expected },
			Report: func(r ProbeReport) {
				select {
				case reports <- r:
				default:
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return mon, reports
	}
	inside, _ := newMon(holder, nil)
	outside, _ := newMon(observer, a.mac)

	// One holder: no conflict from inside or outside.
	if r := inside.Check(ctx); r.Err != nil || r.Conflict || !r.Holding {
		t.Fatalf("holder's check with one holder: %+v", r)
	}
	if r := outside.Check(ctx); r.Err != nil || r.Conflict || r.Holding || len(r.MACs) != 1 {
		t.Fatalf("observer's check with one holder: %+v", r)
	}

	// Run both monitors, then add the VIP on a second host.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	inMon, inReports := newMon(holder, nil)
	outMon, outReports := newMon(observer, a.mac)
	done := make(chan struct{}, 2)
	go func() { _ = inMon.Run(runCtx); done <- struct{}{} }()
	go func() { _ = outMon.Run(runCtx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	ipRun(t, "-n", b.name, "addr", "add", labVIP.String(), "dev", labIface)
	waitConflict := func(who string, reports chan ProbeReport, want int) ProbeReport {
		deadline := time.After(5 * time.Second)
		for {
			select {
			case r := <-reports:
				if r.Err != nil {
					t.Fatalf("%s monitor: %v", who, r.Err)
				}
				if r.Conflict && len(r.MACs) == want {
					return r
				}
			case <-deadline:
				t.Fatalf("%s monitor reported no conflict within 5s", who)
			}
		}
	}
	r := waitConflict("holder's", inReports, 1)
	if !r.Holding || !bytes.Equal(r.MACs[0], b.mac) {
		t.Errorf("holder's conflict report: %+v, want held here and claimed by %s", r, b.mac)
	}
	t.Logf("holder reports: %s", r.Reason)
	r = waitConflict("observer's", outReports, 2)
	if r.Holding {
		t.Errorf("observer's conflict report says it holds the VIP: %+v", r)
	}
	t.Logf("observer reports: %s", r.Reason)
}

func TestRelease_StopsAnnouncements(t *testing.T) {
	l := newLab(t, "a", "c")
	a, c := l.node("a"), l.node("c")
	seen := c.watch(t, labVIP.Addr())
	cfg := labConfig(30 * time.Second)
	cfg.GARPRepeat, cfg.GARPInterval, cfg.Refresh = 50, 50*time.Millisecond, 100*time.Millisecond
	m := a.manager(t, cfg)
	holdFor(t, m, time.Minute)
	waitFor(t, 3*time.Second, func() bool { return len(seen.from(a.mac)) >= 4 }, "two announcements")
	if err := m.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	// Frames already sent may still be in flight to the watcher for a moment.
	time.Sleep(50 * time.Millisecond)
	n := len(seen.from(a.mac))
	time.Sleep(6 * cfg.GARPInterval)
	if after := len(seen.from(a.mac)); after != n {
		t.Fatalf("%d more frames after Release returned; want none", after-n)
	}
	// Release closed the fence and removed the address, and either alone
	// would silence a loop still running. Open the fence and put the
	// address back by hand: only a burst or refresh that outlived Release
	// could announce it now.
	if m.fence == nil {
		t.Fatal("no fence after Hold and Release")
	}
	if err := m.fence.SetDeadline(soon()); err != nil {
		t.Fatal(err)
	}
	ipRun(t, "-n", a.name, "addr", "add", labVIP.String(), "dev", labIface)
	time.Sleep(6 * cfg.GARPInterval)
	if after := len(seen.from(a.mac)); after != n {
		t.Fatalf("%d frames announced a hand-added VIP after Release; its loops should be gone", after-n)
	}
}

func TestBurst_StopsWhenLeaseRunsOut(t *testing.T) {
	t.Parallel()
	l := newLab(t, "a", "c")
	a, c := l.node("a"), l.node("c")
	seen := c.watch(t, labVIP.Addr())
	cfg := labConfig(time.Second)
	cfg.GARPRepeat, cfg.GARPInterval, cfg.Refresh = 100, 50*time.Millisecond, 100*time.Millisecond
	m := a.manager(t, cfg)
	holdFor(t, m, time.Second) // within the lifetime: the backstop is 1s
	// Push the fence's deadline far out, so that only the address running
	// out (the check before each announcement) can stop the burst and the
	// refresh, not the fence dropping their frames.
	if err := m.fence.SetDeadline(soon()); err != nil {
		t.Fatal(err)
	}
	burst := m.burst
	waitFor(t, 5*time.Second, func() bool {
		held, _, err := m.Held()
		return err == nil && !held
	}, "the lease to run out")
	select {
	case <-burst.done:
	case <-time.After(10 * cfg.GARPInterval):
		t.Fatal("the burst goroutine still runs after the address ran out")
	}
	// At most one announcement was between its held-check and the wire.
	time.Sleep(50 * time.Millisecond)
	n := len(seen.from(a.mac))
	time.Sleep(6 * cfg.GARPInterval)
	if after := len(seen.from(a.mac)); after != n {
		t.Fatalf("%d frames announced the VIP after its lease ran out", after-n)
	}
	if n < 2 {
		t.Fatalf("saw only %d frames during the lease", n)
	}
}

func TestAnnounce_AndRefresh(t *testing.T) {
	l := newLab(t, "a", "c")
	a, c := l.node("a"), l.node("c")
	seen := c.watch(t, labVIP.Addr())
	cfg := labConfig(30 * time.Second)
	cfg.GARPRepeat = 2
	m := a.manager(t, cfg)
	ctx := context.Background()
	holdFor(t, m, time.Minute)
	waitFor(t, 3*time.Second, func() bool { return len(seen.from(a.mac)) >= 4 }, "the claim burst")
	// Epoch change: a fresh burst although nothing else changed.
	if err := m.Announce(ctx); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	waitFor(t, 3*time.Second, func() bool { return len(seen.from(a.mac)) >= 8 }, "the announce burst")

	// Refresh keeps announcing while held.
	if err := m.Release(); err != nil {
		t.Fatal(err)
	}
	cfg.GARPRepeat, cfg.Refresh = 1, 150*time.Millisecond
	r := a.manager(t, cfg)
	before := len(seen.from(a.mac))
	holdFor(t, r, time.Minute)
	waitFor(t, 3*time.Second, func() bool { return len(seen.from(a.mac)) >= before+2*4 },
		"the claim and three refreshes")
}

func TestHold_IPv6UnsolicitedNeighbourAdvertisement(t *testing.T) {
	l := newLab(t, "a", "c")
	a, c := l.node("a"), l.node("c")
	vip := labVIP6.Addr()
	staleMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	hc := c.handle(t)
	ipRun(t, "-n", c.name, "-6", "neigh", "replace", vip.String(), "lladdr", staleMAC.String(), "dev", labIface, "nud", "stale")
	seen := c.watch(t, vip)
	cfg := labConfig(30 * time.Second)
	cfg.Addr, cfg.GARPRepeat, cfg.GARPInterval = labVIP6, 2, 100*time.Millisecond
	m := a.manager(t, cfg)
	holdFor(t, m, 20*time.Second) // within the lifetime: the backstop is 30s
	got := a.addrs(t, a.handle(t), vip)
	if len(got) != 1 || got[0].ValidLft < 29 || got[0].ValidLft > 30 || got[0].Flags&unix.IFA_F_NODAD == 0 {
		t.Fatalf("IPv6 VIP on the holder: %+v; want one address, valid_lft 30, nodad", got)
	}
	waitFor(t, 3*time.Second, func() bool { return len(seen.from(a.mac)) >= 2 }, "two neighbour advertisements")
	for _, s := range seen.from(a.mac) {
		if s.Kind != KindNeighborAdvert || !s.Override || !s.Gratuitous || s.TargetIP != vip ||
			!bytes.Equal(s.EthernetDst, allNodesMAC) || !bytes.Equal(s.EthernetSrc, a.mac) {
			t.Errorf("not an unsolicited override advertisement for the VIP: %+v", s)
		}
	}
	waitFor(t, 2*time.Second, func() bool { return bytes.Equal(c.neighMAC(t, hc, vip), a.mac) },
		"the peer's IPv6 neighbour entry to move to the holder's MAC")
	if err := m.Release(); err != nil {
		t.Fatal(err)
	}
	if held, _, _ := m.Held(); held {
		t.Fatal("IPv6 VIP still held after Release")
	}
}

func TestLease_IPv6KernelRemovesAddressWithoutRenewal(t *testing.T) {
	t.Parallel()
	l := newLab(t, "a")
	cfg := labConfig(time.Second)
	cfg.Addr = labVIP6
	m := l.node("a").manager(t, cfg)
	holdFor(t, m, time.Second) // within the lifetime: the backstop is 1s
	start := time.Now()
	waitFor(t, 5*time.Second, func() bool {
		held, _, err := m.Held()
		return err == nil && !held
	}, "the kernel to remove the IPv6 address after its 1s lifetime")
	if gone := time.Since(start); gone < 950*time.Millisecond || gone > 3*time.Second {
		t.Fatalf("IPv6 address gone after %v, want about 1s", gone)
	}
}

func TestProbe_IgnoresAnnouncementsThatAreNotAnswers(t *testing.T) {
	l := newLab(t, "a", "b", "c")
	a, b, c := l.node("a"), l.node("b"), l.node("c")
	ctx := context.Background()
	holder := a.manager(t, labConfig(30*time.Second))
	observer := c.manager(t, labConfig(30*time.Second))
	holdFor(t, holder, time.Minute)
	// While the observer probes, b (which does not hold the VIP) sends
	// gratuitous ARPs for it, as a new holder does a few ms after a
	// planned handover.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.do(t, func() error {
			l, err := netlink.LinkByName(labIface)
			if err != nil {
				return err
			}
			li, err := linkInfoOf(l)
			if err != nil {
				return err
			}
			conn, err := listen(li, unix.ETH_P_ARP)
			if err != nil {
				return err
			}
			defer conn.Close()
			frames, err := announceFrames(li.mac, labVIP.Addr())
			if err != nil {
				return err
			}
			for {
				select {
				case <-stop:
					return nil
				case <-time.After(20 * time.Millisecond):
				}
				if err := send(conn, frames); err != nil {
					return err
				}
			}
		})
	}()
	macs, err := observer.Probe(ctx, 300*time.Millisecond)
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if len(macs) != 1 || !bytes.Equal(macs[0], a.mac) {
		t.Fatalf("probe saw %v, want only the holder %s (announcements are not answers)", macs, a.mac)
	}
}
