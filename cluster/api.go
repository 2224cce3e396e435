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

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// maxBody bounds every API request body.
const maxBody = 64 << 10

// forwardedHeader marks a request one member forwarded to the leader, so
// the leader never forwards it again (no loops during an election).
const forwardedHeader = "X-Newbieha-Forwarded"

// handler returns the API of one server. The local unix socket (remote
// false) serves the operator API to root, whom its file mode admits alone;
// the mTLS port serves the operator API to operator certificates and the
// peer API to members (docs/security.md, "Who may call what").
func (a *Agent) handler(remote bool) http.Handler {
	mux := http.NewServeMux()
	(&operatorAPI{a: a, local: !remote}).routes(mux)
	if remote {
		(&peerAPI{a: a}).routes(mux)
	}
	return mux
}

func (a *Agent) self() SelfReport {
	st := a.node.raft.Stats()
	var term, applied, commit, last uint64
	fmt.Sscan(st["term"], &term)
	fmt.Sscan(st["applied_index"], &applied)
	fmt.Sscan(st["commit_index"], &commit)
	fmt.Sscan(st["last_log_index"], &last)
	contact := Duration(-1) // never
	switch lc := a.node.raft.LastContact(); {
	case a.node.raft.State() == raft.Leader:
		contact = 0
	case !lc.IsZero():
		contact = Duration(time.Since(lc))
	}
	healthy, why, _ := a.ownHealth()
	rep := SelfReport{Name: a.Name(), Role: a.cfg.Node.Role, Raft: a.RaftState(), Leader: a.Leader(), Term: term, AppliedIndex: applied,
		CommitIndex: commit, LastIndex: last, LastContact: contact, Version: a.cfg.Version,
		HoldsVIP: a.lease.holdsVIP(), Lease: a.lease.state(), Healthy: healthy, HealthReason: why, Blocked: a.ctl.blockedReason()}
	rep.VIPConflict, _ = a.ctl.conflictState()
	if a.cfg.Health != nil {
		rep.Health = a.cfg.Health.Detail()
	}
	return rep
}

// ownHealth is this node's verdict on its own service; pending is true
// while it has none yet.
func (a *Agent) ownHealth() (ok bool, why string, pending bool) {
	if a.cfg.Node.Role != fsm.RoleGPU {
		return false, "a witness does not serve", false
	}
	if a.cfg.Health == nil {
		return true, "", false
	}
	ok, why = a.cfg.Health.Healthy()
	return ok, why, !ok && a.cfg.Health.Pending()
}

// DefaultTokenTTL is how long a join token is valid unless told otherwise.
const DefaultTokenTTL = 24 * time.Hour

// MaxTokenTTL is the longest validity a join token may have; the state
// machine refuses a longer one whoever proposes it.
const MaxTokenTTL = fsm.MaxTokenLifetime

// CreateToken creates and commits a join token valid for ttl that admits
// role: a gpu token admits a GPU node (handed the CA key) or a witness, a
// witness token only a witness.
func (a *Agent) CreateToken(ctx context.Context, ttl time.Duration, role fsm.Role) (string, time.Time, error) {
	if ttl <= 0 || ttl > MaxTokenTTL {
		return "", time.Time{}, fmt.Errorf("%w: ttl %v must be between 1s and %v", ErrBadRequest, ttl, MaxTokenTTL)
	}
	if !role.Valid() {
		return "", time.Time{}, fmt.Errorf("%w: role %q is not gpu or witness", ErrBadRequest, role)
	}
	tok, err := pki.NewToken(pki.Hash(a.bundle.CA.Cert))
	if err != nil {
		return "", time.Time{}, err
	}
	now := a.cfg.Now().UTC()
	exp := now.Add(ttl)
	cmd := fsm.CreateToken{Token: fsm.Token{ID: tok.ID, SecretHash: tok.SecretHash(), CreatedAt: now, Expires: exp, Role: role}}
	if err := a.apply(ctx, cmd); err != nil {
		return "", time.Time{}, fmt.Errorf("commit token: %w", err)
	}
	return tok.String(), exp, nil
}

// maxProposalSkew is how far from this node's clock the time stamped in a
// forwarded CreateToken may be.
const maxProposalSkew = 5 * time.Minute

// checkProposal checks what the state machine cannot, because it reads no
// clock, on a command that reaches /v1/internal/apply: a token's creation
// time must be about now, so that its lifetime (bounded in Apply by
// fsm.MaxTokenLifetime) cannot be moved into the future.
func (a *Agent) checkProposal(cmd fsm.Command) error {
	if c, ok := cmd.(fsm.CreateToken); ok {
		now := a.cfg.Now()
		if d := c.Token.CreatedAt.Sub(now); d > maxProposalSkew || d < -maxProposalSkew {
			return fmt.Errorf("token %s: created_at %s is more than %v from this node's clock", c.Token.ID, c.Token.CreatedAt.UTC().Format(time.RFC3339), maxProposalSkew)
		}
	}
	return nil
}

