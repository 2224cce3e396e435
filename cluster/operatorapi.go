package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/newbieha/newbieha/fsm"
)

// operatorAPI is what operators may call: root on the local socket, or the
// holder of an operator certificate on the mTLS port. A node certificate
// is refused here (403 naming the rule); agents talk to each other through
// peerAPI. Every change is audited with the caller's name.
//
// A change that only the leader can make is made there: a remote operator
// is redirected to the leader (307; its client sends the request again
// with its own certificate), and root on a follower's socket is carried
// there by a short-lived operator certificate that this member signs for
// root@NODE (rootClient). The table of endpoints and callers is in
// docs/security.md.
type operatorAPI struct {
	a *Agent
	// local is true for the unix socket, false for the mTLS port.
	local bool
}

// router is where routes are registered: an *http.ServeMux, or a test that
// lists them.
type router interface {
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

func (o *operatorAPI) routes(mux router) {
	for _, r := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"GET /v1/status", o.handleStatus},
		{"GET /v1/history", o.handleHistory},
		{"GET /v1/events", o.handleEvents},
		{"GET /v1/config", o.handleConfigShow},
		{"GET /v1/metrics", o.handleMetrics},
		{"GET /v1/snapshot", o.handleSnapshot},
		{"POST /v1/config", o.handleConfigApply},
		{"POST /v1/tokens", o.handleCreateToken},
		{"GET /v1/tokens", o.handleListTokens},
		{"POST /v1/tokens/revoke", o.handleRevokeToken},
		{"POST /v1/remove", o.handleRemove},
		{"POST /v1/failover", o.handleFailover},
		{"POST /v1/maintenance", o.handleMaintenance},
		{"POST /v1/raft/transfer-leader", o.handleTransferLeader},
		{"POST /v1/drill/inject", o.handleDrillInject},
		{"POST /v1/drill/event", o.handleDrillEvent},
		{"POST /v1/drill/partition", o.handleDrillPartition},
		{"POST /v1/drill/service", o.handleDrillService},
		{"POST /v1/drill/crash", o.handleDrillCrash},
		{"POST /v1/operator/cert", o.handleOperatorCert},
	} {
		mux.HandleFunc(r.pattern, o.guard(r.h))
	}
}

type callerKey struct{}

// guard lets only operators through and hands the caller to the handler.
func (o *operatorAPI) guard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := o.a.identify(r, o.local)
		if !c.operator() {
			refuse(o.a, w, r, c, "is an operator action: call it as root on a member's local socket, or with an operator certificate (newbieha operator cert)")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	}
}

// refuse answers a caller who may not make this call: 401 without a
// certificate, else 403 naming the rule and the caller.
func refuse(a *Agent, w http.ResponseWriter, r *http.Request, c caller, rule string) {
	a.log.Warn("refused api call", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "caller", c.String())
	if c.kind == callerNobody && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
		writeError(w, ErrUnauthorized)
		return
	}
	writeError(w, fmt.Errorf("%w: %s %s %s; the caller is %s", ErrForbidden, r.Method, r.URL.Path, rule, c))
}

// callerOf is the caller guard identified.
func callerOf(r *http.Request) caller {
	c, _ := r.Context().Value(callerKey{}).(caller)
	return c
}

// audit records an operator action as an "operator" event in the
// replicated history: who (the operator certificate's name, or root@NODE
// for the local socket), what, and the reason given. The member that
// carries out the action records it, once.
func (o *operatorAPI) audit(r *http.Request, what string) {
	o.a.recordEvent(r.Context(), "operator", callerOf(r).name+": "+what)
}

// onLeader runs local when this member leads. Otherwise the request goes
// to the leader (see operatorAPI) and its answer is written to w; then ran
// is false and the handler is done.
func (o *operatorAPI) onLeader(w http.ResponseWriter, r *http.Request, body any, local func() error) (ran bool, err error) {
	return o.a.onLeaderOr(r, local, func(apiAddr string) error { return o.tryForward(w, r, apiAddr, body) })
}

