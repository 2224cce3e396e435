package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/newbieha/newbieha/fsm"
)

// VIP is what the agent needs from the virtual IP actuator (package vip's
// Manager satisfies it). notAfter is the last instant the caller's quorum
// confirmation allows touching the address.
type VIP interface {
	Claim(ctx context.Context, notAfter time.Time) error
	Renew(ctx context.Context, notAfter time.Time) error
	Announce(ctx context.Context) error
	Release() error
	Held() (bool, time.Duration, error)
	// Probe asks the segment by ARP who answers for the VIP now and
	// returns every MAC but this host's.
	Probe(ctx context.Context, timeout time.Duration) ([]net.HardwareAddr, error)
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

// VIPFactory builds a VIP; the agent calls it again when the VIP settings
// change.
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

// controller makes this host match the replicated state: on the leader it
// names the active node and hands leadership from a witness to a GPU node;
// on every node it holds the VIP only under the one rule (docs/timings.md):
// leader, confirmed by a quorum within the last ConfirmMaxAge, named active,
// a GPU node.
type controller struct {
	a *Agent

	// vipMu serialises everything that touches the VIP: a quorum check
	// and the renewal that follows it are one step, and a release (from a
	// planned failover on another goroutine) cannot fall between them.
	vipMu sync.Mutex

	mu          sync.Mutex
	vip         VIP
	vipSpec     VIPSpec
	holding     bool   // we claimed and have not released
	heldEpoch   uint64 // the epoch we last claimed or announced for
	leaderSince time.Time
	wasLeader   bool
	caughtUp    bool      // a barrier succeeded since this node became leader
	transferBy  time.Time // leader duties paused until then (planned failover)
	lastXfer    time.Time // last leadership transfer attempt from a witness
	lastErr     string
	blocked     string // why the leader does not move the active role
	conflict    string // the last VIP conflict seen by probing, "" if none
	conflicts   uint64 // probes that found a conflict
	lastRaw     string // settings last handed to OnSettings

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

// run loops until ctx ends, then releases the VIP.
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
		select {
		case <-ctx.Done():
			c.releaseVIP("agent stopping")
			c.mu.Lock()
			if c.vip != nil {
				_ = c.vip.Close()
				c.vip = nil
			}
			c.mu.Unlock()
			return
		case <-obsCh:
		case <-changed:
		case <-c.wake:
		case <-time.After(next):
		}
	}
}

// step is one reconciliation; it returns when the next one is due.
func (c *controller) step(ctx context.Context) time.Duration {
	a := c.a
	st := a.node.fsm.State()
	settings := a.settings()
	next := time.Duration(settings.Timings.VIPRenewInterval)
	leader := a.node.raft.State() == raft.Leader

	c.mu.Lock()
	if leader && !c.wasLeader {
		c.leaderSince = time.Now()
		c.caughtUp = false
	}
	c.wasLeader = leader
	caughtUp := c.caughtUp
	c.mu.Unlock()

	if leader && !caughtUp {
		// A new leader's FSM may still lag the log: apply everything
		// committed before acting on the state (as Consul's leader loop
		// does), or it could undo a change it has not seen yet.
		if err := a.node.raft.Barrier(a.cfg.ApplyTimeout).Error(); err != nil {
			c.setErr(fmt.Errorf("leader barrier: %w", err))
			return next
		}
		c.mu.Lock()
		c.caughtUp = true
		c.mu.Unlock()
		st = a.node.fsm.State()
	}
	if leader {
		c.leaderDuties(ctx, st)
		st = a.node.fsm.State()
	}
	c.settingsChanged(st)
	if a.cfg.Workload != nil && a.cfg.Node.Role == fsm.RoleGPU {
		a.cfg.Workload.SetActive(leader && st.Active.Node == a.Name())
	}
	if err := c.ensureVIP(settings); err != nil {
		c.setErr(err)
		return next
	}
	switch {
	case !leader:
		c.releaseVIP("not the leader")
	case a.cfg.Node.Role != fsm.RoleGPU:
		c.releaseVIP("a witness never serves")
	case st.Active.Node != a.Name():
		c.releaseVIP("not the active node")
	default:
		if wait := c.holdVIP(ctx, st, settings); wait > 0 && wait < next {
			next = wait
		}
	}
	return next
}

