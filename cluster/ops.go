package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/newbieha/newbieha/fsm"
)

// More sentinels for operator calls.
var (
	// ErrMaintenance means maintenance mode forbids the change.
	ErrMaintenance = errors.New("maintenance mode is on")
	// ErrAlreadyActive means the failover target is already active.
	ErrAlreadyActive = errors.New("already the active node")
	// ErrNotGPU means the node is a witness and can never serve.
	ErrNotGPU = errors.New("a witness cannot be active")
	// ErrUnhealthy means the failover target's service is not healthy.
	ErrUnhealthy = errors.New("target is not healthy")
	// ErrUnreachable means a member did not answer.
	ErrUnreachable = errors.New("member unreachable")
)

// FailoverRequest asks for a planned handover of the active role.
type FailoverRequest struct {
	To    string `json:"to"`
	Force bool   `json:"force"` // skip the health check (not reachability)
	// Reason is recorded in the history; "" means manual:failover. It
	// must start with "manual:" (an operator's words) or "stop:" (an
	// agent handing over before it stops).
	Reason string `json:"reason,omitempty"`
}

// FailoverResponse reports a planned handover.
type FailoverResponse struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Epoch uint64 `json:"epoch"`
	// CommittedMs is how long after the request the new epoch was
	// committed; HeldMs when the target reported its lease (0: it had not
	// within a few lease durations).
	CommittedMs float64 `json:"committed_ms"`
	HeldMs      float64 `json:"held_ms"`
}

// MaintenanceRequest turns maintenance mode on or off.
type MaintenanceRequest struct {
	On     bool   `json:"on"`
	Reason string `json:"reason"`
}

// ConfigRequest carries a settings document (YAML).
type ConfigRequest struct {
	YAML string `json:"yaml"`
}

// ConfigResponse carries the live settings.
type ConfigResponse struct {
	YAML     string   `json:"yaml"`
	Settings Settings `json:"settings"`
}

// DrillRequest forces a check result on a node for a while, or with Clear
// ends an earlier injection of Check at once (Passing and For are then
// ignored; the check is probed again at once).
type DrillRequest struct {
	Node    string   `json:"node"`  // "" means the node that receives it
	Check   string   `json:"check"` // "name" or "kind:name"
	Passing bool     `json:"passing"`
	For     Duration `json:"for"`
	Clear   bool     `json:"clear,omitempty"`
}

// TransferLeaderRequest asks the leader to hand Raft leadership to a member
// (an operator and drill tool, like `consul operator raft transfer-leader`).
// It does not change the active node by itself: the controller of the new
// leader does what its role requires.
type TransferLeaderRequest struct {
	To string `json:"to"`
}

