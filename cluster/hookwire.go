package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/newbieha/newbieha/cluster/hooks"
	"github.com/newbieha/newbieha/fsm"
)

// hookReplayWindow is how far back a node that becomes Raft leader
// delivers again the failovers in the history: the leader before it may
// have died before its hooks ran. Their ids come from the Raft index, so
// a receiver drops the ones it already has.
const hookReplayWindow = 30 * time.Second

// hookDrain is how long a stopping agent lets its hooks work through what
// is queued (its own released, say) before it cancels them.
const hookDrain = 2 * time.Second

// hookDeps is what the hook source reads of the agent.
type hookDeps struct {
	name     string
	gpu      bool
	log      *slog.Logger
	now      func() time.Time
	fsm      *fsm.FSM
	raft     *raft.Raft
	settings func() Settings
	runner   hooks.Runner // nil: the real one
	doer     hooks.Doer   // nil: the real one
}

// hookSource turns what this agent sees into hook events (docs/hooks.md)
// and keeps the hooks matching the replicated settings. Node events come
// from their owners through small calls that never block (hold, health,
// conflict); cluster events and became-standby come from the applied
// state, which run watches, so no loop of the lease or the controller
// waits on a hook.
type hookSource struct {
	d   hookDeps
	mgr *hooks.Manager

	mu sync.Mutex
	// Last known of this node, for the node events.
	holdSeq   uint64
	holding   bool
	heldEpoch uint64
	named     *bool // the state named this node active at the last look
	// standby is a became-standby held back until the lease runner says
	// this node released, so the two run in that order.
	standby   *hooks.Event
	unhealthy bool // the last known verdict was unhealthy
	// The applied state at the last look, for the cluster events.
	seen      bool
	lastRaw   string
	members   map[string]fsm.Member
	maint     bool
	lastTrans uint64 // Raft index of the newest transition seen
	lastEvent uint64 // Raft index of the newest event seen
	wasLeader bool
}

func newHookSource(d hookDeps) *hookSource {
	return &hookSource{d: d, mgr: hooks.New(hooks.Config{Node: d.name, Logger: d.log, Runner: d.runner, Doer: d.doer})}
}

// run watches the applied state and Raft leadership until ctx ends.
func (h *hookSource) run(ctx context.Context) {
	obsCh := make(chan raft.Observation, 4)
	obs := raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	h.d.raft.RegisterObserver(obs)
	defer h.d.raft.DeregisterObserver(obs)
	for {
		ch := h.d.fsm.Changed()
		h.look()
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-obsCh:
		}
	}
}

// close lets queued events run for a moment, then stops the hooks.
func (h *hookSource) close() {
	ctx, cancel := context.WithTimeout(context.Background(), hookDrain)
	defer cancel()
	h.mgr.Shutdown(ctx)
}

// role is this node's role now, for an event.
func (h *hookSource) role() string {
	switch {
	case !h.d.gpu:
		return hooks.RoleWitness
	case h.holding:
		return hooks.RoleHolder
	default:
		return hooks.RoleStandby
	}
}

// previousOf is the node active before epoch, from the history.
func previousOf(st fsm.State, epoch uint64) string {
	for i := len(st.History) - 1; i >= 0; i-- {
		if st.History[i].Epoch == epoch {
			return st.History[i].From
		}
	}
	return ""
}

// hold is the lease runner's report of whether this node holds its lease
// (seq orders reports taken under the runner's lock; an older one that
// arrives late is ignored).
func (h *hookSource) hold(seq uint64, holding bool, epoch uint64, stopping bool) {
	h.mu.Lock()
	if seq <= h.holdSeq {
		h.mu.Unlock()
		return
	}
	h.holdSeq = seq
	var e hooks.Event
	var after *hooks.Event
	switch {
	case holding && (!h.holding || epoch != h.heldEpoch):
		e = hooks.Event{Event: hooks.BecameHolder, Epoch: epoch}
		h.holding, h.heldEpoch, h.standby = true, epoch, nil
	case !holding && h.holding:
		after = h.standby
		h.standby = nil
		e = hooks.Event{Event: hooks.Released, Epoch: h.heldEpoch, Reason: "lease ran out"}
		switch {
		case stopping:
			e.Reason = "stopping"
		case epoch == 0:
			e.Reason = "no longer active"
		}
		h.holding = false
	default:
		h.mu.Unlock()
		return
	}
	e.Role = h.role()
	h.mu.Unlock()
	act, _ := h.d.fsm.ActiveView()
	e.Holder = act.Node
	if e.Event == hooks.BecameHolder {
		e.Reason = act.Reason
		if act.Epoch == epoch {
			e.PreviousHolder = previousOf(h.d.fsm.State(), epoch)
		}
	} else {
		e.PreviousHolder = h.d.name // the epoch is the one it held
	}
	h.mgr.Emit(e)
	if after != nil {
		h.mgr.Emit(*after)
	}
}

// health is this node's verdict (called often; it emits on a change of
// the known verdict, the first known one counting as a change only when
// unhealthy).
func (h *hookSource) health(ok bool, why string, pending bool) {
	if pending || !h.d.gpu {
		return
	}
	h.mu.Lock()
	if !ok == h.unhealthy { // no change
		h.mu.Unlock()
		return
	}
	h.unhealthy = !ok
	role := h.role()
	h.mu.Unlock()
	act, _ := h.d.fsm.ActiveView()
	reason := why
	if ok {
		reason = "healthy"
	}
	h.mgr.Emit(hooks.Event{Event: hooks.HealthChanged, Role: role, Epoch: act.Epoch, Holder: act.Node, Reason: reason, Healthy: &ok})
}

