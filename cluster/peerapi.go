package cluster

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"reflect"

	"github.com/newbieha/newbieha/cluster/lease"
	"github.com/newbieha/newbieha/fsm"
)

// peerAPI is what agents call on each other with their node certificates,
// each call scoped to the caller's own name: report itself, become a voter
// as itself, take part in the holder lease as itself, hand its own active
// role over before it stops, and forward a fixed list of commands to the
// leader. Join is the one call without a certificate; its token proves it.
// An operator certificate is no peer (403), except that it may read a
// member's own report. docs/security.md has the table.
type peerAPI struct {
	a *Agent
}

func (p *peerAPI) routes(mux router) {
	// security (limits.go): joins are rate-limited per source address.
	mux.HandleFunc("POST /v1/join", limitJoins(http.HandlerFunc(p.handleJoin)).ServeHTTP)
	mux.HandleFunc("GET /v1/self", p.guard(true, p.handleSelf))
	mux.HandleFunc("POST /v1/internal/apply", p.guard(false, p.handleApply))
	mux.HandleFunc("POST /v1/internal/voter", p.guard(false, p.handleVoter))
	mux.HandleFunc("POST /v1/internal/lease", p.guard(false, p.handleLease))
	mux.HandleFunc("GET /v1/internal/lease", p.guard(false, p.handleLeaseReport))
	mux.HandleFunc("POST /v1/internal/handover", p.guard(false, p.handleHandover))
	mux.HandleFunc("POST /v1/internal/renew", p.guard(false, p.handleRenew))
}

// guard lets only current members through (and operators too when
// operators is true), handing the caller to the handler.
func (p *peerAPI) guard(operators bool, h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := p.a.identify(r, false)
		if c.kind != callerPeer && !(operators && c.operator()) {
			refuse(p.a, w, r, c, "is for the cluster's members only")
			return
		}
		h(w, r, c)
	}
}

func (p *peerAPI) handleSelf(w http.ResponseWriter, _ *http.Request, _ caller) {
	writeJSON(w, http.StatusOK, p.a.self())
}

// handleApply takes a command a member forwards to the leader. Only what
// members propose for themselves passes (peerCommandAllowed); everything an
// operator changes is carried out on the leader by operatorAPI.
func (p *peerAPI) handleApply(w http.ResponseWriter, r *http.Request, c caller) {
	a := p.a
	var req applyBody
	if !readJSON(w, r, &req) {
		return
	}
	data, err := base64.StdEncoding.DecodeString(req.Command)
	if err != nil {
		writeError(w, fmt.Errorf("%w: command is not base64", ErrBadRequest))
		return
	}
	cmd, err := fsm.Decode(data)
	if err != nil {
		writeError(w, fmt.Errorf("%w: %w", ErrBadRequest, err))
		return
	}
	if err := p.peerCommandAllowed(c, cmd); err != nil {
		refuse(a, w, r, c, err.Error())
		return
	}
	if err := a.checkProposal(cmd); err != nil {
		writeError(w, fmt.Errorf("%w: %w", ErrBadRequest, err))
		return
	}
	if p.onLeader(w, r, func() error { return a.applyLocal(data) }) {
		writeJSON(w, http.StatusOK, struct{}{})
	}
}

// onLeader runs local when this member leads, else redirects the caller
// to the leader, which judges the caller itself: a member never forwards
// another's peer call under its own certificate. It reports whether the
// handler should answer success; on failure it has written the answer.
func (p *peerAPI) onLeader(w http.ResponseWriter, r *http.Request, local func() error) bool {
	ran, err := p.a.onLeaderOr(r, local, func(apiAddr string) error { redirect(w, r, apiAddr); return nil })
	if ran && err != nil {
		writeError(w, err)
	}
	return ran && err == nil
}

