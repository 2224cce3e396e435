//go:build linux

package vip

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/newbieha/newbieha/vip/fence"
)

// Real-packet tests of the kernel fence, in the lab of lab_linux_test.go:
// node "a" holds the VIP (and its own address 10.200.0.11), node "c" is a
// client that keeps asking, by ARP and by TCP, and records on CLOCK_BOOTTIME
// when each attempt started and whether it was answered.

const labPort = 18080

// attemptTimeout is how long one attempt waits for its answer. On a veth
// an answer takes well under a millisecond; this only bounds an attempt
// that gets none. The transition is measured by when attempts start, not
// by this timeout.
const attemptTimeout = 100 * time.Millisecond

// attempt is one try by the client.
type attempt struct {
	at time.Duration // CLOCK_BOOTTIME when it started
	ok bool
}

// series is the attempts against one target with one protocol.
type series struct {
	name string
	list []attempt
}

// around summarises a series against deadline d: the last answered
// attempt's start and the first unanswered one at or after the last
// answered, relative to d (ms), and the counts.
func (s *series) around(d time.Duration) (lastOK, firstFail float64, okN, failN int) {
	lastOK, firstFail = -1e9, 1e9
	var lastOKAt time.Duration = -1
	for _, a := range s.list {
		if a.ok {
			okN++
			lastOK = ms(a.at - d)
			lastOKAt = a.at
		} else {
			failN++
		}
	}
	for _, a := range s.list {
		if !a.ok && a.at > lastOKAt {
			firstFail = ms(a.at - d)
			break
		}
	}
	return lastOK, firstFail, okN, failN
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// doErr runs fn on an OS thread inside n's namespace and returns its error
// (labNode.do fails the test instead, so it must run on the test goroutine).
func (n *labNode) doErr(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(n.name)
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
	return <-errc
}

// serveTCP accepts and closes connections on every address of n, port
// labPort, until cleanup.
func (n *labNode) serveTCP(t *testing.T) {
	t.Helper()
	var ln net.Listener
	n.do(t, func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", labPort))
		return err
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
}

// client probes targets from node c until CLOCK_BOOTTIME reaches until.
// Attempts go every 2 ms, and every 0.2 ms within 20 ms of focus.
type client struct {
	c     *labNode
	focus time.Duration
	until time.Duration
}

func (cl client) pause(now time.Duration) {
	if d := now - cl.focus; d > -20*time.Millisecond && d < 20*time.Millisecond {
		time.Sleep(200 * time.Microsecond)
		return
	}
	time.Sleep(2 * time.Millisecond)
}

// tcp runs TCP connect attempts to each target in turn.
func (cl client) tcp(targets ...netip.Addr) ([]*series, error) {
	out := make([]*series, len(targets))
	for i, ip := range targets {
		out[i] = &series{name: "tcp " + ip.String()}
	}
	err := cl.c.doErr(func() error {
		for Now() < cl.until {
			for i, ip := range targets {
				at := Now()
				conn, err := net.DialTimeout("tcp", netip.AddrPortFrom(ip, labPort).String(), attemptTimeout)
				if err == nil {
					_ = conn.Close()
				}
				out[i].list = append(out[i].list, attempt{at: at, ok: err == nil})
			}
			cl.pause(Now())
		}
		return nil
	})
	return out, err
}

// arp runs ARP probes (RFC 5227: sender IP 0.0.0.0, which Linux answers
// for its own addresses) for each IPv4 target in turn; an attempt is
// answered when a reply from want claims the target. Each probe comes from
// a sender hardware address of its own (02:fe:...), which the reply is sent
// back to, so a reply that arrives late is never counted for a later
// attempt.
func (cl client) arp(want net.HardwareAddr, targets ...netip.Addr) ([]*series, error) {
	out := make([]*series, len(targets))
	for i, ip := range targets {
		out[i] = &series{name: "arp " + ip.String()}
	}
	err := cl.c.doErr(func() error {
		l, err := netlinkLink(labIface)
		if err != nil {
			return err
		}
		conn, err := listen(l, unix.ETH_P_ARP)
		if err != nil {
			return err
		}
		defer conn.Close()
		buf := make([]byte, readBufSize)
		var seq uint32
		for Now() < cl.until {
			for i, ip := range targets {
				seq++
				sha := net.HardwareAddr{0x02, 0xfe, byte(seq >> 24), byte(seq >> 16), byte(seq >> 8), byte(seq)}
				req, err := probeRequest(sha, ip)
				if err != nil {
					return err
				}
				at := Now()
				if err := conn.SetReadDeadline(time.Now().Add(attemptTimeout)); err != nil {
					return err
				}
				if err := send(conn, [][]byte{req}); err != nil {
					return err
				}
				ok := false
				for !ok {
					n, _, err := conn.ReadFrom(buf)
					if err != nil {
						if isTimeout(err) {
							break
						}
						return err
					}
					s, err := parseSighting(buf[:n], ip, time.Now())
					ok = err == nil && s.Kind == KindARPReply && bytes.Equal(s.MAC, want) && bytes.Equal(s.TargetMAC, sha)
				}
				out[i].list = append(out[i].list, attempt{at: at, ok: ok})
			}
			cl.pause(Now())
		}
		return nil
	})
	return out, err
}

// netlinkLink returns the linkInfo of iface in the calling thread's
// namespace.
func netlinkLink(iface string) (linkInfo, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return linkInfo{}, err
	}
	return linkInfo{index: ifi.Index, name: ifi.Name, mac: ifi.HardwareAddr}, nil
}

// probeAll runs the ARP and TCP clients concurrently against vip and other
// (ARP only for IPv4) and returns all series.
func (cl client) probeAll(t *testing.T, holder *labNode, vip, other netip.Addr) []*series {
	t.Helper()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		all      []*series
		errs     []error
		families = []func() ([]*series, error){func() ([]*series, error) { return cl.tcp(vip, other) }}
	)
	if vip.Is4() {
		families = append(families, func() ([]*series, error) { return cl.arp(holder.mac, vip, other) })
	}
	for _, f := range families {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := f()
			mu.Lock()
			defer mu.Unlock()
			all = append(all, s...)
			errs = append(errs, err)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("client: %v", err)
	}
	return all
}