// toLeader sends a request to the current leader's API. While there is no
// leader, or the one this node believes in does not answer (it has just
// died and an election is under way), it tries again for up to
// ApplyTimeout, as Consul holds RPCs during elections.
func (a *Agent) toLeader(ctx context.Context, path string, body, out any) error {
	hold := time.NewTimer(a.cfg.ApplyTimeout)
	defer hold.Stop()
	for {
		err := a.toLeaderOnce(ctx, path, body, out)
		var op *net.OpError
		if err == nil || !(errors.Is(err, ErrNoLeader) || (errors.As(err, &op) && op.Op == "dial")) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-hold.C:
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *Agent) toLeaderOnce(ctx context.Context, path string, body, out any) error {
	leader := a.Leader()
	if leader == "" {
		return ErrNoLeader
	}
	if leader == a.Name() {
		// This node has just become leader; the caller's local attempt
		// came too early. Let it be retried as a forwarded call to itself.
		return a.peerCall(ctx, a.cfg.Node.APIAddr(), http.MethodPost, path, body, out, true)
	}
	m, ok := a.node.fsm.Member(leader)
	if !ok {
		return fmt.Errorf("%w: leader %q has no member record yet", ErrNoLeader, leader)
	}
	return a.peerCall(ctx, m.APIAddr, http.MethodPost, path, body, out, true)
}

// peerCall calls another member's API over mutual TLS.
// Extra header names are set to "1".
func (a *Agent) peerCall(ctx context.Context, apiAddr, method, path string, body, out any, forwarded bool, headers ...string) error {
	return a.peerCallWith(ctx, a.peers, apiAddr, method, path, body, out, forwarded, headers...)
}

// slowPeers is a client of the members' APIs for calls that commit through
// Raft on the other side (a renewal), bounded by ApplyTimeout, not
// PeerTimeout.
func (a *Agent) slowPeers() *http.Client {
	return &http.Client{Transport: a.peers.Transport, Timeout: a.cfg.ApplyTimeout + a.cfg.PeerTimeout}
}

// peerCallWith is peerCall with another client.
func (a *Agent) peerCallWith(ctx context.Context, client *http.Client, apiAddr, method, path string, body, out any, forwarded bool, headers ...string) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+apiAddr+path, rd)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if forwarded {
		req.Header.Set(forwardedHeader, a.Name())
	}
	for _, h := range headers {
		req.Header.Set(h, "1")
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("call %s%s: %w", apiAddr, path, err)
	}
	defer resp.Body.Close()
	return decodeResponse(resp, out)
}

// decodeResponse turns an API response into out or into an error that
// matches the sentinel the server reported.
func decodeResponse(resp *http.Response, out any) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var eb ErrorBody
		if json.Unmarshal(body, &eb) != nil || eb.Error == "" {
			return fmt.Errorf("api %s: %s", resp.Status, bytes.TrimSpace(body))
		}
		if s := sentinelByCode[eb.Code]; s != nil {
			return &remoteError{msg: eb.Error, sentinel: s}
		}
		return errors.New(eb.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// remoteError is an error reported by another member; it matches its
// sentinel with errors.Is.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

var errorCodes = []struct {
	err    error
	code   string
	status int
}{
	{ErrTokenExpired, "token_expired", http.StatusForbidden},
	{ErrTokenInvalid, "token_invalid", http.StatusForbidden},
	{ErrUnauthorized, "unauthorized", http.StatusUnauthorized},
	{ErrForbidden, "forbidden", http.StatusForbidden},
	{ErrUnknownMember, "unknown_member", http.StatusNotFound},
	{ErrBadRequest, "bad_request", http.StatusBadRequest},
	{ErrNoLeader, "no_leader", http.StatusServiceUnavailable},
	{ErrNotLeader, "not_leader", http.StatusServiceUnavailable},
	{ErrMaintenance, "maintenance", http.StatusConflict},
	{ErrAlreadyActive, "already_active", http.StatusConflict},
	{ErrNotGPU, "not_gpu", http.StatusBadRequest},
	{ErrUnhealthy, "unhealthy", http.StatusConflict},
	{ErrUnreachable, "unreachable", http.StatusServiceUnavailable},
	{pki.ErrNoCAKey, "no_ca_key", http.StatusServiceUnavailable},
	{ErrMemberExists, "member_exists", http.StatusConflict},
	{ErrUnknownToken, "unknown_token", http.StatusNotFound},
	{ErrNeedsForce, "needs_force", http.StatusConflict},
}

var sentinelByCode = func() map[string]error {
	m := map[string]error{}
	for _, e := range errorCodes {
		m[e.code] = e.err
	}
	return m
}()

func writeError(w http.ResponseWriter, err error) {
	status, code := http.StatusInternalServerError, ""
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			status, code = e.status, e.code
			break
		}
	}
	writeJSON(w, status, ErrorBody{Error: err.Error(), Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readJSON decodes a bounded, strict JSON body; on failure it answers 400
// naming the problem and returns false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := decodeBody(http.MaxBytesReader(w, r.Body, maxBody), v); err != nil {
		writeError(w, fmt.Errorf("%w: body: %v", ErrBadRequest, err))
		return false
	}
	return true
}

// decodeBody decodes exactly one JSON object from rd into v: an empty body,
// a body that is not an object (null, an array, a number), an unknown field
// and anything but white space after the object are errors. An empty body
// is not "all defaults": `POST /v1/maintenance` with no body must not
// switch maintenance off.
func decodeBody(rd io.Reader, v any) error {
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	tok, err := dec.Token()
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("empty, want a JSON object")
	case err != nil:
		return err
	case tok != json.Delim('{'):
		return fmt.Errorf("starts with %v, want a JSON object", tok)
	}
	// Decode the object again from its start: Token consumed the brace.
	dec = json.NewDecoder(io.MultiReader(strings.NewReader("{"), dec.Buffered(), rd))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err == nil {
			return errors.New("trailing data after the JSON object")
		}
		return fmt.Errorf("trailing data after the JSON object: %w", err)
	}
	return nil
}

func errBadDuration(s string) error {
	return fmt.Errorf("%w: %s is not a duration such as \"24h\"", ErrBadRequest, s)
}