// onLeaderOr runs local when this member leads; otherwise it calls
// elsewhere with the leader's API address and reports ran false. While
// there is no leader, or the one this member believes in cannot be
// reached (elsewhere returns errUnreachableLeader: it has just died and an
// election is under way), it tries again for up to ApplyTimeout, as Consul
// holds RPCs during elections.
func (a *Agent) onLeaderOr(r *http.Request, local func() error, elsewhere func(apiAddr string) error) (ran bool, err error) {
	deadline := time.Now().Add(a.cfg.ApplyTimeout)
	for {
		err = local()
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader) {
			return true, err
		}
		if leader := a.Leader(); leader != "" && leader != a.Name() {
			if m, ok := a.node.fsm.Member(leader); ok {
				if err = elsewhere(m.APIAddr); err == nil {
					return false, nil
				}
			}
		}
		if time.Now().After(deadline) || r.Context().Err() != nil {
			return true, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// errUnreachableLeader: the member a request was to be carried to could
// not be connected to; nothing was sent, so it may be tried again.
var errUnreachableLeader = fmt.Errorf("%w: the leader could not be reached", ErrUnreachable)

// redirect sends the caller to the same path on the member at apiAddr
// (307: the client sends the same request again, with its own
// certificate, so the member there judges the caller itself).
func redirect(w http.ResponseWriter, r *http.Request, apiAddr string) {
	http.Redirect(w, r, "https://"+apiAddr+r.URL.RequestURI(), http.StatusTemporaryRedirect)
}

// forward hands an operator's request to the member at apiAddr and writes
// its answer: a redirect for a remote operator, a call made with root's
// certificate for the local socket.
func (o *operatorAPI) forward(w http.ResponseWriter, r *http.Request, apiAddr string, body any) {
	if err := o.tryForward(w, r, apiAddr, body); err != nil {
		writeError(w, err)
	}
}

// toNode carries a drill request that names another member's node to
// that member (forward) and reports true; it reports false when the
// request is for this member (node empty or its own name), to be carried
// out here. An unknown node is refused (and reported true).
func (o *operatorAPI) toNode(w http.ResponseWriter, r *http.Request, node string, req any) bool {
	if node == "" || node == o.a.Name() {
		return false
	}
	m, ok := o.a.node.fsm.Member(node)
	if !ok {
		writeError(w, fmt.Errorf("%w: node: %q", ErrUnknownMember, node))
		return true
	}
	o.forward(w, r, m.APIAddr, req)
	return true
}

// tryForward is forward, except that when the member cannot be connected
// to it writes nothing and returns errUnreachableLeader (wrapped), so the
// caller may try again.
func (o *operatorAPI) tryForward(w http.ResponseWriter, r *http.Request, apiAddr string, body any) error {
	if !o.local {
		redirect(w, r, apiAddr)
		return nil
	}
	client, err := o.a.rootClient()
	if err != nil {
		writeError(w, err)
		return nil
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			writeError(w, fmt.Errorf("encode request: %w", err))
			return nil
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, "https://"+apiAddr+r.URL.RequestURI(), rd)
	if err != nil {
		writeError(w, fmt.Errorf("build request: %w", err))
		return nil
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("%w: %s: %v", errUnreachableLeader, apiAddr, err)
	}
	if err != nil {
		writeError(w, fmt.Errorf("%w: %s: %v", ErrUnreachable, apiAddr, err))
		return nil
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, 4<<20))
	return nil
}

// handleStatus answers GET /v1/status; ?member_timeout=D (a Go duration,
// 10ms..750ms) bounds the wait for each member's own report.
func (o *operatorAPI) handleStatus(w http.ResponseWriter, r *http.Request) {
	bound := StatusTimeout
	if v := r.URL.Query().Get("member_timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < MinStatusTimeout || d > StatusTimeout {
			writeError(w, fmt.Errorf("%w: member_timeout %q: want a duration from %v to %v", ErrBadRequest, v, MinStatusTimeout, StatusTimeout))
			return
		}
		bound = d
	}
	writeJSON(w, http.StatusOK, o.a.StatusWithin(r.Context(), bound))
}

func (o *operatorAPI) handleMetrics(w http.ResponseWriter, r *http.Request) {
	o.a.handleMetrics(w, r)
}

func (o *operatorAPI) handleEvents(w http.ResponseWriter, _ *http.Request) {
	ev := o.a.node.fsm.State().Events
	if ev == nil {
		ev = []fsm.Event{}
	}
	writeJSON(w, http.StatusOK, ev)
}

