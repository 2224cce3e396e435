//go:build linux

package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/newbieha/newbieha/vip/fence"
)

// netlinkTimeout bounds one netlink request; the kernel answers in
// microseconds, so hitting it means something is badly wrong.
const netlinkTimeout = 5 * time.Second

// infinityLifetime is the valid_lft the kernel reports for an address without
// a lifetime (INFINITY_LIFE_TIME).
const infinityLifetime = 0xFFFFFFFF

// Manager adds, renews, announces and removes one virtual IP on one
// interface. There is one per agent. Its methods are safe for concurrent use.
//
// A Manager acts in the network namespace of the OS thread that called New,
// for its whole life, whichever goroutine later calls it.
//
// Only Hold and Announce put the address on the wire or the interface, and
// the Manager never decides on its own to do so: the caller (the cluster controller) calls them only while the one
// rule allows it (docs/vip.md). Background goroutines only repeat
// announcements of an address the kernel still holds, and stop on Release
// and Close.
//
// Hold guards the address with the kernel fence (package vip/fence): an
// eBPF classifier on the interface that drops the VIP's traffic once
// CLOCK_BOOTTIME passes the deadline the holder's lease allows, whatever
// this process does afterwards.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	ns      *netNS
	bootNow func() time.Duration // fence.Now (CLOCK_BOOTTIME); tests replace it

	// nlMu guards nl against Close; every netlink use holds it for reading.
	nlMu   sync.RWMutex
	nl     *netlink.Handle
	closed atomic.Bool

	// mu serialises the state-changing methods (Hold, Prepare, Announce,
	// Release, Close). The background loops never take it, so a method
	// holding it may wait for them to stop.
	mu      sync.Mutex
	burst   *loop
	refresh *loop
	fence   *fence.Fence // nil until Hold installs it, or Release finds one

	// What the last full Hold checked and wrote, for Config.Recheck:
	// trusted is set by a Hold that verified the fence and wrote the
	// address, and cleared by everything that removes either. checkedAt is
	// when the fence was verified, wroteAt when the address was written
	// (read before the write, so never later than the kernel's own
	// timestamp) with wroteSecs of lifetime; all on CLOCK_BOOTTIME.
	trusted   bool
	checkedAt time.Duration
	wroteAt   time.Duration
	wroteSecs int
}

// loop is one background goroutine with its stop path.
type loop struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startLoop runs fn on a new goroutine until fn returns or the loop stops.
func startLoop(fn func(ctx context.Context)) *loop {
	ctx, cancel := context.WithCancel(context.Background())
	l := &loop{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		fn(ctx)
	}()
	return l
}

// stop cancels the loop and waits for its goroutine to return. A nil loop
// is a no-op.
func (l *loop) stop() {
	if l == nil {
		return
	}
	l.cancel()
	<-l.done
}

// New validates cfg and returns a Manager for it. It checks that the
// interface exists, but changes nothing on the host.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ns, err := currentNetNS()
	if err != nil {
		return nil, err
	}
	var h *netlink.Handle
	err = ns.do(func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		ns.close()
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		h.Close()
		ns.close()
		return nil, fmt.Errorf("set netlink timeout: %w", err)
	}
	m := &Manager{
		cfg:     cfg,
		log:     cfg.Logger.With("vip", cfg.Addr.String(), "iface", cfg.Iface),
		ns:      ns,
		bootNow: fence.Now,
		nl:      h,
	}
	if _, err := m.link(); err != nil {
		h.Close()
		ns.close()
		return nil, err
	}
	return m, nil
}

// Lifetime returns the lease the kernel enforces: Config.Lifetime rounded up
// to a whole second.
func (m *Manager) Lifetime() time.Duration { return m.cfg.Lifetime }

// Assignment returns the address and interface this Manager looks after.
func (m *Manager) Assignment() Assignment { return m.cfg.Assignment }

