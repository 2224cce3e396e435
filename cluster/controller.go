package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/newbieha/newbieha/cluster/lease"
	"github.com/newbieha/newbieha/fsm"
)

// VIP is what the lease runner needs from the virtual IP actuator (package
// vip's Manager satisfies it). Deadlines are readings of CLOCK_BOOTTIME.
type VIP interface {
	// Hold opens the kernel fence until deadline and makes sure the
	// address is on the interface; claimed is true when it was absent
	// (a burst of gratuitous ARP has started). It fails, holding nothing,
	// when the fence cannot be installed or read back, or when the
	// deadline has passed.
	Hold(ctx context.Context, deadline time.Duration) (claimed bool, err error)
	// Announce sends a fresh burst of gratuitous ARP for a held address.
	Announce(ctx context.Context) error
	// Release closes the fence, then removes the address.
	Release() error
	// Held reports whether the address is on the interface and its
	// remaining kernel lifetime.
	Held() (bool, time.Duration, error)
	// Probe asks the segment by ARP who answers for the VIP now and
	// returns every MAC but this host's.
	Probe(ctx context.Context, timeout time.Duration) ([]net.HardwareAddr, error)
	// Close removes the address, then the fence (a clean stop).
	Close() error
}

// VIPSpec is what a VIP is built from: the replicated settings plus this
// node's interface.
type VIPSpec struct {
	Prefix       netip.Prefix
	Iface        string
	Lifetime     time.Duration
	GARPRepeat   int
	GARPInterval time.Duration
	Refresh      time.Duration
}

// VIPFactory builds a VIP; the lease runner calls it again when the VIP
// settings change.
type VIPFactory func(VIPSpec) (VIP, error)

// HealthReporter says whether this node's own service is healthy.
type HealthReporter interface {
	// Healthy returns the verdict and, when unhealthy, why (for example
	// "http:health", with " (drill)" when a drill forced it).
	Healthy() (bool, string)
	// Detail is the full report (checks, GPU telemetry) shown in status.
	Detail() any
}

// Workload is the service on this host (package runtime's reconciler,
// through an adapter in cmd).
type Workload interface {
	// SetActive says whether this node is the active one now.
	SetActive(active bool)
}

// controller is the Raft leader's decision loop (any voter may lead, the
// witness too): it gathers the situation (applied state, gossiped health,
// the voters' lease reports) and commits what lease.Decide says. On every
// node it also hands new settings on and tells the workload whether this
// node is active. It never touches the VIP: the lease runner does.
type controller struct {
	a *Agent

	mu        sync.Mutex
	wasLeader bool
	caughtUp  bool // a barrier succeeded since this node became leader
	lastErr   string
	blocked   string // why the leader does not move the active role
	conflict  string // the last VIP conflict seen by probing, "" if none
	conflicts uint64 // probes that found a conflict
	lastRaw   string // settings last handed to OnSettings

	wake       chan struct{}
	stopped    chan struct{} // closed when run returns
	settingsCh chan Settings // newest settings for OnSettings (capacity 1)
}

func newController(a *Agent) *controller {
	return &controller{a: a, wake: make(chan struct{}, 1), stopped: make(chan struct{}), settingsCh: make(chan Settings, 1)}
}

// settingsLoop calls OnSettings, off the controller loop, until ctx ends.
func (c *controller) settingsLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-c.settingsCh:
			c.a.cfg.OnSettings(s)
		}
	}
}

