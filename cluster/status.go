package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/newbieha/newbieha/fsm"
)

// StatusTimeout bounds how long Status waits for a member's own report: a
// member down behind a silent network costs this, not the peer timeout.
const StatusTimeout = 750 * time.Millisecond

// MinStatusTimeout is the shortest bound StatusWithin takes.
const MinStatusTimeout = 10 * time.Millisecond

// Status reports the cluster as this member sees it. Each other member is
// asked for its own report over mutual TLS; one that does not answer within
// StatusTimeout is "unreachable" and listed in Unanswered.
func (a *Agent) Status(ctx context.Context) Status {
	return a.StatusWithin(ctx, StatusTimeout)
}

// StatusWithin is Status with a shorter bound on each member's answer
// (clamped to MinStatusTimeout..StatusTimeout): a caller that polls, such
// as a drill watching the holder, must not wait on a member cut off
// behind a silent network for longer than it takes the others to move.
func (a *Agent) StatusWithin(ctx context.Context, bound time.Duration) Status {
	bound = min(max(bound, MinStatusTimeout), StatusTimeout)
	st := a.node.fsm.State()
	out := Status{Node: a.Name(), Leader: a.Leader(), Active: st.Active, Maintenance: st.Maintenance, MaintenanceInfo: st.MaintenanceInfo}

	voters := map[string]string{} // name -> raft address, for voters and non-voters alike
	suffrage := map[string]bool{}
	if cf := a.node.raft.GetConfiguration(); cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			voters[string(s.ID)] = string(s.Address)
			suffrage[string(s.ID)] = s.Suffrage == raft.Voter
		}
	}
	names := map[string]bool{}
	for n := range st.Members {
		names[n] = true
	}
	for n := range voters {
		names[n] = true
	}

	view := a.gossipView()
	var mu sync.Mutex
	add := func(ms MemberStatus) {
		mu.Lock()
		out.Members = append(out.Members, ms)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for name := range names {
		m, known := st.Members[name]
		ms := MemberStatus{Name: name, Role: m.Role, APIAddr: m.APIAddr, RaftAddr: m.RaftAddr, Voter: suffrage[name], JoinedAt: m.JoinedAt, Raft: RaftUnreachable, Certs: m.Certs}
		if addr, ok := voters[name]; ok {
			ms.RaftAddr = addr // the Raft configuration is the truth here
		}
		if ap, err := netip.ParseAddrPort(ms.RaftAddr); err == nil {
			ms.Address = ap.Addr().String()
		}
		if name == a.Name() {
			self := a.self()
			if self.Raft == RaftLeader {
				mu.Lock()
				out.Blocked = self.Blocked
				mu.Unlock()
			}
			ms.Raft, ms.SeesLeader, ms.HoldsVIP, ms.Healthy, ms.HealthReason, ms.Health = self.Raft, self.Leader, self.HoldsVIP, self.Healthy, self.HealthReason, self.Health
			ms.VIPConflict, ms.Lease = self.VIPConflict, self.Lease
			fillRaft(&ms, self)
			add(ms)
			continue
		}
		if !known || m.APIAddr == "" {
			add(ms)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var self SelfReport
			cctx, cancel := context.WithTimeout(ctx, min(a.cfg.PeerTimeout, bound))
			defer cancel()
			if err := a.peerCall(cctx, ms.APIAddr, http.MethodGet, "/v1/self", nil, &self, false); err == nil && self.Name == name {
				if self.Raft == RaftLeader {
					mu.Lock()
					out.Blocked = self.Blocked
					mu.Unlock()
				}
				ms.Raft, ms.SeesLeader, ms.HoldsVIP, ms.Healthy, ms.HealthReason, ms.Health = self.Raft, self.Leader, self.HoldsVIP, self.Healthy, self.HealthReason, self.Health
				ms.VIPConflict, ms.Lease = self.VIPConflict, self.Lease
				fillRaft(&ms, self)
			}
			add(ms)
		}()
	}
	wg.Wait()
	for i := range out.Members {
		m := &out.Members[i]
		if m.Name == a.Name() {
			m.Alive = true // this agent answers, whatever gossip says of itself
			continue
		}
		if g, ok := view[m.Name]; ok {
			mergeGossip(m, g, time.Now())
		}
	}
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].Name < out.Members[j].Name })
	for _, m := range out.Members {
		if !m.Answered {
			out.Unanswered = append(out.Unanswered, m.Name)
		}
	}
	out.VIP.Address = a.settings().VIP.Address
	var holders []string
	for _, m := range out.Members {
		if m.HoldsVIP {
			holders = append(holders, m.Name)
		}
	}
	if len(holders) > 0 {
		out.VIP.Holder = holders[0]
	}
	var conflicts []string
	if len(holders) > 1 {
		conflicts = append(conflicts, "held by "+strings.Join(holders, " and "))
	}
	for _, m := range out.Members {
		if m.VIPConflict != "" {
			conflicts = append(conflicts, m.VIPConflict)
		}
	}
	out.VIP.Conflict = strings.Join(conflicts, "; ")
	return out
}

