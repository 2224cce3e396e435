package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
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
	// Prepare installs and verifies the kernel fence, closed, so the first
	// Hold does not wait for it and a host that cannot fence says so early.
	Prepare() error
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
	// Pending is true while there is no verdict yet (the checks are not
	// configured, or none has passed rise or fall since it started): the
	// controller then neither moves the role away from this node nor to it.
	Pending() bool
	// Detail is the full report (checks, GPU telemetry) shown in status.
	Detail() any
}

// Workload is the service on this host (package runtime's reconciler,
// through an adapter in cmd).
type Workload interface {
	// SetActive says whether this node is the active one now.
	SetActive(active bool)
}

// ctlDeps is everything the controller uses, wired by Start: it reaches
// nothing else of the agent.
type ctlDeps struct {
	name         string
	role         fsm.Role
	log          *slog.Logger
	now          func() time.Time
	fsm          *fsm.FSM
	raft         *raft.Raft
	raftTimings  RaftTimings // this node's own
	applyTimeout time.Duration
	settings     func() Settings
	// ownHealth is this node's verdict; peerHealth what gossip says of
	// the others.
	ownHealth  func() (ok bool, why string, pending bool)
	peerHealth func() map[string]lease.NodeHealth
	// voters names the voters; ownReport is this node's voter report,
	// otherReports asks the other voters for theirs.
	voters       func() []string
	ownReport    func() lease.Report
	otherReports func(ctx context.Context, timeout time.Duration, enough func([]lease.Report) bool) []lease.Report
	// commit applies an encoded command on this node (the leader).
	commit     func(data []byte) error
	workload   Workload
	onSettings func(Settings)
	// vip is this node's actuator, if any; probeVIP and vipIface let a
	// node without one watch for conflicts.
	vip         func() VIP
	probeVIP    func(ctx context.Context, iface string, ip netip.Addr, timeout time.Duration) ([]net.HardwareAddr, error)
	vipIface    string
	recordEvent func(ctx context.Context, kind, detail string)
	// conflictSeen, when set, is told of each new conflict (hooks); it
	// does not block.
	conflictSeen func(why string)
}

// controller is the Raft leader's decision loop (any voter may lead, the
// witness too): it gathers the situation (applied state, gossiped health,
// the voters' lease reports) and commits what lease.Decide says. On every
// node it also hands new settings on and tells the workload whether this
// node is active, and probes for VIP conflicts. It never touches the VIP
// but to announce it after a conflict: the lease runner holds it.
type controller struct {
	d ctlDeps

	mu        sync.Mutex
	wasLeader bool
	caughtUp  bool // a barrier succeeded since this node became leader
	errs      repeatLog
	blocked   string // why the leader does not move the active role
	conflict  string // the last VIP conflict seen by probing, "" if none
	conflicts uint64 // probes that found a conflict
	lastRaw   string // settings last handed to OnSettings

	failovers failoverTally // counted from the history at scrape time (metrics.go)

	stopped    chan struct{} // closed when run returns
	settingsCh chan Settings // newest settings for OnSettings (capacity 1)
}

func newController(d ctlDeps) *controller {
	return &controller{d: d, stopped: make(chan struct{}), settingsCh: make(chan Settings, 1)}
}