// withHandle runs fn with the netlink handle unless the Manager is closed.
func (m *Manager) withHandle(fn func(h *netlink.Handle) error) error {
	m.nlMu.RLock()
	defer m.nlMu.RUnlock()
	if m.closed.Load() {
		return ErrClosed
	}
	return fn(m.nl)
}

// link looks up the interface by name (its index may change if it is
// recreated).
func (m *Manager) link() (netlink.Link, error) {
	var l netlink.Link
	err := m.withHandle(func(h *netlink.Handle) error {
		var err error
		l, err = h.LinkByName(m.cfg.Iface)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		return nil, fmt.Errorf("look up interface %s: %w", m.cfg.Iface, err)
	}
	return l, nil
}

// vipAddrs returns the addresses on l whose IP is the VIP, whatever their
// prefix length.
func vipAddrs(h *netlink.Handle, l netlink.Link, ip netip.Addr) ([]netlink.Addr, error) {
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	all, err := h.AddrList(l, family)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	var out []netlink.Addr
	for _, a := range all {
		if a.IPNet == nil {
			continue
		}
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
			out = append(out, a)
		}
	}
	return out, nil
}

// remaining converts a dumped address's valid_lft to a duration.
func remaining(a netlink.Addr) time.Duration {
	if a.Flags&unix.IFA_F_PERMANENT != 0 || uint32(a.ValidLft) == infinityLifetime {
		return Forever
	}
	return time.Duration(a.ValidLft) * time.Second
}

// Held reports whether the VIP is on the interface and the remaining
// lifetime the kernel reports for it, in whole seconds (the kernel floors
// the elapsed time, so the true remainder is up to one second less), or
// Forever for an address without a lifetime. A missing interface holds
// nothing and is not an error.
func (m *Manager) Held() (bool, time.Duration, error) {
	var (
		held bool
		left time.Duration
	)
	err := m.withHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName(m.cfg.Iface)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				return nil
			}
			return fmt.Errorf("look up interface %s: %w", m.cfg.Iface, err)
		}
		addrs, err := vipAddrs(h, l, m.cfg.Addr.Addr())
		if err != nil {
			return err
		}
		for _, a := range addrs {
			held = true
			left = max(left, remaining(a))
		}
		return nil
	})
	if err != nil {
		return false, 0, fmt.Errorf("check vip %s: %w", m.cfg.Assignment, err)
	}
	return held, left, nil
}

// writeAddr adds or replaces the address (netlink RTM_NEWADDR with
// NLM_F_REPLACE, so it is idempotent) with valid_lft = preferred_lft =
// lifetime (whole seconds) and reports whether it was absent before. Right
// after the write it calls stale: a non-nil result means the caller's
// authority ran out during the write (a pause between its check and the
// write), so the address is removed again and that error returned.
func (m *Manager) writeAddr(lifetime time.Duration, stale func() error) (bool, error) {
	ip := m.cfg.Addr.Addr()
	secs := int(RoundLifetime(lifetime) / time.Second)
	var absent bool
	err := m.withHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName(m.cfg.Iface)
		if err != nil {
			return fmt.Errorf("look up interface %s: %w", m.cfg.Iface, err)
		}
		before, err := vipAddrs(h, l, ip)
		if err != nil {
			return err
		}
		absent = len(before) == 0
		a := &netlink.Addr{
			IPNet:       &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(m.cfg.Addr.Bits(), ip.BitLen())},
			ValidLft:    secs,
			PreferedLft: secs,
		}
		if ip.Is6() {
			// Usable at once: duplicate address detection would hold the
			// address tentative for about a second, and conflicts are
			// this package's job anyway. Keepalived adds VIPs the same way.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrReplace(l, a); err != nil {
			return fmt.Errorf("add %s to %s with lifetime %ds: %w", m.cfg.Addr, m.cfg.Iface, secs, err)
		}
		if staleErr := stale(); staleErr != nil {
			// Paused between the check and the write: the kernel now
			// holds a lease the caller's authority does not cover.
			if err := h.AddrDel(l, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("remove %s again (%w): %w", m.cfg.Addr, staleErr, err)
			}
			return staleErr
		}
		// The same IP with another prefix length would be a second address
		// outside the lease; remove it so the lease alone decides.
		for _, old := range before {
			if ones, _ := old.Mask.Size(); ones != m.cfg.Addr.Bits() {
				m.log.Warn("removing the vip's address with another prefix length", "addr", old.IPNet.String())
				if err := h.AddrDel(l, &old); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
					return fmt.Errorf("remove %s from %s: %w", old.IPNet, m.cfg.Iface, err)
				}
			}
		}
		return nil
	})
	return absent, err
}