// fillRaft copies a member's own Raft figures into its status line.
func fillRaft(ms *MemberStatus, self SelfReport) {
	ms.Answered = true
	ms.Term, ms.AppliedIndex, ms.CommitIndex, ms.LastContact, ms.Version = self.Term, self.AppliedIndex, self.CommitIndex, self.LastContact, self.Version
}

// Problems lists what makes the cluster degraded, as `newbieha status`
// reports it with exit code 1: no leader, an active node that holds no
// VIP (or no active node), a member that did not answer, a VIP conflict, a
// blocked move. Empty means healthy.
func (s Status) Problems() []string {
	var out []string
	if s.Leader == "" {
		out = append(out, "no raft leader")
	}
	switch {
	case s.Active.Node == "":
		out = append(out, "no active node")
	case s.VIP.Address != "" && s.VIP.Holder == "":
		out = append(out, "nobody holds the VIP "+s.VIP.Address)
	}
	for _, n := range s.Unanswered {
		out = append(out, "member "+n+" did not answer")
	}
	// What a rolling restart must wait out before it takes the next
	// member away: a voter that has just started grants no lease yet (with
	// another voter gone the holder would find no majority), and a GPU node
	// whose service is unhealthy cannot take the active role over.
	for _, m := range s.Members {
		if m.Raft == RaftUnreachable {
			continue
		}
		if q := time.Duration(m.Lease.Quarantine); q > 0 {
			out = append(out, fmt.Sprintf("member %s grants no lease for %v more (start-up quarantine)", m.Name, q.Round(100*time.Millisecond)))
		}
		if m.Role == fsm.RoleGPU && (m.Answered || m.Alive) && !m.Healthy {
			why := m.HealthReason
			if why == "" {
				why = "no health report yet"
			}
			out = append(out, fmt.Sprintf("member %s is unhealthy: %s", m.Name, why))
		}
	}
	if s.VIP.Conflict != "" {
		out = append(out, "VIP conflict: "+s.VIP.Conflict)
	}
	if s.Blocked != "" {
		out = append(out, "move blocked: "+s.Blocked)
	}
	return out
}

// memberAPIAddrs lists the API addresses of all members but skip.
func memberAPIAddrs(st fsm.State, skip string) []string {
	var out []string
	for _, m := range st.Members {
		if m.Name != skip && m.APIAddr != "" {
			out = append(out, m.APIAddr)
		}
	}
	sort.Strings(out)
	return out
}

// mergeGossip adds what gossip says of a member to its status. A member
// that answered over mutual TLS speaks for itself; gossip (every member's
// signed report, fresh within a few seconds) fills in health, telemetry and
// the VIP only for one whose API does not answer.
func mergeGossip(m *MemberStatus, g gossipMember, now time.Time) {
	m.Alive = g.Alive
	if !g.HasState {
		return
	}
	m.GossipAge = Duration(now.Sub(g.UpdatedAt).Round(time.Millisecond))
	if m.Raft != RaftUnreachable {
		m.Alive = true // it has just answered us
		return
	}
	m.Healthy, m.HealthReason, m.Health = g.State.Healthy, g.State.HealthReason, g.State.Health
	if !g.Alive {
		// A dead node's last report says nothing about now.
		m.Healthy = false
		m.HealthReason = fmt.Sprintf("not alive (last report %v ago)", time.Duration(m.GossipAge).Round(time.Second))
		return
	}
	// Alive but its API does not answer: the gossiped word on the VIP is
	// the best there is.
	m.HoldsVIP = g.State.HoldsVIP
}