func (o *operatorAPI) handleHistory(w http.ResponseWriter, _ *http.Request) {
	h := o.a.node.fsm.State().History
	if h == nil {
		h = []fsm.Transition{}
	}
	writeJSON(w, http.StatusOK, h)
}

func (o *operatorAPI) handleConfigShow(w http.ResponseWriter, _ *http.Request) {
	s := o.a.settings()
	y, err := s.YAML()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ConfigResponse{YAML: string(y), Settings: s})
}

func (o *operatorAPI) handleConfigApply(w http.ResponseWriter, r *http.Request) {
	a := o.a
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
	ran, err := o.onLeader(w, r, req, func() error { return a.applyHere(fsm.SetSettings{Settings: raw}) })
	if !ran {
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	o.audit(r, fmt.Sprintf("config apply (%d bytes of YAML)", len(req.YAML)))
	writeJSON(w, http.StatusOK, ConfigResponse{YAML: req.YAML, Settings: s})
}

func (o *operatorAPI) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	var req TokenCreateRequest
	if !readJSON(w, r, &req) {
		return
	}
	ttl := time.Duration(req.TTL)
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	role := req.Role
	if role == "" {
		role = fsm.RoleGPU
	}
	var resp TokenResponse
	ran, err := o.onLeader(w, r, req, func() (err error) {
		if !o.a.IsLeader() {
			return ErrNotLeader
		}
		resp, err = o.a.createTokenUses(r.Context(), ttl, role, req.Uses)
		return err
	})
	if !ran {
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	uses := req.Uses
	if uses == 0 {
		uses = DefaultTokenUses
	}
	o.audit(r, fmt.Sprintf("token create, role %s, valid %v, uses %d", role, ttl, uses))
	writeJSON(w, http.StatusOK, resp)
}

func (o *operatorAPI) handleListTokens(w http.ResponseWriter, _ *http.Request) {
	ts := o.a.listTokens()
	if ts == nil {
		ts = []TokenInfo{}
	}
	writeJSON(w, http.StatusOK, ts)
}

func (o *operatorAPI) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	var req TokenRevokeRequest
	if !readJSON(w, r, &req) {
		return
	}
	ran, err := o.onLeader(w, r, req, func() error {
		if !o.a.IsLeader() {
			return ErrNotLeader
		}
		return o.a.revokeTokenBy(r.Context(), req.ID, callerOf(r).name)
	})
	if !ran {
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	o.audit(r, "token revoke "+req.ID)
	writeJSON(w, http.StatusOK, struct{}{})
}

func (o *operatorAPI) handleRemove(w http.ResponseWriter, r *http.Request) {
	var req RemoveRequest
	if !readJSON(w, r, &req) {
		return
	}
	if err := ValidateName(req.Name); err != nil {
		writeError(w, fmt.Errorf("%w: %w", ErrBadRequest, err))
		return
	}
	ran, err := o.onLeader(w, r, req, func() error {
		if o.a.node.raft.State() != raft.Leader {
			return ErrNotLeader
		}
		// The same check the CLI makes, so that a caller of the API
		// cannot remove the active node or the quorum by accident either.
		if !req.Force {
			if why := RemoveRefusal(o.a.Status(r.Context()), req.Name); why != "" {
				return fmt.Errorf("%w: remove %s: %s", ErrNeedsForce, req.Name, why)
			}
		}
		return o.a.removeMember(req.Name)
	})
	if !ran {
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	o.audit(r, "remove "+req.Name)
	writeJSON(w, http.StatusOK, struct{}{})
}

func (o *operatorAPI) handleFailover(w http.ResponseWriter, r *http.Request) {
	var req FailoverRequest
	if !readJSON(w, r, &req) {
		return
	}
	reason := req.Reason
	switch {
	case reason == "":
		reason = "manual:failover"
	case !strings.HasPrefix(reason, "manual:"):
		writeError(w, fmt.Errorf("%w: reason %q must start with manual:", ErrBadRequest, reason))
		return
	}
	var resp FailoverResponse
	ran, err := o.onLeader(w, r, req, func() (err error) { resp, err = o.a.failover(r.Context(), req, reason); return err })
	if !ran {
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	o.audit(r, fmt.Sprintf("failover %s -> %s, epoch %d, force=%v, reason %s", resp.From, resp.To, resp.Epoch, req.Force, reason))
	writeJSON(w, http.StatusOK, resp)
}

func (o *operatorAPI) handleMaintenance(w http.ResponseWriter, r *http.Request) {
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
	ran, err := o.onLeader(w, r, req, func() error {
		return o.a.applyHere(fsm.SetMaintenance{On: req.On, Time: o.a.cfg.Now().UTC(), Reason: req.Reason, By: callerOf(r).name})
	})
	if !ran {
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	o.audit(r, fmt.Sprintf("maintenance on=%v, reason %s", req.On, req.Reason))
	writeJSON(w, http.StatusOK, struct{}{})
}

func (o *operatorAPI) handleTransferLeader(w http.ResponseWriter, r *http.Request) {
	a := o.a
	var req TransferLeaderRequest
	if !readJSON(w, r, &req) {
		return
	}
	ran, err := o.onLeader(w, r, req, func() error {
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
		// A member record need not be a voter (a node that has joined but
		// is not yet one, or never started): Raft can hand leadership to
		// voters only, and says so with an internal error.
		cf := a.node.raft.GetConfiguration()
		if err := cf.Error(); err != nil {
			return fmt.Errorf("%w: read raft configuration: %w", ErrNoLeader, err)
		}
		voter := false
		for _, s := range cf.Configuration().Servers {
			voter = voter || (string(s.ID) == req.To && s.Suffrage == raft.Voter)
		}
		if !voter {
			return fmt.Errorf("%w: %s is a member but not a raft voter; leadership goes to voters only", ErrBadRequest, req.To)
		}
		if err := a.node.raft.LeadershipTransferToServer(raft.ServerID(req.To), raft.ServerAddress(m.RaftAddr)).Error(); err != nil {
			return fmt.Errorf("transfer leadership to %s: %w", req.To, err)
		}
		a.log.Info("leadership transferred on request", "to", req.To)
		return nil
	})
	if !ran {
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	o.audit(r, "raft transfer-leader to "+req.To)
	writeJSON(w, http.StatusOK, struct{}{})
}

func (o *operatorAPI) handleDrillInject(w http.ResponseWriter, r *http.Request) {
	a := o.a
	var req DrillRequest
	if !readJSON(w, r, &req) {
		return
	}
	if !req.Clear && (req.For <= 0 || time.Duration(req.For) > time.Hour) {
		writeError(w, fmt.Errorf("%w: for %v must be between 1s and 1h", ErrBadRequest, time.Duration(req.For)))
		return
	}
	if o.toNode(w, r, req.Node, req) {
		return
	}
	if a.cfg.Drill == nil {
		writeError(w, fmt.Errorf("%w: %s runs no health checks", ErrBadRequest, a.Name()))
		return
	}
	if req.Clear {
		if err := a.cfg.Drill(req.Check, false, time.Time{}); err != nil {
			writeError(w, fmt.Errorf("%w: %w", ErrBadRequest, err))
			return
		}
		a.log.Warn("drill: injection cleared", "check", req.Check, "by", callerOf(r).name)
		o.audit(r, fmt.Sprintf("drill inject on %s: check %s injection cleared", a.Name(), req.Check))
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	if err := a.cfg.Drill(req.Check, req.Passing, time.Now().Add(time.Duration(req.For))); err != nil {
		writeError(w, fmt.Errorf("%w: %w", ErrBadRequest, err))
		return
	}
	a.log.Warn("drill: check result forced", "check", req.Check, "passing", req.Passing, "for", time.Duration(req.For), "by", callerOf(r).name)
	verdict := "failing"
	if req.Passing {
		verdict = "passing"
	}
	o.audit(r, fmt.Sprintf("drill inject on %s: check %s forced %s for %v", a.Name(), req.Check, verdict, time.Duration(req.For)))
	writeJSON(w, http.StatusOK, struct{}{})
}

// requireOperator lets only an operator certificate through to h (the
// status page with web_operator_cert): a request without one gets 401,
// any other certificate 403.
func (a *Agent) requireOperator(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := a.identify(r, false)
		if !c.operator() {
			refuse(a, w, r, c, "is the status page, which this node shows to operator certificates only (web_operator_cert)")
			return
		}
		h.ServeHTTP(w, r)
	})
}