// Hold is how the holder of a lease keeps the VIP: it makes sure the
// kernel fence is installed and in force on the interface (installing or
// repairing it, and reading it back), writes deadline into it, and then
// adds or refreshes the address. deadline is an instant on CLOCK_BOOTTIME
// (Now): the start of the lease round that granted the lease plus the
// lease length, never later. From that instant the kernel drops the VIP's
// ARP and IP traffic whatever this process does, so a late or repeated
// call cannot extend the lease beyond the value it carries.
//
// In order:
//
//  1. ensure the fence (Install, or Verify an installed one); if that fails,
//     fail closed: remove the address, return an error wrapping ErrFence;
//  2. write deadline and read it back (ErrFence on failure, as above);
//  3. if Now() >= deadline, refuse with ErrStaleConfirmation, removing the
//     address (the fence already drops its traffic);
//  4. add or replace the address with valid_lft = the larger of Lifetime and
//     the time left to the deadline (a backstop that cleans up after a
//     crash; the fence is what enforces the deadline), removing it again if
//     the deadline passed during the write;
//  5. if the address was absent, start the announcements: a burst of
//     GARPRepeat announcements (each a gratuitous ARP request and reply,
//     or one unsolicited neighbour advertisement for IPv6), GARPInterval
//     apart, the first sent before Hold returns and the rest on a
//     background goroutine; and, if Refresh is set, one more every Refresh
//     while the address is held.
//
// Hold is the same call for the first claim and for every renewal, and it
// re-adds an address that has gone (its backstop lifetime ran out, or
// someone removed it), announcing it as a claim: the caller has just shown
// it may hold the VIP until deadline, and the fence enforces that deadline
// whatever the address does.
//
// claimed reports step 5: the address was absent and is now added and
// announced. A returned error wrapping ErrAnnounce comes with claimed true:
// the address and the fence are in place, the first announcement failed,
// and the burst still tries the rest.
func (m *Manager) Hold(ctx context.Context, deadline time.Duration) (claimed bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return false, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if deadline <= 0 {
		m.dropLocked("zero deadline")
		return false, fmt.Errorf("hold %s: deadline %v: %w", m.cfg.Assignment, deadline, ErrStaleConfirmation)
	}
	if m.canRenewQuickly(deadline) {
		// Steps 2 and 3 only: the fence was verified and the address
		// written (with a lifetime that outlasts deadline) within Recheck.
		if err := m.fence.SetDeadline(deadline); err != nil {
			m.dropLocked("fence deadline not written")
			return false, fmt.Errorf("hold %s: %w: %w", m.cfg.Assignment, ErrFence, err)
		}
		if now := m.bootNow(); now >= deadline {
			m.dropLocked("deadline passed")
			return false, fmt.Errorf("hold %s: deadline passed %v ago: %w", m.cfg.Assignment, now-deadline, ErrStaleConfirmation)
		}
		return false, nil
	}
	m.trusted = false
	checked := m.bootNow()
	f, err := m.ensureFence()
	if err != nil {
		m.dropLocked("fence not in place")
		return false, fmt.Errorf("hold %s: %w: %w", m.cfg.Assignment, ErrFence, err)
	}
	if err := f.SetDeadline(deadline); err != nil {
		m.dropLocked("fence deadline not written")
		return false, fmt.Errorf("hold %s: %w: %w", m.cfg.Assignment, ErrFence, err)
	}
	now := m.bootNow()
	if now >= deadline {
		m.dropLocked("deadline passed")
		return false, fmt.Errorf("hold %s: deadline passed %v ago: %w", m.cfg.Assignment, now-deadline, ErrStaleConfirmation)
	}
	lifetime := holdLifetime(m.cfg.Lifetime, deadline-now)
	absent, err := m.writeAddr(lifetime, func() error {
		if now := m.bootNow(); now >= deadline {
			return fmt.Errorf("deadline passed %v ago while adding the address, removed it again: %w", now-deadline, ErrStaleConfirmation)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("hold %s: %w", m.cfg.Assignment, err)
	}
	m.trusted, m.checkedAt, m.wroteAt, m.wroteSecs = true, checked, now, int(RoundLifetime(lifetime)/time.Second)
	if !absent {
		return false, nil
	}
	m.log.Info("vip claimed", "fence_deadline_in", deadline-now)
	m.startRefresh()
	if err := m.restartBurst(); err != nil {
		return true, fmt.Errorf("hold %s: %w: %w", m.cfg.Assignment, ErrAnnounce, err)
	}
	return true, nil
}

// canRenewQuickly says whether Hold(deadline) may skip verifying the fence
// and rewriting the address (Config.Recheck): both were done within
// Recheck, the address was written less than half its lifetime ago, and
// that lifetime lasts past deadline and is the one Hold would write now.
// Callers hold m.mu.
func (m *Manager) canRenewQuickly(deadline time.Duration) bool {
	if m.cfg.Recheck <= 0 || !m.trusted || m.fence == nil {
		return false
	}
	now := m.bootNow()
	lifetime := time.Duration(m.wroteSecs) * time.Second
	return now-m.checkedAt < m.cfg.Recheck &&
		now-m.wroteAt < min(m.cfg.Recheck, lifetime/2) &&
		deadline < m.wroteAt+lifetime &&
		int(RoundLifetime(holdLifetime(m.cfg.Lifetime, deadline-now))/time.Second) == m.wroteSecs
}

// Prepare installs and verifies the fence, closed (deadline 0) unless a
// fence left for this VIP is open, without touching the address: a standby
// calls it when it builds its Manager, so that its first Hold after a
// failover does not wait for the program to load (tens of milliseconds),
// and a host that cannot fence is known before it is ever needed.
func (m *Manager) Prepare() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	if _, err := m.ensureFence(); err != nil {
		return fmt.Errorf("prepare %s: %w: %w", m.cfg.Assignment, ErrFence, err)
	}
	return nil
}

// fenceConfig is the fence this Manager's VIP uses.
func (m *Manager) fenceConfig() fence.Config {
	return fence.Config{Iface: m.cfg.Iface, VIP: m.cfg.Addr.Addr(), PinDir: m.cfg.FencePinDir}
}

// ensureFence returns the fence, verified: the one this Manager holds if
// Verify passes, otherwise a fresh Install (which keeps an existing fence's
// map and deadline, and repairs what is missing). Callers hold m.mu.
func (m *Manager) ensureFence() (*fence.Fence, error) {
	if m.fence != nil {
		err := m.fence.Verify()
		if err == nil {
			return m.fence, nil
		}
		m.log.Warn("vip fence no longer in place; installing it again", "error", err)
		_ = m.fence.Close()
		m.fence = nil
	}
	var f *fence.Fence
	err := m.ns.do(func() error {
		var err error
		f, err = fence.Install(m.fenceConfig())
		return err
	})
	if err != nil {
		return nil, err
	}
	m.fence = f
	m.log.Info("vip fence in place", "handle", fmt.Sprintf("%#x", f.Handle()), "map_id", f.MapID())
	return f, nil
}

// closeFence sets the fence's deadline to 0, so the kernel drops the VIP's
// traffic from now on. Without a fence of its own, the Manager looks for
// one left on the interface (by an earlier Manager or process) and keeps
// it. No fence at all is not an error. Callers hold m.mu.
func (m *Manager) closeFence() error {
	if m.fence == nil {
		var f *fence.Fence
		err := m.ns.do(func() error {
			var err error
			f, err = fence.Open(m.fenceConfig())
			return err
		})
		if errors.Is(err, fence.ErrNotInstalled) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("close the vip fence: %w", err)
		}
		m.fence = f
	}
	if err := m.fence.SetDeadline(0); err != nil {
		return fmt.Errorf("close the vip fence: %w", err)
	}
	return nil
}