// checkCutoff asserts that each series against vip was answered until the
// deadline d and never from d on (plus slack), and that each series against
// the other address was answered throughout; it logs the measured edges.
func checkCutoff(t *testing.T, all []*series, vip netip.Addr, d time.Duration, from time.Duration) {
	t.Helper()
	const slack = 3 * time.Millisecond // "within a few ms": the budget the design allows
	for _, s := range all {
		lastOK, firstFail, okN, failN := s.around(d)
		isVIP := strings.HasSuffix(s.name, " "+vip.String())
		if isVIP {
			t.Logf("%-22s %4d answered, %3d unanswered; last answered attempt started %+.3f ms from the deadline, first unanswered %+.3f ms",
				s.name, okN, failN, lastOK, firstFail)
		} else {
			t.Logf("%-22s %4d answered, %3d unanswered (the other address, through to %+.0f ms)", s.name, okN, failN, lastOK)
		}
		for _, a := range s.list {
			switch {
			case isVIP && a.ok && a.at >= d+slack:
				t.Errorf("%s: attempt started %+.3f ms after the deadline was answered", s.name, ms(a.at-d))
			case isVIP && !a.ok && a.at >= from && a.at < d-attemptTimeout:
				t.Errorf("%s: attempt started %+.3f ms before the deadline got no answer", s.name, ms(a.at-d))
			case !isVIP && !a.ok:
				t.Errorf("%s: the interface's other address got no answer at %+.3f ms from the deadline", s.name, ms(a.at-d))
			}
		}
		if isVIP && (okN == 0 || failN == 0) {
			t.Errorf("%s: %d answered and %d unanswered; want both", s.name, okN, failN)
		}
	}
}

