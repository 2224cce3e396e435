package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/raft"

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

func (a *Agent) routesOps(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/failover", a.handleFailover)
	mux.HandleFunc("POST /v1/maintenance", a.handleMaintenance)
	mux.HandleFunc("GET /v1/history", a.handleHistory)
	mux.HandleFunc("GET /v1/events", a.handleEvents)
	mux.HandleFunc("GET /v1/config", a.handleConfigShow)
	mux.HandleFunc("POST /v1/config", a.handleConfigApply)
	mux.HandleFunc("POST /v1/raft/transfer-leader", a.handleTransferLeader)
	mux.HandleFunc("POST /v1/drill/inject", a.handleDrillInject)
}

// DrillRequest forces a check result on a node for a while.
type DrillRequest struct {
	Node    string   `json:"node"`  // "" means the node that receives it
	Check   string   `json:"check"` // "name" or "kind:name"
	Passing bool     `json:"passing"`
	For     Duration `json:"for"`
}

func (a *Agent) handleDrillInject(w http.ResponseWriter, r *http.Request) {
	var req DrillRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.For <= 0 || time.Duration(req.For) > time.Hour {
		writeError(w, fmt.Errorf("%w: for %v must be between 1s and 1h", ErrBadRequest, time.Duration(req.For)))
		return
	}
	if req.Node != "" && req.Node != a.Name() {
		m, ok := a.node.fsm.Member(req.Node)
		if !ok {
			writeError(w, fmt.Errorf("%w: %q", ErrUnknownMember, req.Node))
			return
		}
		fwd := req
		fwd.Node = ""
		if err := a.peerCall(r.Context(), m.APIAddr, http.MethodPost, "/v1/drill/inject", fwd, nil, true); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	if a.cfg.Drill == nil {
		writeError(w, fmt.Errorf("%w: %s runs no health checks", ErrBadRequest, a.Name()))
		return
	}
	if err := a.cfg.Drill(req.Check, req.Passing, time.Now().Add(time.Duration(req.For))); err != nil {
		writeError(w, fmt.Errorf("%w: %w", ErrBadRequest, err))
		return
	}
	a.log.Warn("drill: check result forced", "check", req.Check, "passing", req.Passing, "for", time.Duration(req.For))
	verdict := "failing"
	if req.Passing {
		verdict = "passing"
	}
	a.recordEvent(r.Context(), "drill", fmt.Sprintf("check %s forced %s for %v", req.Check, verdict, time.Duration(req.For)))
	writeJSON(w, http.StatusOK, struct{}{})
}

// TransferLeaderRequest asks the leader to hand Raft leadership to a member
// (an operator and drill tool, like `consul operator raft transfer-leader`).
// It does not change the active node by itself: the controller of the new
// leader does what its role requires.
type TransferLeaderRequest struct {
	To string `json:"to"`
}

func (a *Agent) handleTransferLeader(w http.ResponseWriter, r *http.Request) {
	var req TransferLeaderRequest
	if !readJSON(w, r, &req) {
		return
	}
	err := a.onLeader(r, func() error {
		if !a.IsLeader() {
			return ErrNotLeader
		}
		m, ok := a.node.fsm.Member(req.To)
		if !ok {
			return fmt.Errorf("%w: %q", ErrUnknownMember, req.To)
		}
		if req.To == a.Name() {
			return nil
		}
		if err := a.node.raft.LeadershipTransferToServer(raft.ServerID(req.To), raft.ServerAddress(m.RaftAddr)).Error(); err != nil {
			return fmt.Errorf("transfer leadership to %s: %w", req.To, err)
		}
		a.log.Info("leadership transferred on request", "to", req.To)
		return nil
	}, "/v1/raft/transfer-leader", req, nil)
	if err != nil {
		writeError(w, err)
		return
	}
	a.audit(r, "raft transfer-leader to "+req.To)
	writeJSON(w, http.StatusOK, struct{}{})
}

func (a *Agent) handleFailover(w http.ResponseWriter, r *http.Request) {
	var req FailoverRequest
	if !readJSON(w, r, &req) {
		return
	}
	reason := req.Reason
	switch {
	case reason == "":
		reason = "manual:failover"
	case !strings.HasPrefix(reason, "manual:") && !strings.HasPrefix(reason, "stop:"):
		writeError(w, fmt.Errorf("%w: reason %q must start with manual: or stop:", ErrBadRequest, reason))
		return
	}
	var resp FailoverResponse
	err := a.onLeader(r, func() (err error) { resp, err = a.failover(r.Context(), req, reason); return err }, "/v1/failover", req, &resp)
	if err != nil {
		writeError(w, err)
		return
	}
	a.audit(r, fmt.Sprintf("failover %s -> %s, epoch %d, force=%v, reason %s", resp.From, resp.To, resp.Epoch, req.Force, reason))
	writeJSON(w, http.StatusOK, resp)
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

func (a *Agent) handleMaintenance(w http.ResponseWriter, r *http.Request) {
	var req MaintenanceRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Reason == "" {
		req.Reason = "manual:maintenance-off"
		if req.On {
			req.Reason = "manual:maintenance-on"
		}
	}
	if err := a.apply(r.Context(), fsm.SetMaintenance{On: req.On, Time: a.cfg.Now().UTC(), Reason: req.Reason}); err != nil {
		writeError(w, err)
		return
	}
	a.audit(r, fmt.Sprintf("maintenance on=%v, reason %s", req.On, req.Reason))
	writeJSON(w, http.StatusOK, struct{}{})
}

// audit records an operator action as an "operator" event in the
// replicated history: who (the operator certificate's name, or root@NODE
// for the local socket), what, and the reason given. Only the member that
// received the call records it; a forwarded copy would name the forwarding
// node instead of the operator.
func (a *Agent) audit(r *http.Request, what string) {
	if r.Header.Get(forwardedHeader) != "" {
		return
	}
	who := callerName(r)
	if who == "" {
		who = "root@" + a.Name()
	}
	a.recordEvent(r.Context(), "operator", who+": "+what)
}

// recordEvent commits an audit event about this node (best effort: a
// failure is logged, the caller goes on).
func (a *Agent) recordEvent(ctx context.Context, kind, detail string) {
	ev := fsm.Event{Kind: kind, Node: a.Name(), Detail: detail, Time: a.cfg.Now().UTC()}
	if len(ev.Detail) > fsm.MaxReasonLen {
		ev.Detail = ev.Detail[:fsm.MaxReasonLen]
	}
	if err := a.apply(ctx, fsm.RecordEvent{Event: ev}); err != nil {
		a.log.Warn("could not record event", "kind", kind, "error", err)
	}
}

func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) {
	ev := a.node.fsm.State().Events
	if ev == nil {
		ev = []fsm.Event{}
	}
	writeJSON(w, http.StatusOK, ev)
}

func (a *Agent) handleHistory(w http.ResponseWriter, r *http.Request) {
	h := a.node.fsm.State().History
	if h == nil {
		h = []fsm.Transition{}
	}
	writeJSON(w, http.StatusOK, h)
}

func (a *Agent) handleConfigShow(w http.ResponseWriter, r *http.Request) {
	s := a.settings()
	y, err := s.YAML()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ConfigResponse{YAML: string(y), Settings: s})
}

func (a *Agent) handleConfigApply(w http.ResponseWriter, r *http.Request) {
	var req ConfigRequest
	if !readJSON(w, r, &req) {
		return
	}
	s, err := ParseSettings([]byte(req.YAML))
	if err == nil && a.cfg.ValidateSettings != nil {
		err = a.cfg.ValidateSettings(s)
	}
	if err != nil {
		writeError(w, fmt.Errorf("%w: cluster config: %w", ErrBadRequest, err))
		return
	}
	raw, err := json.Marshal(s)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := a.apply(r.Context(), fsm.SetSettings{Settings: raw}); err != nil {
		writeError(w, err)
		return
	}
	a.audit(r, fmt.Sprintf("config apply (%d bytes of YAML)", len(req.YAML)))
	writeJSON(w, http.StatusOK, ConfigResponse{YAML: req.YAML, Settings: s})
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
		err = a.toLeader(ctx, "/v1/failover", req, &resp)
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