// settingsLoop calls OnSettings, off the controller loop, until ctx ends.
func (c *controller) settingsLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-c.settingsCh:
			c.d.onSettings(s)
		}
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
	c.d.raft.RegisterObserver(obs)
	defer c.d.raft.DeregisterObserver(obs)

	for {
		beat(ctx, loopController)
		changed := c.d.fsm.Changed()
		next := c.step(ctx)
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-obsCh:
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// step is one reconciliation; it returns when the next one is due.
func (c *controller) step(ctx context.Context) time.Duration {
	d := c.d
	c.settingsChanged()
	settings := d.settings()
	act, _ := d.fsm.ActiveView()
	if d.workload != nil && d.role == fsm.RoleGPU {
		d.workload.SetActive(act.Node == d.name)
	}
	leader := d.raft.State() == raft.Leader
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
		if err := d.raft.Barrier(d.applyTimeout).Error(); err != nil {
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
	d := c.d
	p := settings.Timings.Lease()
	next := p.Renew
	st := d.fsm.State()
	sit := lease.Situation{
		Now: d.now(), Active: st.Active.Node, Epoch: st.Active.Epoch, Since: st.Active.Since, Reason: st.Active.Reason,
		Maintenance: st.Maintenance, Health: d.peerHealth(), Voters: len(d.voters()),
		Lease: p.Duration, HoldDown: time.Duration(settings.Failover.HoldDown),
		Preferred: settings.Failover.Preferred, Preempt: settings.Failover.Preempt, Self: d.name,
	}
	for _, m := range st.Members {
		if m.Role == fsm.RoleGPU {
			sit.GPUNodes = append(sit.GPUNodes, m.Name)
		}
	}
	slices.Sort(sit.GPUNodes)
	if d.role == fsm.RoleGPU {
		ok, why, pending := d.ownHealth()
		sit.Health[d.name] = lease.NodeHealth{Known: !pending, Healthy: ok, Reason: why}
	}
	own := d.ownReport()
	sit.Reports = []lease.Report{own}
	if own.Active == sit.Active && own.Epoch == sit.Epoch && sit.Active != "" {
		if own.Silent >= p.Duration {
			// This voter has not heard from the holder for a lease: ask
			// the others before calling it lost (it may only be cut off
			// from us).
			// Enough: the silent reports (ours included) make a majority.
			// Ask for at most half a renewal interval: a voter that is
			// gone does not answer at all, and one whose silence has not
			// quite reached L yet is asked again at the next step; waiting
			// longer for the gone one delayed host-loss failovers by the
			// whole timeout (measured 1.07 s instead of 0.56 s).
			need := lease.Majority(sit.Voters) - 1
			sit.Reports = append(sit.Reports, d.otherReports(ctx, max(p.Renew/2, 10*time.Millisecond), func(rs []lease.Report) bool {
				n := 0
				for _, r := range rs {
					if r.Active == sit.Active && r.Epoch == sit.Epoch && r.Silent >= p.Duration {
						n++
					}
				}
				return n >= need
			})...)
		} else if left := p.Duration - own.Silent + time.Millisecond; left < next {
			next = left
		}
	}
	dec := lease.Decide(sit)
	c.setBlocked(dec.Blocked)
	if dec.Move == nil {
		return next
	}
	cmd := fsm.SetActive{Node: dec.Move.To, Epoch: dec.Move.Epoch, Time: d.now().UTC(), Reason: dec.Move.Reason}
	data, err := fsm.Encode(cmd)
	if err != nil {
		c.setErr(err)
		return next
	}
	if err := d.commit(data); err != nil {
		c.setErr(fmt.Errorf("name %s active: %w", cmd.Node, err))
		return next
	}
	d.log.Info("named active", "node", cmd.Node, "epoch", cmd.Epoch, "reason", cmd.Reason, "previous", st.Active.Node)
	return next
}

func (c *controller) setBlocked(why string) {
	c.mu.Lock()
	changed := why != c.blocked
	c.blocked = why
	c.mu.Unlock()
	if changed && why != "" {
		c.d.log.Warn("active role stays", "why", why)
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
// timeouts. It reads the document before it decodes the settings it hands
// on: an entry applied in between then makes the next step see a new
// document, instead of these settings (decoded from an older one) being
// taken for the newer (a joining node once kept the defaults, no checks,
// for good).
func (c *controller) settingsChanged() {
	raw := string(c.d.fsm.SettingsRaw())
	if raw == "" {
		// Nothing applied yet (a node that has just joined and not caught
		// up): defaults now would run no checks and call the node healthy.
		return
	}
	c.mu.Lock()
	same := raw == c.lastRaw && c.lastRaw != ""
	c.lastRaw = raw
	c.mu.Unlock()
	if same {
		return
	}
	s := c.d.settings()
	c.reloadRaft(s.Timings)
	if c.d.onSettings != nil {
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
		hb, el = c.d.raftTimings.HeartbeatTimeout, c.d.raftTimings.ElectionTimeout
	}
	if lease := c.d.raftTimings.LeaderLeaseTimeout; lease > hb {
		c.setErr(fmt.Errorf("cluster raft_heartbeat_timeout %v is below this node's leader_lease_timeout %v: keeping %v", hb, lease, c.d.raftTimings.HeartbeatTimeout))
		return
	}
	rc := c.d.raft.ReloadableConfig()
	if rc.HeartbeatTimeout == hb && rc.ElectionTimeout == el {
		return
	}
	rc.HeartbeatTimeout, rc.ElectionTimeout = hb, el
	if err := c.d.raft.ReloadConfig(rc); err != nil {
		c.setErr(fmt.Errorf("reload raft timeouts: %w", err))
		return
	}
	c.d.log.Info("raft timeouts changed", "heartbeat", hb, "election", el)
}

func (c *controller) setErr(err error) { c.errs.warn(c.d.log, "controller", err) }

// checkConflict probes who answers for the VIP: a holder must hear nobody
// else; a node that does not hold it (a standby, the witness) must hear at
// most one MAC. On a
// conflict the holder announces again, so clients move back to it.
func (c *controller) checkConflict(ctx context.Context, timeout time.Duration) {
	v := c.d.vip()
	var held bool
	var macs []net.HardwareAddr
	var err error
	switch {
	case v != nil:
		if held, _, err = v.Held(); err != nil {
			return
		}
		macs, err = v.Probe(ctx, timeout)
	case c.d.probeVIP != nil && c.d.vipIface != "":
		p, ok := c.d.settings().VIPPrefix()
		if !ok || !p.Addr().Is4() {
			return
		}
		macs, err = c.d.probeVIP(ctx, c.d.vipIface, p.Addr(), timeout)
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
		why = fmt.Sprintf("%s holds the VIP and %s also answer(s) for it", c.d.name, strings.Join(names, ", "))
	case !held && len(macs) > 1:
		why = fmt.Sprintf("%s sees %d hosts answer for the VIP: %s", c.d.name, len(macs), strings.Join(names, ", "))
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
			c.d.log.Info("VIP conflict cleared")
		}
		return
	}
	c.d.log.Error("VIP CONFLICT", "detail", why)
	if held {
		// First win the clients back, then write it down.
		if err := v.Announce(ctx); err != nil {
			c.setErr(fmt.Errorf("re-announce after conflict: %w", err))
		}
	}
	if changed {
		if c.d.conflictSeen != nil {
			c.d.conflictSeen(why)
		}
		c.d.recordEvent(ctx, "vip-conflict", why)
	}
}

// conflictLoop probes for VIP conflicts every interval until ctx ends.
func (c *controller) conflictLoop(ctx context.Context) {
	for {
		interval := time.Duration(c.d.settings().VIP.ConflictProbeInterval)
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