// fenceIn installs a fence for vip on a's eth0, closed (its handles only)
// at cleanup; the lab's namespaces go with the fence in them.
func fenceIn(t *testing.T, n *labNode, vip netip.Addr) *fence.Fence {
	t.Helper()
	var f *fence.Fence
	n.do(t, func() error {
		var err error
		f, err = fence.Install(fence.Config{Iface: labIface, VIP: vip})
		return err
	})
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func TestFence_VIPStopsAnsweringAtTheDeadline(t *testing.T) {
	l := newLab(t, "a", "c")
	a, c := l.node("a"), l.node("c")
	vip := labVIP.Addr()
	f := fenceIn(t, a, vip)
	ipRun(t, "-n", a.name, "addr", "add", labVIP.String(), "dev", labIface) // permanent: only the fence stops it
	a.serveTCP(t)
	start := Now()
	d := start + 400*time.Millisecond
	if err := f.SetDeadline(d); err != nil {
		t.Fatal(err)
	}
	all := client{c: c, focus: d, until: d + 300*time.Millisecond}.probeAll(t, a, vip, a.ip)
	checkCutoff(t, all, vip, d, start+50*time.Millisecond)
}

func TestFence_FreshOrZeroDeadlineDropsEverything(t *testing.T) {
	l := newLab(t, "a", "c")
	a, c := l.node("a"), l.node("c")
	vip := labVIP.Addr()
	ipRun(t, "-n", a.name, "addr", "add", labVIP.String(), "dev", labIface)
	a.serveTCP(t)
	f := fenceIn(t, a, vip)
	if d, err := f.Deadline(); err != nil || d != 0 {
		t.Fatalf("fresh fence deadline %v, %v; want 0", d, err)
	}
	expect := func(what string, vipAnswers bool) {
		t.Helper()
		// The client's neighbour entry for the VIP may still be resolving
		// from the last phase (retried once a second): start afresh.
		ipRun(t, "-n", c.name, "neigh", "flush", "dev", labIface)
		now := Now()
		for _, s := range (client{c: c, focus: -time.Hour, until: now + 100*time.Millisecond}).probeAll(t, a, vip, a.ip) {
			isVIP := strings.HasSuffix(s.name, " "+vip.String())
			for _, at := range s.list {
				if want := vipAnswers || !isVIP; at.ok != want {
					t.Fatalf("%s: %s attempt at +%.1f ms answered=%v, want %v", what, s.name, ms(at.at-now), at.ok, want)
				}
			}
		}
	}
	expect("fresh fence", false)
	if err := f.SetDeadline(Now() + time.Hour); err != nil {
		t.Fatal(err)
	}
	expect("deadline an hour ahead", true)
	if err := f.SetDeadline(0); err != nil {
		t.Fatal(err)
	}
	expect("deadline 0", false)
}

func TestFence_LateWriteCannotExtendTheDeadline(t *testing.T) {
	l := newLab(t, "a", "c")
	a, c := l.node("a"), l.node("c")
	vip := labVIP.Addr()
	ipRun(t, "-n", a.name, "addr", "add", labVIP.String(), "dev", labIface)
	a.serveTCP(t)
	f := fenceIn(t, a, vip)
	d := Now() + 100*time.Millisecond // the lease the holder computed
	if err := f.SetDeadline(d); err != nil {
		t.Fatal(err)
	}
	for Now() < d+20*time.Millisecond {
		time.Sleep(5 * time.Millisecond) // the holder is paused past its lease...
	}
	if err := f.SetDeadline(d); err != nil { // ...and then writes what it computed
		t.Fatal(err)
	}
	now := Now()
	for _, s := range (client{c: c, focus: -time.Hour, until: now + 150*time.Millisecond}).probeAll(t, a, vip, a.ip) {
		isVIP := strings.HasSuffix(s.name, " "+vip.String())
		for _, at := range s.list {
			if at.ok == isVIP {
				t.Fatalf("after the late write of an old deadline: %s at +%.1f ms answered=%v", s.name, ms(at.at-now), at.ok)
			}
		}
	}
	// The same through the Manager: a late Hold refuses and holds nothing.
	ipRun(t, "-n", a.name, "addr", "del", labVIP.String(), "dev", labIface)
	m := a.manager(t, labConfig(30*time.Second))
	claimed, err := m.Hold(context.Background(), d)
	if !errors.Is(err, ErrStaleConfirmation) || claimed {
		t.Fatalf("Hold with a passed deadline: %v, %v; want ErrStaleConfirmation", claimed, err)
	}
	if held, _, _ := m.Held(); held {
		t.Fatal("a refused Hold left the address on the interface")
	}
}

// TestFenceHelperProcess is not a test: it is the installer process that
// TestFence_OutlivesItsInstaller starts (inside `ip netns exec`, so with a
// mount namespace and /sys/fs/bpf of its own) and kills with SIGKILL.
func TestFenceHelperProcess(t *testing.T) {
	if os.Getenv("NEWBIEHA_FENCE_HELPER") != "1" {
		t.Skip("helper process for TestFence_OutlivesItsInstaller")
	}
	vip := netip.MustParseAddr(os.Getenv("NEWBIEHA_FENCE_VIP"))
	in, err := time.ParseDuration(os.Getenv("NEWBIEHA_FENCE_IN"))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	f, err := fence.Install(fence.Config{Iface: labIface, VIP: vip})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	d := fence.Now() + in
	if err := f.SetDeadline(d); err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Printf("ready %d %d\n", f.MapID(), int64(d))
	time.Sleep(time.Hour) // until killed
}

func TestFence_OutlivesItsInstaller(t *testing.T) {
	l := newLab(t, "a", "c")
	a, c := l.node("a"), l.node("c")
	vip := labVIP.Addr()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", a.name, exe, "-test.run=^TestFenceHelperProcess$")
	cmd.Env = append(os.Environ(), "NEWBIEHA_FENCE_HELPER=1", "NEWBIEHA_FENCE_VIP="+vip.String(), "NEWBIEHA_FENCE_IN=1500ms")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v (output %q)", err, line)
	}
	fields := strings.Fields(line)
	if len(fields) != 3 || fields[0] != "ready" {
		t.Fatalf("helper said %q", line)
	}
	mapID, _ := strconv.ParseUint(fields[1], 10, 32)
	dn, _ := strconv.ParseInt(fields[2], 10, 64)
	d := time.Duration(dn)

	// kill -9 the installer: nothing of it runs any more.
	if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("helper exit: %v; want killed", err)
	}
	t.Logf("installer killed %.0f ms before the deadline it wrote", ms(d-Now()))

	// The fence is still attached, with the dead process's deadline, and
	// this process (another mount namespace: no shared bpffs) finds it
	// through tc, and Install keeps it.
	var found []fence.Attached
	a.do(t, func() error {
		var err error
		found, err = fence.List(labIface)
		return err
	})
	if len(found) != 1 || !found[0].Complete() || uint64(found[0].MapID) != mapID || found[0].Deadline != d {
		t.Fatalf("after the installer died: fences %+v; want map %d with deadline %v", found, mapID, d)
	}
	f := fenceIn(t, a, vip)
	if got, _ := f.Deadline(); got != d || uint64(f.MapID()) != mapID {
		t.Fatalf("Install after the installer died: map %d deadline %v; want map %d deadline %v kept", f.MapID(), got, mapID, d)
	}

	ipRun(t, "-n", a.name, "addr", "add", labVIP.String(), "dev", labIface)
	a.serveTCP(t)
	start := Now()
	all := client{c: c, focus: d, until: d + 300*time.Millisecond}.probeAll(t, a, vip, a.ip)
	checkCutoff(t, all, vip, d, start+50*time.Millisecond)
}