// conflict is a VIP conflict the controller's probe found.
func (h *hookSource) conflict(why string) {
	h.mu.Lock()
	role := h.role()
	h.mu.Unlock()
	act, _ := h.d.fsm.ActiveView()
	h.mgr.Emit(hooks.Event{Event: hooks.ConflictSeen, Role: role, Epoch: act.Epoch, Holder: act.Node, Reason: why})
}

// look compares the applied state with the last look: new settings for
// the hooks, became-standby on this node, drills run here, and, on the
// leader, the cluster events.
func (h *hookSource) look() {
	if raw := string(h.d.fsm.SettingsRaw()); raw != h.lastRaw && raw != "" {
		h.lastRaw = raw
		h.setHooks(h.d.settings())
	}
	st := h.d.fsm.State()
	leader := h.d.raft.State() == raft.Leader
	h.mu.Lock()
	role := h.role()
	var out []hooks.Event
	// became-standby: a GPU node the state names standby, at the first
	// look (as Keepalived's notify_backup at start) and whenever it was
	// named active before.
	if h.d.gpu && st.Active.Node != "" {
		named := st.Active.Node == h.d.name
		if !named && (h.named == nil || *h.named) {
			e := hooks.Event{Event: hooks.BecameStandby, Role: hooks.RoleStandby, Epoch: st.Active.Epoch, Reason: st.Active.Reason,
				PreviousHolder: previousOf(st, st.Active.Epoch), Holder: st.Active.Node}
			if h.holding {
				h.standby = &e // after the released to come
			} else {
				out = append(out, e)
			}
		}
		h.named = &named
	}
	var lastTrans, lastEvent uint64
	if n := len(st.History); n > 0 {
		lastTrans = st.History[n-1].Index
	}
	if n := len(st.Events); n > 0 {
		lastEvent = st.Events[n-1].Index
	}
	if h.seen {
		for _, ev := range st.Events {
			if ev.Index <= h.lastEvent || ev.Node != h.d.name {
				continue
			}
			if req, _, ok := ParseDrillEvent(ev); ok {
				e := hooks.Event{Event: hooks.DrillStarted, ID: fmt.Sprintf("drill-started-%d", ev.Index), Epoch: st.Active.Epoch,
					Holder: st.Active.Node, Reason: "drill " + req.ID + ", runbook " + req.Runbook, Time: ev.Time}
				if req.Phase == DrillPhaseEnd {
					e.Event, e.ID, e.Reason = hooks.DrillEnded, fmt.Sprintf("drill-ended-%d", ev.Index), "drill "+req.ID+": "+req.Summary
				}
				out = append(out, e)
			}
		}
	}
	if leader {
		cluster := func(e hooks.Event) {
			e.Holder = st.Active.Node
			if e.Epoch == 0 {
				e.Epoch = st.Active.Epoch
			}
			out = append(out, e)
		}
		for _, tr := range st.History {
			// The new ones; and on becoming leader the recent ones, which
			// the leader before may not have delivered.
			fresh := h.seen && tr.Index > h.lastTrans
			replay := !h.wasLeader && h.d.now().Sub(tr.Time) < hookReplayWindow
			if fresh || replay {
				cluster(hooks.Event{Event: hooks.FailoverCommitted, ID: fmt.Sprintf("failover-committed-%d", tr.Index), Epoch: tr.Epoch,
					Reason: tr.Reason, PreviousHolder: tr.From, Time: tr.Time})
			}
		}
		if h.seen {
			for name, m := range st.Members {
				if _, ok := h.members[name]; !ok {
					cluster(hooks.Event{Event: hooks.MemberJoined, ID: fmt.Sprintf("member-joined-%s-%d", name, m.JoinedAt.UnixNano()),
						Member: name, Reason: string(m.Role)})
				}
			}
			for name, m := range h.members {
				if _, ok := st.Members[name]; !ok {
					cluster(hooks.Event{Event: hooks.MemberRemoved, ID: fmt.Sprintf("member-removed-%s-%d", name, st.LastIndex),
						Member: name, Reason: string(m.Role)})
				}
			}
			if st.Maintenance != h.maint {
				e := hooks.Event{Event: hooks.MaintenanceOff, ID: fmt.Sprintf("maintenance-off-%d", st.LastIndex)}
				if st.Maintenance {
					e.Event, e.ID = hooks.MaintenanceOn, fmt.Sprintf("maintenance-on-%d", st.LastIndex)
					if mi := st.MaintenanceInfo; mi != nil {
						e.ID, e.Reason = fmt.Sprintf("maintenance-on-%d", mi.Since.UnixNano()), mi.Reason
					}
				}
				cluster(e)
			}
		}
	}
	h.seen, h.wasLeader = true, leader
	h.members, h.maint, h.lastTrans, h.lastEvent = st.Members, st.Maintenance, lastTrans, lastEvent
	h.mu.Unlock()
	for _, e := range out {
		if e.Role == "" {
			e.Role = role
		}
		h.mgr.Emit(e)
	}
}

// setHooks gives the manager the hooks of s and says at once when a
// webhook's secret cannot be read on this node (not at the next failover).
func (h *hookSource) setHooks(s Settings) {
	list := s.hookList()
	if err := h.mgr.Set(list); err != nil {
		h.d.log.Error("hooks not changed", "error", err)
		return
	}
	for _, hk := range list {
		if hk.Webhook != nil && hk.Webhook.SecretFile != "" {
			if _, err := hooks.ReadSecret(hk.Webhook.SecretFile); err != nil {
				h.d.log.Error("webhook cannot sign on this node", "hook", hk.Name, "error", err)
			}
		}
	}
	if len(list) > 0 {
		h.d.log.Info("hooks set", "hooks", len(list))
	}
}