// dropLocked makes this host hold nothing after a refused Hold: no
// announcements, fence deadline 0, no address. Errors are logged; the
// caller returns the reason it dropped. Callers hold m.mu.
func (m *Manager) dropLocked(why string) {
	m.trusted = false
	m.stopLoops()
	if m.fence != nil {
		if err := m.fence.SetDeadline(0); err != nil {
			m.log.Error("closing the vip fence failed", "error", err, "why", why)
		}
	}
	err := m.withHandle(func(h *netlink.Handle) error {
		n, err := removeVIP(h, m.cfg.Assignment)
		if n > 0 {
			m.log.Warn("vip removed: hold refused", "why", why)
		}
		return err
	})
	if err != nil {
		m.log.Error("removing the vip after a refused hold failed", "error", err, "why", why)
	}
}

// Announce sends a fresh burst of announcements (cancelling one still
// running), the first before it returns. The caller uses it on every change
// of epoch, even when the holder stays the same, so caches left stale by a
// healed partition are corrected. It returns ErrNotHeld, and sends nothing,
// when the address is not on the interface.
func (m *Manager) Announce(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	held, _, err := m.Held()
	if err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	if !held {
		return fmt.Errorf("announce %s: %w", m.cfg.Assignment, ErrNotHeld)
	}
	if err := m.restartBurst(); err != nil {
		return fmt.Errorf("announce %s: %w: %w", m.cfg.Assignment, ErrAnnounce, err)
	}
	return nil
}