// TestHold_FenceEnforcesTheDeadlineWithoutTheManager holds the VIP through
// the Manager, then stops calling: the address stays (its lifetime is long)
// but the VIP goes quiet at the deadline.
func TestHold_FenceEnforcesTheDeadlineWithoutTheManager(t *testing.T) {
	l := newLab(t, "a", "c")
	a, c := l.node("a"), l.node("c")
	seen := c.watch(t, labVIP.Addr())
	a.serveTCP(t)
	m := a.manager(t, labConfig(30*time.Second))
	ctx := context.Background()
	start := Now()
	claimed, err := m.Hold(ctx, start+200*time.Millisecond)
	if err != nil || !claimed {
		t.Fatalf("first Hold: %v, %v; want claimed", claimed, err)
	}
	waitFor(t, 2*time.Second, func() bool { return len(seen.from(a.mac)) >= 2 }, "the claim's gratuitous ARP")
	d := start + 500*time.Millisecond
	claimed, err = m.Hold(ctx, d) // a renewal
	if err != nil || claimed {
		t.Fatalf("renewing Hold: %v, %v; want not claimed (already held)", claimed, err)
	}
	var f *fence.Fence
	a.do(t, func() error {
		var err error
		f, err = fence.Open(fence.Config{Iface: labIface, VIP: labVIP.Addr()})
		return err
	})
	defer f.Close()
	if got, _ := f.Deadline(); got != d {
		t.Fatalf("fence deadline %v after Hold(%v)", got, d)
	}
	got := a.addrs(t, a.handle(t), labVIP.Addr())
	if len(got) != 1 || got[0].ValidLft < 29 {
		t.Fatalf("held address: %+v; want one with the 30s backstop lifetime", got)
	}
	all := client{c: c, focus: d, until: d + 300*time.Millisecond}.probeAll(t, a, labVIP.Addr(), a.ip)
	checkCutoff(t, all, labVIP.Addr(), d, start+250*time.Millisecond)
	if held, _, _ := m.Held(); !held {
		t.Fatal("the address went; this test wants the fence alone to have stopped it")
	}
	// Announcements after the deadline do not leave the host either; the
	// send reports the drop.
	n := len(seen.from(a.mac))
	if err := m.Announce(ctx); err != nil && !errors.Is(err, ErrAnnounce) {
		t.Fatal(err)
	} else {
		t.Logf("Announce after the deadline: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if after := len(seen.from(a.mac)); after != n {
		t.Fatalf("%d gratuitous ARP frames left the host after the deadline", after-n)
	}
}

func TestHold_RefusesAndRemovesWhenTheDeadlinePassesDuringTheWrite(t *testing.T) {
	l := newLab(t, "a")
	m := l.node("a").manager(t, labConfig(30*time.Second))
	ctx := context.Background()
	if _, err := m.Hold(ctx, 0); !errors.Is(err, ErrStaleConfirmation) {
		t.Fatalf("Hold(0): %v", err)
	}
	d := Now() + time.Hour
	calls := 0
	m.bootNow = func() time.Duration {
		calls++
		if calls == 1 {
			return d - time.Millisecond // the check before the write
		}
		return d + time.Second // paused during the write
	}
	claimed, err := m.Hold(ctx, d)
	if !errors.Is(err, ErrStaleConfirmation) || claimed {
		t.Fatalf("Hold that outlived its deadline: %v, %v; want ErrStaleConfirmation", claimed, err)
	}
	if held, _, _ := m.Held(); held {
		t.Fatal("the address stayed after the deadline passed during the write")
	}
}

func TestHold_ReleaseClosesTheFenceThenRemovesTheAddress(t *testing.T) {
	l := newLab(t, "a", "c")
	a, c := l.node("a"), l.node("c")
	a.serveTCP(t)
	m := a.manager(t, labConfig(30*time.Second))
	if _, err := m.Hold(context.Background(), Now()+time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := m.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if held, _, _ := m.Held(); held {
		t.Fatal("address still there after Release")
	}
	var found []fence.Attached
	a.do(t, func() error {
		var err error
		found, err = fence.List(labIface)
		return err
	})
	if len(found) != 1 || found[0].Deadline != 0 {
		t.Fatalf("fence after Release: %+v; want it attached with deadline 0", found)
	}
	// Even with the address put back by hand, the VIP stays quiet.
	ipRun(t, "-n", a.name, "addr", "add", labVIP.String(), "dev", labIface)
	now := Now()
	for _, s := range (client{c: c, focus: -time.Hour, until: now + 60*time.Millisecond}).probeAll(t, a, labVIP.Addr(), a.ip) {
		isVIP := strings.HasSuffix(s.name, " "+labVIP.Addr().String())
		for _, at := range s.list {
			if at.ok == isVIP {
				t.Fatalf("after Release: %s answered=%v", s.name, at.ok)
			}
		}
	}
	// A new Manager (a restarted agent) finds the fence and keeps it closed.
	ipRun(t, "-n", a.name, "addr", "del", labVIP.String(), "dev", labIface)
	m2 := a.manager(t, labConfig(30*time.Second))
	if err := m2.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Hold(context.Background(), Now()+time.Hour); err != nil {
		t.Fatalf("Hold by a new Manager over the old fence: %v", err)
	}
	a.do(t, func() error {
		var err error
		found, err = fence.List(labIface)
		return err
	})
	if len(found) != 1 {
		t.Fatalf("fences after a second Manager's Hold: %+v; want the one reused", found)
	}
}

func TestHold_CloseRemovesTheAddressThenTheFence(t *testing.T) {
	l := newLab(t, "a")
	a := l.node("a")
	m := a.manager(t, labConfig(30*time.Second))
	if _, err := m.Hold(context.Background(), Now()+time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := a.addrs(t, a.handle(t), labVIP.Addr()); len(got) != 0 {
		t.Fatalf("Close left the address: %+v", got)
	}
	a.do(t, func() error {
		found, err := fence.List(labIface)
		if err != nil || len(found) != 0 {
			return fmt.Errorf("fences after Close: %+v, %v; want none", found, err)
		}
		return nil
	})
	out, err := exec.Command("ip", "netns", "exec", a.name, "tc", "qdisc", "show", "dev", labIface).CombinedOutput()
	if err != nil || strings.Contains(string(out), "clsact") {
		t.Fatalf("qdiscs after Close: %s %v; want the clsact the fence added gone", out, err)
	}
	if _, err := m.Hold(context.Background(), Now()+time.Hour); !errors.Is(err, ErrClosed) {
		t.Fatalf("Hold after Close: %v", err)
	}
}

func TestHold_RepairsTheFenceOrFailsClosed(t *testing.T) {
	l := newLab(t, "a")
	a := l.node("a")
	m := a.manager(t, labConfig(30*time.Second))
	ctx := context.Background()
	d := Now() + time.Hour
	if _, err := m.Hold(ctx, d); err != nil {
		t.Fatal(err)
	}
	tc := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"netns", "exec", a.name, "tc"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("tc %v: %v: %s", args, err, out)
		}
	}
	handle := fmt.Sprintf("%#x", fence.HandleBase+1)
	// Someone deletes the egress filter: the next Hold puts it back.
	tc("filter", "del", "dev", labIface, "egress", "pref", "1", "handle", handle, "bpf")
	if claimed, err := m.Hold(ctx, d); err != nil || claimed {
		t.Fatalf("Hold after the egress filter was deleted: %v, %v; want it repaired", claimed, err)
	}
	a.do(t, func() error {
		found, err := fence.List(labIface)
		if err != nil || len(found) != 1 || !found[0].Complete() || found[0].Deadline != d {
			return fmt.Errorf("fence after repair: %+v, %v", found, err)
		}
		return nil
	})
	// Now the egress hook's priority 1 is taken by another kind of filter:
	// the fence cannot be put back, so Hold fails closed.
	tc("filter", "del", "dev", labIface, "egress", "pref", "1", "handle", handle, "bpf")
	tc("filter", "add", "dev", labIface, "egress", "pref", "1", "u32", "match", "u32", "0", "0", "flowid", "1:1")
	claimed, err := m.Hold(ctx, d)
	if !errors.Is(err, ErrFence) || claimed {
		t.Fatalf("Hold without a possible fence: %v, %v; want ErrFence", claimed, err)
	}
	t.Logf("Hold failed closed: %v", err)
	if held, _, _ := m.Held(); held {
		t.Fatal("Hold failed on the fence but left the address on the interface")
	}
}

func TestCleanup_RemovesAddressThenLeftoverFences(t *testing.T) {
	l := newLab(t, "a")
	a := l.node("a")
	f := fenceIn(t, a, labVIP.Addr())
	if err := f.SetDeadline(Now() + time.Hour); err != nil { // a crashed holder's live lease
		t.Fatal(err)
	}
	_ = fenceIn(t, a, netip.MustParseAddr("10.200.0.101")) // an older VIP's fence
	ipRun(t, "-n", a.name, "addr", "add", labVIP.String(), "dev", labIface)
	a.do(t, func() error { return Cleanup(Assignment{Addr: labVIP, Iface: labIface}, "") })
	if got := a.addrs(t, a.handle(t), labVIP.Addr()); len(got) != 0 {
		t.Fatalf("Cleanup left the address: %+v", got)
	}
	a.do(t, func() error {
		found, err := fence.List(labIface)
		if err != nil || len(found) != 0 {
			return fmt.Errorf("fences after Cleanup: %+v, %v; want none", found, err)
		}
		// Nothing left: a second Cleanup, and one on a missing interface, are fine.
		if err := Cleanup(Assignment{Addr: labVIP, Iface: labIface}, ""); err != nil {
			return err
		}
		return Cleanup(Assignment{Addr: labVIP, Iface: "nosuch0"}, "")
	})
}

func TestHold_IPv6FenceStopsTheVIPAndItsAdvertisements(t *testing.T) {
	l := newLab(t, "a", "c")
	a, c := l.node("a"), l.node("c")
	other6 := netip.MustParseAddr("fd00:200::11")
	ipRun(t, "-n", a.name, "addr", "add", other6.String()+"/64", "dev", labIface, "nodad")
	ipRun(t, "-n", c.name, "addr", "add", "fd00:200::12/64", "dev", labIface, "nodad")
	a.serveTCP(t)
	vip := labVIP6.Addr()
	seen := c.watch(t, vip)
	cfg := labConfig(30 * time.Second)
	cfg.Addr = labVIP6
	m := a.manager(t, cfg)
	start := Now()
	d := start + 400*time.Millisecond
	if claimed, err := m.Hold(context.Background(), d); err != nil || !claimed {
		t.Fatalf("Hold: %v, %v", claimed, err)
	}
	waitFor(t, 2*time.Second, func() bool { return len(seen.from(a.mac)) >= 1 }, "the unsolicited neighbour advertisement")
	all := client{c: c, focus: d, until: d + 200*time.Millisecond}.probeAll(t, a, vip, other6)
	checkCutoff(t, all, vip, d, start+100*time.Millisecond)

	// After the deadline a client that has to resolve the VIP again gets no
	// neighbour advertisement, solicited or not.
	ipRun(t, "-n", c.name, "-6", "neigh", "flush", "dev", labIface)
	n := len(seen.from(a.mac))
	if err := m.Announce(context.Background()); err != nil && !errors.Is(err, ErrAnnounce) {
		t.Fatal(err)
	}
	_ = c.doErr(func() error {
		conn, err := net.DialTimeout("tcp", netip.AddrPortFrom(vip, labPort).String(), 200*time.Millisecond)
		if err == nil {
			_ = conn.Close()
			t.Error("TCP to the IPv6 VIP connected after the deadline")
		}
		return nil
	})
	if after := len(seen.from(a.mac)); after != n {
		t.Fatalf("%d neighbour advertisements for the VIP left the host after the deadline", after-n)
	}
}

// Prepare installs the fence closed and touches no address; a Hold after it
// reuses that fence.
func TestPrepare_InstallsTheFenceClosedWithoutTheAddress(t *testing.T) {
	l := newLab(t, "a")
	a := l.node("a")
	m := a.manager(t, labConfig(30*time.Second))
	if err := m.Prepare(); err != nil {
		t.Fatal(err)
	}
	var f *fence.Fence
	a.do(t, func() error {
		var err error
		f, err = fence.Open(fence.Config{Iface: labIface, VIP: labVIP.Addr()})
		return err
	})
	defer f.Close()
	if d, err := f.Deadline(); err != nil || d != 0 {
		t.Fatalf("prepared fence deadline %v, %v; want 0 (closed)", d, err)
	}
	if got := a.addrs(t, a.handle(t), labVIP.Addr()); len(got) != 0 {
		t.Fatalf("Prepare added the address: %+v", got)
	}
	d := Now() + time.Second
	if _, err := m.Hold(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Deadline(); got != d {
		t.Fatalf("Hold after Prepare wrote %v to another fence; the prepared one has %v", d, got)
	}
}