// leaderDuties runs on the leader only.
func (c *controller) leaderDuties(ctx context.Context, st fsm.State) {
	a := c.a
	c.mu.Lock()
	paused := time.Now().Before(c.transferBy)
	c.mu.Unlock()
	if paused {
		return
	}
	if a.cfg.Node.Role == fsm.RoleWitness {
		c.handToGPU(st)
		return
	}
	if st.Maintenance {
		c.setBlocked("")
		return
	}
	ok, why := a.ownHealth()
	if st.Active.Node == a.Name() {
		if ok {
			c.setBlocked("")
			c.preempt(ctx, st)
			return
		}
		c.moveForHealth(ctx, st, why)
		return
	}
	if !ok {
		// Taking over would not help: this node cannot serve either.
		c.setBlocked(fmt.Sprintf("%s leads but is unhealthy (%s); active %q is not the leader", a.Name(), why, st.Active.Node))
		return
	}
	c.setBlocked("")
	reason := "leader-lost"
	if st.Active.Node == "" {
		reason = "startup"
	}
	if _, ok := st.Members[a.Name()]; !ok {
		return // our member record is not applied yet
	}
	cmd := fsm.SetActive{Node: a.Name(), Epoch: st.Active.Epoch + 1, Time: a.cfg.Now().UTC(), Reason: reason}
	data, err := fsm.Encode(cmd)
	if err != nil {
		c.setErr(err)
		return
	}
	if err := a.applyLocal(data); err != nil {
		c.setErr(fmt.Errorf("name self active: %w", err))
		return
	}
	a.log.Info("named active", "node", cmd.Node, "epoch", cmd.Epoch, "reason", reason, "previous", st.Active.Node)
}

// moveForHealth hands the active role from this (leader, active, unhealthy)
// node to a healthy GPU node, unless the hold-down since the last change
// has not passed or no other node is healthy.
func (c *controller) moveForHealth(ctx context.Context, st fsm.State, why string) {
	a := c.a
	hold := time.Duration(a.settings().Failover.HoldDown)
	if since := a.cfg.Now().Sub(st.Active.Since); since < hold {
		c.setBlocked(fmt.Sprintf("%s is unhealthy (%s) but the hold-down after the last change runs %v more", a.Name(), why, (hold - since).Round(time.Second)))
		return
	}
	var reasons []string
	for _, m := range st.Members {
		if m.Role != fsm.RoleGPU || m.Name == a.Name() {
			continue
		}
		var self SelfReport
		cctx, cancel := context.WithTimeout(ctx, a.cfg.PeerTimeout)
		err := a.peerCall(cctx, m.APIAddr, "GET", "/v1/self", nil, &self, false)
		cancel()
		switch {
		case err != nil:
			reasons = append(reasons, m.Name+" unreachable")
		case !self.Healthy:
			reasons = append(reasons, fmt.Sprintf("%s unhealthy (%s)", m.Name, self.HealthReason))
		default:
			reason := "health:" + a.Name() + ":" + why
			a.log.Warn("active node unhealthy: moving the active role", "to", m.Name, "reason", reason)
			if _, err := a.failover(ctx, FailoverRequest{To: m.Name}, reason); err != nil {
				c.setErr(fmt.Errorf("health failover to %s: %w", m.Name, err))
			}
			return
		}
	}
	c.setBlocked(fmt.Sprintf("%s is unhealthy (%s) and no other GPU node can take over: %s", a.Name(), why, strings.Join(reasons, "; ")))
}

