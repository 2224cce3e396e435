package cluster

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/newbieha/newbieha/cluster/lease"
	"github.com/newbieha/newbieha/fsm"
)

// agentLeaseEnv gives the lease runner the agent's applied state, its
// voters and its peer client.
type agentLeaseEnv struct{ a *Agent }

func (e agentLeaseEnv) view() lease.View {
	act, gpu := e.a.node.fsm.ActiveView()
	return lease.View{Active: act.Node, Epoch: act.Epoch, ActiveIsGPU: gpu}
}

func (e agentLeaseEnv) holderView() lease.HolderView {
	return lease.HolderView{
		View:    e.view(),
		SelfGPU: e.a.cfg.Node.Role == fsm.RoleGPU,
		Voters:  e.a.voterNames(),
		Params:  e.a.settings().Timings.Lease(),
	}
}

func (e agentLeaseEnv) vipSpec() (VIPSpec, bool) {
	s := e.a.settings()
	p, ok := s.VIPPrefix()
	return VIPSpec{Prefix: p, Iface: e.a.cfg.Node.VIPInterface, Lifetime: time.Duration(s.Timings.VIPLifetime),
		GARPRepeat: s.VIP.GARPRepeat, GARPInterval: time.Duration(s.VIP.GARPInterval), Refresh: time.Duration(s.VIP.GARPRefresh)}, ok
}

func (e agentLeaseEnv) send(ctx context.Context, to string, req lease.Request) (lease.Answer, error) {
	m, ok := e.a.node.fsm.Member(to)
	if !ok || m.APIAddr == "" {
		return lease.Answer{}, fmt.Errorf("%w: voter %q has no member record", ErrUnknownMember, to)
	}
	var ans lease.Answer
	var out any = &ans
	if req.Release {
		out = nil
	}
	err := e.a.peerCall(ctx, m.APIAddr, http.MethodPost, "/v1/internal/lease", req, out, false)
	return ans, err
}

func (e agentLeaseEnv) changed() <-chan struct{} { return e.a.node.fsm.Changed() }

func (e agentLeaseEnv) leads() bool { return e.a.node.raft.State() == raft.Leader }

// shedLeadership hands leadership to a witness voter that gossip holds
// alive (see maybeShed).
func (e agentLeaseEnv) shedLeadership() (string, error) {
	a := e.a
	if a.node.raft.State() != raft.Leader || a.gossip == nil {
		return "", nil
	}
	alive := map[string]bool{}
	for _, m := range a.gossip.Members() {
		alive[m.Name] = m.Alive
	}
	for _, n := range a.voterNames() {
		m, ok := a.node.fsm.Member(n)
		if n == a.Name() || !ok || !alive[n] || m.Role != fsm.RoleWitness || m.RaftAddr == "" {
			continue
		}
		if err := a.node.raft.LeadershipTransferToServer(raft.ServerID(n), raft.ServerAddress(m.RaftAddr)).Error(); err != nil {
			return "", fmt.Errorf("transfer leadership to %s: %w", n, err)
		}
		return n, nil
	}
	return "", nil
}

// voterNames lists the voters of the current Raft configuration, cached
// for a second (GetConfiguration goes through Raft's main loop).
func (a *Agent) voterNames() []string {
	a.votersMu.Lock()
	defer a.votersMu.Unlock()
	if a.voters != nil && time.Since(a.votersAt) < time.Second {
		return a.voters
	}
	cf := a.node.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return a.voters
	}
	var names []string
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			names = append(names, string(s.ID))
		}
	}
	slices.Sort(names)
	a.voters, a.votersAt = names, time.Now()
	return names
}

// otherReports asks every other voter for its lease report, at once and
// within timeout; one that does not answer is left out. It returns early
// once enough says the reports so far suffice (a host that is gone does
// not answer at all, and must not hold up a failover by the timeout).
func (a *Agent) otherReports(ctx context.Context, timeout time.Duration, enough func([]lease.Report) bool) []lease.Report {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ch := make(chan *lease.Report)
	asked := 0
	for _, n := range a.voterNames() {
		m, ok := a.node.fsm.Member(n)
		if n == a.Name() || !ok || m.APIAddr == "" {
			continue
		}
		asked++
		go func() {
			var r lease.Report
			if err := a.peerCall(ctx, m.APIAddr, http.MethodGet, "/v1/internal/lease", nil, &r, false); err != nil || r.Voter != n {
				ch <- nil
				return
			}
			ch <- &r
		}()
	}
	var out []lease.Report
	for i := 0; i < asked; i++ {
		if r := <-ch; r != nil {
			out = append(out, *r)
		}
		if enough != nil && enough(out) {
			// The others still send on ch: drain it so they can end.
			go func(left int) {
				for ; left > 0; left-- {
					<-ch
				}
			}(asked - i - 1)
			break
		}
	}
	return out
}