// peerCommandAllowed is the fixed list of commands a member may forward:
//   - RecordEvent about itself (drills, VIP conflicts, audit of an operator
//     action it carried out);
//   - UpsertMember from a GPU member (the signers) for a node it has just
//     admitted (a name and addresses no current member uses), or for a
//     renewal that changes a record's certificates only.
func (p *peerAPI) peerCommandAllowed(c caller, cmd fsm.Command) error {
	switch cmd := cmd.(type) {
	case fsm.RecordEvent:
		if cmd.Event.Node != c.name {
			return fmt.Errorf("with a RecordEvent about %q: a member records events about itself only", cmd.Event.Node)
		}
		return nil
	case fsm.UpsertMember:
		if c.role != fsm.RoleGPU {
			return fmt.Errorf("with an UpsertMember: only a GPU member admits nodes and renews certificates")
		}
		if cur, ok := p.a.node.fsm.Member(cmd.Member.Name); ok && isRenewal(cur, cmd.Member) {
			// A renewal (renew.go) changes the certificates only; the
			// same record again is the retry of a join whose first
			// commit timed out (the state machine spends no second use
			// of its token: it refuses it as used up, or applies a
			// no-op).
			if cmd.TokenID == "" || reflect.DeepEqual(cur.Certs, cmd.Member.Certs) {
				return nil
			}
		}
		if err := checkMemberIsNew(p.a.node.fsm.State(), cmd.Member); err != nil {
			return fmt.Errorf("with an UpsertMember: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("with a command of type %s: members forward only RecordEvent and UpsertMember", cmd.Type())
	}
}

// checkMemberIsNew refuses a member record that would take over a current
// member's name or one of its addresses.
func checkMemberIsNew(st fsm.State, m fsm.Member) error {
	for _, o := range st.Members {
		switch {
		case o.Name == m.Name:
			return fmt.Errorf("%q is a current member", m.Name)
		case o.RaftAddr == m.RaftAddr || o.APIAddr == m.APIAddr || (m.GossipAddr != "" && o.GossipAddr == m.GossipAddr):
			return fmt.Errorf("an address of %q is %s's", m.Name, o.Name)
		}
	}
	return nil
}

func (p *peerAPI) handleVoter(w http.ResponseWriter, r *http.Request, c caller) {
	a := p.a
	var req VoterRequest
	if !readJSON(w, r, &req) {
		return
	}
	if c.name != req.Name {
		refuse(a, w, r, c, fmt.Sprintf("for %q: a member asks to become a voter for itself only", req.Name))
		return
	}
	if p.onLeader(w, r, func() error { return a.addVoter(req) }) {
		writeJSON(w, http.StatusOK, struct{}{})
	}
}

// handleLease is a voter's answer to a lease request or release; the
// runner checks that the request names the caller.
func (p *peerAPI) handleLease(w http.ResponseWriter, r *http.Request, c caller) {
	var req lease.Request
	if !readJSON(w, r, &req) {
		return
	}
	ans, err := p.a.lease.handle(c.name, req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// handleLeaseReport is this voter's report for the leader's controller.
func (p *peerAPI) handleLeaseReport(w http.ResponseWriter, _ *http.Request, _ caller) {
	writeJSON(w, http.StatusOK, p.a.lease.report())
}

// HandoverRequest is an active node asking, before it stops, that the
// active role move to To (a planned failover with reason stop:NAME).
type HandoverRequest struct {
	To string `json:"to"`
}

// handleHandover moves the active role away from the caller, and only when
// the caller holds it.
func (p *peerAPI) handleHandover(w http.ResponseWriter, r *http.Request, c caller) {
	a := p.a
	var req HandoverRequest
	if !readJSON(w, r, &req) {
		return
	}
	if act, _ := a.node.fsm.ActiveView(); act.Node != c.name {
		refuse(a, w, r, c, fmt.Sprintf("from %s: only the active node (%q) hands over its own role", c.name, act.Node))
		return
	}
	var resp FailoverResponse
	if p.onLeader(w, r, func() (err error) {
		resp, err = a.failover(r.Context(), FailoverRequest{To: req.To}, "stop:"+c.name)
		return err
	}) {
		writeJSON(w, http.StatusOK, resp)
	}
}