// failover hands the active role to req.To (leader only): it checks the
// target and commits the new epoch. Nothing else: the old holder, on
// applying the entry, closes its fence, removes the address and tells the
// voters it released; the target is granted as soon as a majority of voters
// has no live grant for anyone else. No flag is trusted and leadership does
// not move. It then waits (bounded) until the target reports its lease.
func (a *Agent) failover(ctx context.Context, req FailoverRequest, reason string) (FailoverResponse, error) {
	if !a.IsLeader() {
		return FailoverResponse{}, ErrNotLeader
	}
	begin := time.Now()
	st := a.node.fsm.State()
	m, ok := st.Members[req.To]
	switch {
	case !ok:
		return FailoverResponse{}, fmt.Errorf("%w: %q", ErrUnknownMember, req.To)
	case m.Role != fsm.RoleGPU:
		return FailoverResponse{}, fmt.Errorf("%w: %s", ErrNotGPU, req.To)
	case st.Maintenance:
		return FailoverResponse{}, fmt.Errorf("%w: turn it off first (newbieha maintenance off)", ErrMaintenance)
	case st.Active.Node == req.To:
		return FailoverResponse{}, fmt.Errorf("%w: %s (epoch %d)", ErrAlreadyActive, req.To, st.Active.Epoch)
	}
	target, err := a.selfOf(ctx, req.To)
	if err != nil {
		return FailoverResponse{}, fmt.Errorf("%w: %s: %v", ErrUnreachable, req.To, err)
	}
	if !req.Force && !target.Healthy {
		return FailoverResponse{}, fmt.Errorf("%w: %s: %s (--force skips this check)", ErrUnhealthy, req.To, target.HealthReason)
	}
	if err := followsLeader(target, a.Name()); err != nil && !req.Force {
		return FailoverResponse{}, fmt.Errorf("%w: %v (--force skips this check)", ErrUnreachable, err)
	}
	cmd := fsm.SetActive{Node: req.To, Epoch: st.Active.Epoch + 1, Time: a.cfg.Now().UTC(), Reason: reason}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return FailoverResponse{}, err
	}
	if err := a.applyAndSpread(data); err != nil {
		return FailoverResponse{}, fmt.Errorf("record failover: %w", err)
	}
	resp := FailoverResponse{From: st.Active.Node, To: req.To, Epoch: cmd.Epoch, CommittedMs: ms(time.Since(begin))}
	a.log.Info("planned failover committed", "from", st.Active.Node, "to", req.To, "epoch", cmd.Epoch, "reason", reason)
	// Report when the target holds its lease; a cluster without a VIP or
	// a slow target is not an error: the entry is committed.
	p := a.settings().Timings.Lease()
	deadline := time.Now().Add(2*(p.Duration+p.Drift) + time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if s, err := a.selfOf(ctx, req.To); err == nil && s.Lease.Epoch >= cmd.Epoch && s.Lease.Left > 0 {
			resp.HeldMs = ms(time.Since(begin))
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return resp, nil
}

// selfOf asks a member for its own report (this node answers itself).
func (a *Agent) selfOf(ctx context.Context, name string) (SelfReport, error) {
	if name == a.Name() {
		return a.self(), nil
	}
	m, ok := a.node.fsm.Member(name)
	if !ok {
		return SelfReport{}, fmt.Errorf("%w: %q", ErrUnknownMember, name)
	}
	var s SelfReport
	cctx, cancel := context.WithTimeout(ctx, a.cfg.PeerTimeout)
	defer cancel()
	err := a.peerCall(cctx, m.APIAddr, http.MethodGet, "/v1/self", nil, &s, false)
	return s, err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// recordEvent commits an audit event about this node (best effort: a
// failure is logged, the caller goes on).
func (a *Agent) recordEvent(ctx context.Context, kind, detail string) {
	ev := fsm.Event{Kind: kind, Node: a.Name(), Detail: detail, Time: a.cfg.Now().UTC()}
	ev.Detail = truncateUTF8(ev.Detail, fsm.MaxReasonLen)
	if err := a.apply(ctx, fsm.RecordEvent{Event: ev}); err != nil {
		a.log.Warn("could not record event", "kind", kind, "error", err)
	}
}

// Shutdown stops the agent as SIGTERM should: an agent that holds the
// active role first hands it to a healthy standby (a planned failover with
// reason stop:NAME, bounded by failover.stop_handover) and waits until it
// has released; with no healthy standby, or when that fails, it releases
// and stops anyway. Then it closes like Close.
func (a *Agent) Shutdown() error {
	a.handOffBeforeStop()
	return a.Close()
}

func (a *Agent) handOffBeforeStop() {
	limit := time.Duration(a.settings().Failover.StopHandover)
	act, _ := a.node.fsm.ActiveView()
	if limit <= 0 || act.Node != a.Name() || a.cfg.Node.Role != fsm.RoleGPU {
		return
	}
	ctx, cancel := context.WithTimeout(a.ctx, limit)
	defer cancel()
	to := ""
	health := a.gossipHealth()
	for _, m := range a.node.fsm.State().Members {
		if h := health[m.Name]; m.Role == fsm.RoleGPU && h.Known && h.Healthy {
			to = m.Name
			break
		}
	}
	if to == "" {
		a.log.Warn("stopping while active: no healthy standby to hand over to; releasing")
		return
	}
	a.log.Info("stopping while active: handing over first", "to", to, "limit", limit)
	req := FailoverRequest{To: to, Reason: "stop:" + a.Name()}
	var resp FailoverResponse
	var err error
	if a.IsLeader() {
		resp, err = a.failover(ctx, req, req.Reason)
	} else {
		err = a.toLeader(ctx, "/v1/internal/handover", HandoverRequest{To: to}, &resp)
	}
	if err != nil {
		a.log.Warn("hand-over before stop failed; releasing", "to", to, "error", err)
		return
	}
	for ctx.Err() == nil && a.lease.state().Epoch != 0 {
		time.Sleep(5 * time.Millisecond)
	}
	a.log.Info("handed over before stop", "to", to, "epoch", resp.Epoch, "held_ms", resp.HeldMs)
}

// truncateUTF8 cuts s to at most n bytes on a character boundary (the
// state machine refuses invalid UTF-8, and an audit event must not be lost
// to a cut through a character).
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// followsLeader says why a failover target would not learn of its new
// role in time: it is not a follower of leader (a candidate after a
// partition, or following another), so the entry naming it reaches it only
// once it follows again, and by then the old holder has released and the
// voters, hearing no lease round from the target for a lease, have named
// another node (holder-lost). Found by the soak: a planned failover right
// after the GPU nodes' link came back went there and back.
func followsLeader(s SelfReport, leader string) error {
	if s.Name == leader && s.Raft == RaftLeader {
		return nil // the leader hands the role to itself
	}
	if s.Raft != RaftFollower || s.Leader != leader {
		seen := s.Leader
		if seen == "" {
			seen = "none"
		}
		return fmt.Errorf("%s does not follow the leader %s yet (raft %s, sees leader %s): try again once status shows it following", s.Name, leader, s.Raft, seen)
	}
	return nil
}