// poke asks the loop to run a step soon.
func (c *controller) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// run loops until ctx ends.
func (c *controller) run(ctx context.Context) {
	defer close(c.stopped)
	obsCh := make(chan raft.Observation, 8)
	obs := raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	c.a.node.raft.RegisterObserver(obs)
	defer c.a.node.raft.DeregisterObserver(obs)

	for {
		changed := c.a.node.fsm.Changed()
		next := c.step(ctx)
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-obsCh:
		case <-changed:
		case <-c.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// step is one reconciliation; it returns when the next one is due.
func (c *controller) step(ctx context.Context) time.Duration {
	a := c.a
	settings := a.settings()
	c.settingsChanged(settings)
	act, _ := a.node.fsm.ActiveView()
	if a.cfg.Workload != nil && a.cfg.Node.Role == fsm.RoleGPU {
		a.cfg.Workload.SetActive(act.Node == a.Name())
	}
	leader := a.node.raft.State() == raft.Leader
	c.mu.Lock()
	if leader && !c.wasLeader {
		c.caughtUp = false
	}
	c.wasLeader = leader
	caughtUp := c.caughtUp
	c.mu.Unlock()
	if !leader {
		return time.Second
	}
	if !caughtUp {
		// A new leader's FSM may still lag the log: apply everything
		// committed before acting on the state (as Consul's leader loop
		// does), or it could undo a change it has not seen yet.
		if err := a.node.raft.Barrier(a.cfg.ApplyTimeout).Error(); err != nil {
			c.setErr(fmt.Errorf("leader barrier: %w", err))
			return time.Duration(settings.Timings.LeaseRenewInterval)
		}
		c.mu.Lock()
		c.caughtUp = true
		c.mu.Unlock()
	}
	return c.decide(ctx, settings)
}

// decide gathers the situation, asks lease.Decide and commits its move. It
// returns when the next decision is due: at the renewal interval, or sooner
// when the holder's silence will reach the lease duration before that.
func (c *controller) decide(ctx context.Context, settings Settings) time.Duration {
	a := c.a
	p := settings.Timings.Lease()
	next := p.Renew
	st := a.node.fsm.State()
	sit := lease.Situation{
		Now: a.cfg.Now(), Active: st.Active.Node, Epoch: st.Active.Epoch, Since: st.Active.Since, Reason: st.Active.Reason,
		Maintenance: st.Maintenance, Health: map[string]lease.NodeHealth{}, Voters: len(a.voterNames()),
		Lease: p.Duration, HoldDown: time.Duration(settings.Failover.HoldDown),
		Preferred: settings.Failover.Preferred, Preempt: settings.Failover.Preempt, Self: a.Name(),
	}
	for _, m := range st.Members {
		if m.Role == fsm.RoleGPU {
			sit.GPUNodes = append(sit.GPUNodes, m.Name)
		}
	}
	slices.Sort(sit.GPUNodes)
	view := a.gossipView()
	for _, n := range sit.GPUNodes {
		if n == a.Name() {
			ok, why := a.ownHealth()
			sit.Health[n] = lease.NodeHealth{Known: true, Healthy: ok, Reason: why}
			continue
		}
		if g, ok := view[n]; ok && g.Alive && g.HasState {
			sit.Health[n] = lease.NodeHealth{Known: true, Healthy: g.State.Healthy, Reason: g.State.HealthReason}
		}
	}
	own := a.lease.report()
	sit.Reports = []lease.Report{own}
	if own.Active == sit.Active && own.Epoch == sit.Epoch && sit.Active != "" {
		if own.Silent >= p.Duration {
			// This voter has not heard from the holder for a lease: ask
			// the others before calling it lost (it may only be cut off
			// from us).
			sit.Reports = append(sit.Reports, c.gatherReports(ctx, st, p.Duration)...)
		} else if left := p.Duration - own.Silent + time.Millisecond; left < next {
			next = left
		}
	}
	d := lease.Decide(sit)
	c.setBlocked(d.Blocked)
	if d.Move == nil {
		return next
	}
	cmd := fsm.SetActive{Node: d.Move.To, Epoch: d.Move.Epoch, Time: a.cfg.Now().UTC(), Reason: d.Move.Reason}
	data, err := fsm.Encode(cmd)
	if err != nil {
		c.setErr(err)
		return next
	}
	if err := a.applyLocal(data); err != nil {
		c.setErr(fmt.Errorf("name %s active: %w", cmd.Node, err))
		return next
	}
	a.log.Info("named active", "node", cmd.Node, "epoch", cmd.Epoch, "reason", cmd.Reason, "previous", st.Active.Node)
	return next
}

// gatherReports asks every other voter for its lease report, at once and
// briefly; one that does not answer is left out.
func (c *controller) gatherReports(ctx context.Context, st fsm.State, timeout time.Duration) []lease.Report {
	a := c.a
	var mu sync.Mutex
	var out []lease.Report
	var wg sync.WaitGroup
	for _, n := range a.voterNames() {
		m, ok := st.Members[n]
		if n == a.Name() || !ok || m.APIAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			var r lease.Report
			if err := a.peerCall(cctx, m.APIAddr, http.MethodGet, "/v1/internal/lease", nil, &r, false); err != nil || r.Voter != n {
				return
			}
			mu.Lock()
			out = append(out, r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func (c *controller) setBlocked(why string) {
	c.mu.Lock()
	changed := why != c.blocked
	c.blocked = why
	c.mu.Unlock()
	if changed && why != "" {
		c.a.log.Warn("active role stays", "why", why)
	}
}

// blockedReason says why the leader leaves the active role where it is
// although something is wrong ("" when nothing is).
func (c *controller) blockedReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blocked
}

// settingsChanged hands new settings to OnSettings and reloads Raft's
// timeouts.
func (c *controller) settingsChanged(s Settings) {
	raw := string(c.a.node.fsm.SettingsRaw())
	c.mu.Lock()
	same := raw == c.lastRaw && c.lastRaw != ""
	c.lastRaw = raw
	c.mu.Unlock()
	if same {
		return
	}
	c.reloadRaft(s.Timings)
	if c.a.cfg.OnSettings != nil {
		// Hand over on a channel that keeps only the newest: rebuilding
		// checks or the workload may take seconds (a slow Docker daemon)
		// and must never hold up this loop.
		select {
		case <-c.settingsCh:
		default:
		}
		c.settingsCh <- s
	}
}

// reloadRaft applies the cluster's Raft timeouts, when set, to this node.
// A value this node's leader lease timeout would break is refused (raft
// needs lease <= heartbeat) and logged.
func (c *controller) reloadRaft(t Timings) {
	hb, el := time.Duration(t.RaftHeartbeatTimeout), time.Duration(t.RaftElectionTimeout)
	if hb == 0 {
		hb, el = c.a.cfg.Node.Raft.HeartbeatTimeout, c.a.cfg.Node.Raft.ElectionTimeout
	}
	if lease := c.a.cfg.Node.Raft.LeaderLeaseTimeout; lease > hb {
		c.setErr(fmt.Errorf("cluster raft_heartbeat_timeout %v is below this node's leader_lease_timeout %v: keeping %v", hb, lease, c.a.cfg.Node.Raft.HeartbeatTimeout))
		return
	}
	rc := c.a.node.raft.ReloadableConfig()
	if rc.HeartbeatTimeout == hb && rc.ElectionTimeout == el {
		return
	}
	rc.HeartbeatTimeout, rc.ElectionTimeout = hb, el
	if err := c.a.node.raft.ReloadConfig(rc); err != nil {
		c.setErr(fmt.Errorf("reload raft timeouts: %w", err))
		return
	}
	c.a.log.Info("raft timeouts changed", "heartbeat", hb, "election", el)
}

func (c *controller) setErr(err error) {
	c.mu.Lock()
	msg := err.Error()
	repeat := msg == c.lastErr
	c.lastErr = msg
	c.mu.Unlock()
	if !repeat {
		c.a.log.Warn("controller", "error", msg)
	}
}

// checkConflict probes who answers for the VIP: a holder must hear nobody
// else; a node that does not hold it (a standby, the witness) must hear at
// most one MAC. On a
// conflict the holder announces again, so clients move back to it.
func (c *controller) checkConflict(ctx context.Context, timeout time.Duration) {
	v := c.a.lease.currentVIP()
	var held bool
	var macs []net.HardwareAddr
	var err error
	switch {
	case v != nil:
		if held, _, err = v.Held(); err != nil {
			return
		}
		macs, err = v.Probe(ctx, timeout)
	case c.a.cfg.ProbeVIP != nil && c.a.cfg.Node.VIPInterface != "":
		p, ok := c.a.settings().VIPPrefix()
		if !ok || !p.Addr().Is4() {
			return
		}
		macs, err = c.a.cfg.ProbeVIP(ctx, c.a.cfg.Node.VIPInterface, p.Addr(), timeout)
	default:
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			c.setErr(fmt.Errorf("vip conflict probe: %w", err))
		}
		return
	}
	var names []string
	for _, m := range macs {
		names = append(names, m.String())
	}
	why := ""
	switch {
	case held && len(macs) > 0:
		why = fmt.Sprintf("%s holds the VIP and %s also answer(s) for it", c.a.Name(), strings.Join(names, ", "))
	case !held && len(macs) > 1:
		why = fmt.Sprintf("%s sees %d hosts answer for the VIP: %s", c.a.Name(), len(macs), strings.Join(names, ", "))
	}
	c.mu.Lock()
	changed := why != c.conflict
	c.conflict = why
	if why != "" {
		c.conflicts++
	}
	c.mu.Unlock()
	if why == "" {
		if changed {
			c.a.log.Info("VIP conflict cleared")
		}
		return
	}
	c.a.log.Error("VIP CONFLICT", "detail", why)
	if held {
		// First win the clients back, then write it down.
		if err := v.Announce(ctx); err != nil {
			c.setErr(fmt.Errorf("re-announce after conflict: %w", err))
		}
	}
	if changed {
		c.a.recordEvent(ctx, "vip-conflict", why)
	}
}

// conflictLoop probes for VIP conflicts every interval until ctx ends.
func (c *controller) conflictLoop(ctx context.Context) {
	for {
		interval := time.Duration(c.a.settings().VIP.ConflictProbeInterval)
		if interval > 0 {
			c.checkConflict(ctx, interval/4)
		} else {
			interval = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// conflictState returns the current conflict and the count so far.
func (c *controller) conflictState() (string, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conflict, c.conflicts
}