// preempt hands the role back to the preferred node when preemption is on,
// that node is healthy and the hold-down since the last change has passed.
func (c *controller) preempt(ctx context.Context, st fsm.State) {
	a := c.a
	f := a.settings().Failover
	if !f.Preempt || f.Preferred == "" || f.Preferred == a.Name() {
		return
	}
	m, ok := st.Members[f.Preferred]
	if !ok || m.Role != fsm.RoleGPU {
		return
	}
	if a.cfg.Now().Sub(st.Active.Since) < time.Duration(f.HoldDown) {
		return
	}
	var self SelfReport
	cctx, cancel := context.WithTimeout(ctx, a.cfg.PeerTimeout)
	err := a.peerCall(cctx, m.APIAddr, "GET", "/v1/self", nil, &self, false)
	cancel()
	if err != nil || !self.Healthy || self.Leader != a.Name() {
		return
	}
	a.log.Info("preemption: handing the active role back to the preferred node", "to", f.Preferred)
	if _, err := a.failover(ctx, FailoverRequest{To: f.Preferred}, "preempt:"+f.Preferred); err != nil {
		c.setErr(fmt.Errorf("preempt to %s: %w", f.Preferred, err))
	}
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

// settingsChanged hands new settings to OnSettings.
func (c *controller) settingsChanged(st fsm.State) {
	raw := string(st.Settings)
	c.mu.Lock()
	same := raw == c.lastRaw && c.lastRaw != ""
	c.lastRaw = raw
	c.mu.Unlock()
	if !same {
		c.reloadRaft(c.a.settingsFrom(st.Settings).Timings)
	}
	if !same && c.a.cfg.OnSettings != nil {
		// Hand over on a channel that keeps only the newest: rebuilding
		// checks or the workload may take seconds (a slow Docker daemon)
		// and must never hold up the VIP renewals of this loop.
		s := c.a.settingsFrom(st.Settings)
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

// handToGPU transfers leadership from a witness to a GPU voter that
// answers: the active node if it is healthy, else a healthy one, else any
// that answers.
func (c *controller) handToGPU(st fsm.State) {
	a := c.a
	c.mu.Lock()
	if time.Since(c.lastXfer) < time.Second {
		c.mu.Unlock()
		return
	}
	c.lastXfer = time.Now()
	c.mu.Unlock()
	cf := a.node.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	var candidates []raft.Server
	for _, s := range cf.Configuration().Servers {
		m, ok := st.Members[string(s.ID)]
		if !ok || m.Role != fsm.RoleGPU || s.Suffrage != raft.Voter {
			continue
		}
		if string(s.ID) == st.Active.Node {
			candidates = append([]raft.Server{s}, candidates...)
		} else {
			candidates = append(candidates, s)
		}
	}
	// Ask every candidate at once, briefly: a dead active node must not
	// hold up the hand-over by a full peer timeout.
	reports := make([]*SelfReport, len(candidates))
	var wg sync.WaitGroup
	for i, s := range candidates {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var self SelfReport
			ctx, cancel := context.WithTimeout(a.ctx, 300*time.Millisecond)
			defer cancel()
			if a.peerCall(ctx, st.Members[string(s.ID)].APIAddr, "GET", "/v1/self", nil, &self, false) == nil {
				reports[i] = &self
			}
		}()
	}
	wg.Wait()
	var pick *raft.Server
	healthy := false
	for i := range candidates {
		r := reports[i]
		if r == nil {
			continue
		}
		if pick == nil || (r.Healthy && !healthy) {
			pick, healthy = &candidates[i], r.Healthy
		}
	}
	if pick == nil {
		c.setErr(errors.New("witness leads and no GPU voter answers to take leadership"))
		return
	}
	a.log.Info("witness hands leadership to a GPU node", "to", pick.ID, "healthy", healthy)
	if err := a.node.raft.LeadershipTransferToServer(pick.ID, pick.Address).Error(); err != nil {
		c.setErr(fmt.Errorf("hand leadership to %s: %w", pick.ID, err))
	}
}

// holdVIP confirms leadership with a quorum and then claims or renews. It
// returns how long to wait before a claim may be made, or 0.
func (c *controller) holdVIP(ctx context.Context, st fsm.State, s Settings) time.Duration {
	c.vipMu.Lock()
	defer c.vipMu.Unlock()
	c.mu.Lock()
	v, holding, since, heldEpoch := c.vip, c.holding, c.leaderSince, c.heldEpoch
	handingOver := time.Now().Before(c.transferBy)
	c.mu.Unlock()
	if v == nil || handingOver {
		// A planned failover is handing the VIP over: never renew under it.
		return 0
	}
	start := time.Now()
	if err := c.a.node.raft.VerifyLeader().Error(); err != nil {
		c.releaseVIPLocked("leadership not confirmed: " + err.Error())
		return 0
	}
	if cur := c.a.node.fsm.State().Active; cur.Node != c.a.Name() || cur.Epoch != st.Active.Epoch {
		return 0 // the assignment moved while we confirmed; the next step acts on it
	}
	notAfter := start.Add(time.Duration(s.Timings.ConfirmMaxAge))
	if !holding {
		wait := s.Timings.TakeoverWait()
		if !st.Active.Handover && time.Since(since) < wait {
			// The previous holder may still have a lease it renewed just
			// before we won: wait it out (docs/timings.md).
			return wait - time.Since(since)
		}
		if err := v.Claim(ctx, notAfter); err != nil {
			c.setErr(fmt.Errorf("claim vip: %w", err))
			return 0
		}
		c.mu.Lock()
		c.holding, c.heldEpoch = true, st.Active.Epoch
		c.mu.Unlock()
		c.a.log.Info("claimed VIP", "vip", c.vipSpec.Prefix.String(), "epoch", st.Active.Epoch, "handover", st.Active.Handover, "leader_for", time.Since(since).Round(time.Millisecond))
		return 0
	}
	if err := v.Renew(ctx, notAfter); err != nil {
		c.setErr(fmt.Errorf("renew vip: %w", err))
		return 0
	}
	if heldEpoch != st.Active.Epoch {
		// A new epoch with the same holder: announce again, so caches
		// left stale by a healed partition are corrected.
		if err := v.Announce(ctx); err != nil {
			c.setErr(fmt.Errorf("announce vip: %w", err))
		}
		c.mu.Lock()
		c.heldEpoch = st.Active.Epoch
		c.mu.Unlock()
	}
	return 0
}

// releaseVIP removes the VIP if this agent holds it (or might). It waits
// for a claim or renewal in progress to finish first.
func (c *controller) releaseVIP(why string) {
	c.vipMu.Lock()
	defer c.vipMu.Unlock()
	c.releaseVIPLocked(why)
}

func (c *controller) releaseVIPLocked(why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.vip == nil {
		return
	}
	held, _, _ := c.vip.Held()
	if !c.holding && !held {
		return
	}
	if err := c.vip.Release(); err != nil {
		c.lastErr = fmt.Sprintf("release vip: %v", err)
		c.a.log.Error("release VIP failed", "error", err)
		return
	}
	c.holding = false
	c.a.log.Info("released VIP", "reason", why)
}

// ensureVIP (re)builds the VIP actuator when the settings change.
func (c *controller) ensureVIP(s Settings) error {
	a := c.a
	if a.cfg.NewVIP == nil || a.cfg.Node.Role != fsm.RoleGPU {
		return nil
	}
	p, ok := s.VIPPrefix()
	spec := VIPSpec{Prefix: p, Iface: a.cfg.Node.VIPInterface, Lifetime: time.Duration(s.Timings.VIPLifetime),
		GARPRepeat: s.VIP.GARPRepeat, GARPInterval: time.Duration(s.VIP.GARPInterval), Refresh: time.Duration(s.VIP.GARPRefresh)}
	c.mu.Lock()
	same := c.vip != nil && c.vipSpec == spec
	c.mu.Unlock()
	if same || (!ok && c.vip == nil) {
		return nil
	}
	c.vipMu.Lock()
	defer c.vipMu.Unlock()
	c.releaseVIPLocked("vip settings changed")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.vip != nil {
		_ = c.vip.Close()
		c.vip = nil
	}
	if !ok {
		return nil
	}
	v, err := a.cfg.NewVIP(spec)
	if err != nil {
		return fmt.Errorf("vip %s on %s: %w", spec.Prefix, spec.Iface, err)
	}
	c.vip, c.vipSpec, c.holding = v, spec, false
	return nil
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

// holdsVIP reports whether the VIP is on this host now.
func (c *controller) holdsVIP() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.vip == nil {
		return false
	}
	held, _, err := c.vip.Held()
	return err == nil && held
}

// checkConflict probes who answers for the VIP: a holder must hear nobody
// else; a node that does not hold it (a standby, the witness) must hear at
// most one MAC. On a
// conflict the holder announces again, so clients move back to it.
func (c *controller) checkConflict(ctx context.Context, timeout time.Duration) {
	c.mu.Lock()
	v := c.vip
	c.mu.Unlock()
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

// pauseLeaderDuties stops the leader from re-taking the active role while
// a planned failover hands it over.
func (c *controller) pauseLeaderDuties(d time.Duration) {
	c.mu.Lock()
	c.transferBy = time.Now().Add(d)
	c.mu.Unlock()
}

func (c *controller) resumeLeaderDuties() {
	c.mu.Lock()
	c.transferBy = time.Time{}
	c.mu.Unlock()
	c.poke()
}