// Release stops all announcing and waits until no announcement is in
// flight, closes the fence (deadline 0: from now on the kernel drops the
// VIP's traffic), and then removes the address (every address with the
// VIP's IP on the interface, whatever its prefix length). Closing the fence
// first means the host stops answering for the VIP at once, before the
// address is gone; the other way round would leave a moment in which
// nothing but the address lifetime stops it. A Manager without a fence of
// its own closes one a predecessor left for its VIP. An absent fence,
// address or interface is not an error. After Release returns, this
// Manager sends nothing until the next Hold or Announce. If
// the fence cannot be closed, the address is removed anyway and the error
// returned.
func (m *Manager) Release() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	m.trusted = false
	m.stopLoops()
	fenceErr := m.closeFence()
	err := m.withHandle(func(h *netlink.Handle) error {
		n, err := removeVIP(h, m.cfg.Assignment)
		if n > 0 {
			m.log.Info("vip released")
		}
		return err
	})
	if err := errors.Join(fenceErr, err); err != nil {
		return fmt.Errorf("release %s: %w", m.cfg.Assignment, err)
	}
	return nil
}

// Close is a clean stop: it stops the announcements, closes the fence
// (deadline 0), removes the address, then detaches the fence (never the
// other way round: a fence removed while the address is still there would
// leave the address answering with nothing to stop it), and frees the
// Manager's resources. If the address cannot be removed, the fence stays
// attached, closed, and Close returns the error; the address lifetime
// removes the address later. Close is idempotent; after it, every method
// returns ErrClosed.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return nil
	}
	m.trusted = false
	m.stopLoops()
	fenceErr := m.closeFence()
	var removed int
	addrErr := m.withHandle(func(h *netlink.Handle) error {
		var err error
		removed, err = removeVIP(h, m.cfg.Assignment)
		return err
	})
	if removed > 0 {
		m.log.Info("vip released", "why", "closing")
	}
	if m.fence != nil {
		if addrErr == nil {
			if err := m.fence.Remove(); err != nil {
				fenceErr = errors.Join(fenceErr, err)
			}
		} else {
			_ = m.fence.Close() // stays attached with deadline 0
		}
		m.fence = nil
	}
	m.nlMu.Lock()
	m.closed.Store(true)
	m.nl.Close()
	m.nlMu.Unlock()
	m.ns.close()
	if err := errors.Join(addrErr, fenceErr); err != nil {
		return fmt.Errorf("close %s: %w", m.cfg.Assignment, err)
	}
	return nil
}

// Probe sends an RFC 5227 ARP probe for the VIP on the interface and
// returns every distinct hardware address, other than this host's, that
// claimed it within timeout (see the package function Probe). IPv4 only.
func (m *Manager) Probe(ctx context.Context, timeout time.Duration) ([]net.HardwareAddr, error) {
	ip := m.cfg.Addr.Addr()
	if err := checkProbeArgs(ip, timeout); err != nil {
		return nil, err
	}
	l, err := m.link()
	if err != nil {
		return nil, err
	}
	li, err := linkInfoOf(l)
	if err != nil {
		return nil, err
	}
	c, err := m.listen(li, unix.ETH_P_ARP)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return probeOn(ctx, c, li, ip, timeout)
}

// listen opens a packet socket in the Manager's namespace.
func (m *Manager) listen(li linkInfo, proto int) (*packet.Conn, error) {
	var c *packet.Conn
	err := m.ns.do(func() error {
		var err error
		c, err = listen(li, proto)
		return err
	})
	return c, err
}

// stopLoops stops the burst and refresh goroutines and waits for them.
// Callers hold m.mu.
func (m *Manager) stopLoops() {
	m.burst.stop()
	m.burst = nil
	m.refresh.stop()
	m.refresh = nil
}

// restartBurst stops a running burst, sends the first announcement now and
// the remaining GARPRepeat-1 from a goroutine. Callers hold m.mu.
func (m *Manager) restartBurst() error {
	m.burst.stop()
	m.burst = nil
	_, err := m.announceIfHeld(context.Background())
	if err != nil {
		m.log.Error("announcing the vip failed", "error", err)
	}
	if m.cfg.GARPRepeat > 1 {
		m.burst = startLoop(m.runBurst)
	}
	return err
}

// runBurst sends announcements 2..GARPRepeat, GARPInterval apart, and stops
// early once the address is no longer held.
func (m *Manager) runBurst(ctx context.Context) {
	t := time.NewTicker(m.cfg.GARPInterval)
	defer t.Stop()
	for i := 2; i <= m.cfg.GARPRepeat; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sent, err := m.announceIfHeld(ctx)
		switch {
		case err != nil:
			m.log.Error("announcing the vip failed", "error", err, "repeat", i)
		case !sent:
			m.log.Debug("vip no longer held, burst stopped", "repeat", i)
			return
		}
	}
}

// startRefresh starts the periodic refresh if configured and not running.
// Callers hold m.mu.
func (m *Manager) startRefresh() {
	if m.cfg.Refresh <= 0 || m.refresh != nil {
		return
	}
	m.refresh = startLoop(m.runRefresh)
}

// runRefresh sends one announcement every Refresh while the address is held.
func (m *Manager) runRefresh(ctx context.Context) {
	t := time.NewTicker(m.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := m.announceIfHeld(ctx); err != nil {
			m.log.Error("refreshing the vip announcement failed", "error", err)
		}
	}
}

// announceIfHeld sends one announcement if the kernel still has the address
// and ctx is not done; it reports whether it sent. Checking the kernel
// before every send means announcements never outlive the lease.
func (m *Manager) announceIfHeld(ctx context.Context) (bool, error) {
	held, _, err := m.Held()
	if err != nil {
		return false, err
	}
	if !held || ctx.Err() != nil {
		return false, nil
	}
	l, err := m.link()
	if err != nil {
		return false, err
	}
	li, err := linkInfoOf(l)
	if err != nil {
		return false, err
	}
	ip := m.cfg.Addr.Addr()
	frames, err := announceFrames(li.mac, ip)
	if err != nil {
		return false, err
	}
	c, err := m.listen(li, ethProto(ip))
	if err != nil {
		return false, err
	}
	defer c.Close()
	if err := send(c, frames); err != nil {
		return false, err
	}
	return true, nil
}

// removeVIP deletes every address with a's IP on a's interface and reports
// how many it removed. A missing interface or address is not an error.
func removeVIP(h *netlink.Handle, a Assignment) (int, error) {
	l, err := h.LinkByName(a.Iface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return 0, nil
		}
		return 0, fmt.Errorf("look up interface %s: %w", a.Iface, err)
	}
	addrs, err := vipAddrs(h, l, a.Addr.Addr())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, old := range addrs {
		if err := h.AddrDel(l, &old); err != nil {
			if errors.Is(err, unix.EADDRNOTAVAIL) {
				continue // gone meanwhile: its lease ran out
			}
			return n, fmt.Errorf("remove %s from %s: %w", old.IPNet, a.Iface, err)
		}
		n++
	}
	return n, nil
}

// ReleaseAddr removes the VIP from the interface without a Manager: what
// `newbieha vip release` (systemd ExecStopPost) and agent start and stop do.
// Every address with a's IP on a.Iface goes, whatever its prefix length. An
// absent address or interface is not an error. It acts in the network
// namespace of the calling OS thread.
func ReleaseAddr(a Assignment) error {
	_, err := releaseAddrCount(a)
	return err
}

// releaseAddrCount is ReleaseAddr, saying how many addresses it removed.
func releaseAddrCount(a Assignment) (int, error) {
	if err := a.Validate(); err != nil {
		return 0, err
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return 0, fmt.Errorf("release %s: open netlink handle: %w", a, err)
	}
	defer h.Close()
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		return 0, fmt.Errorf("release %s: set netlink timeout: %w", a, err)
	}
	n, err := removeVIP(h, a)
	if err != nil {
		return n, fmt.Errorf("release %s: %w", a, err)
	}
	return n, nil
}

// Cleanup removes what an earlier agent may have left on this host for a:
// it closes every newbieha fence on a.Iface (deadline 0), removes the
// address, and then detaches those fences (and their pins under pinDir, if
// set). For agent start-up (after the data-dir lock is held, before
// anything claims) and for `newbieha vip release` after a stop. Absent
// fences, address or interface are not an error. It acts in the network
// namespace of the calling OS thread.
func Cleanup(a Assignment, pinDir string) error {
	_, err := CleanupCount(a, pinDir)
	return err
}

// CleanupCount is Cleanup that also says how many addresses with a's IP it
// removed from a.Iface (0: the address was not there), so `newbieha vip
// release` can tell the operator whether it did anything.
func CleanupCount(a Assignment, pinDir string) (removed int, err error) {
	if err := a.Validate(); err != nil {
		return 0, err
	}
	var errs []error
	found, err := fence.List(a.Iface)
	if err != nil {
		errs = append(errs, err)
	}
	for _, at := range found {
		if !at.VIP.IsValid() {
			continue // unreadable name: RemoveAll below still removes it
		}
		f, err := fence.Open(fence.Config{Iface: a.Iface, VIP: at.VIP})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := f.SetDeadline(0); err != nil {
			errs = append(errs, err)
		}
		_ = f.Close()
	}
	removed, err = releaseAddrCount(a)
	if err != nil {
		// The address is still there: leave the (closed) fences attached,
		// they are all that keeps it from answering.
		return removed, fmt.Errorf("clean up %s: %w", a, errors.Join(append(errs, err)...))
	}
	if _, err := fence.RemoveAll(a.Iface, pinDir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("clean up %s: %w", a, err)
	}
	return removed, nil
}

// Now returns CLOCK_BOOTTIME, the clock of Hold's deadline and of the
// kernel fence (fence.Now). The holder reads it before its lease round
// starts and passes that reading plus the lease length to Hold.
func Now() time.Duration { return fence.Now() }
