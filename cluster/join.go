package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// handleJoin admits a node whose join token is good (docs/security.md,
// "Join tokens"); the only call without a certificate.
func (p *peerAPI) handleJoin(w http.ResponseWriter, r *http.Request) {
	a := p.a
	var req JoinRequest
	if !readJSON(w, r, &req) {
		return
	}
	hop := joinHop{forwarded: r.Header.Get(forwardedHeader) != ""}
	// Only a member may ask this node to wait for its state to catch up:
	// a hint to wait for replication, never a verdict on the token.
	if callerName(r) != "" {
		if v := r.Header.Get(joinIndexHeader); v != "" {
			idx, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				writeError(w, fmt.Errorf("%w: %s %q is not an index", ErrBadRequest, joinIndexHeader, v))
				return
			}
			hop.signOnly, hop.minIndex = true, idx
		}
	}
	resp, err := a.admit(r.Context(), req, hop)
	if err != nil {
		a.log.Warn("refused join", "name", req.Name, "role", req.Role, "remote", r.RemoteAddr, "error", err)
		writeError(w, publicJoinError(err))
		return
	}
	a.log.Info("admitted node", "name", req.Name, "role", req.Role, "advertise", req.Advertise, "ca_key", resp.CAKey != "")
	writeJSON(w, http.StatusOK, resp)
}

// validateJoin checks a join request's fields, naming the bad one.
func validateJoin(req JoinRequest) (netip.Addr, error) {
	if err := ValidateName(req.Name); err != nil {
		return netip.Addr{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if !req.Role.Valid() {
		return netip.Addr{}, fmt.Errorf("%w: role %q is not gpu or witness", ErrBadRequest, req.Role)
	}
	ip, err := netip.ParseAddr(req.Advertise)
	if err != nil || ip.IsUnspecified() || ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%w: advertise %q is not a usable IP address", ErrBadRequest, req.Advertise)
	}
	for name, p := range map[string]int{"ports.api": req.Ports.API, "ports.raft": req.Ports.Raft, "ports.gossip": req.Ports.Gossip} {
		if p < 1 || p > 65535 {
			return netip.Addr{}, fmt.Errorf("%w: %s %d is not a port", ErrBadRequest, name, p)
		}
	}
	return ip, nil
}

// joinIndexHeader is set by a member that found a join's token in its
// state at that applied index and passes the join to a member that can
// sign (it holds no CA key). The receiver waits until it has applied as
// much, checks the token itself, and signs or refuses: it never passes
// the join on again. It is honoured only on a member's certificate.
const joinIndexHeader = "X-Newbieha-Join-Index"

// joinHop says how a join reached this node.
type joinHop struct {
	// forwarded: a member already passed it on; do not pass it to the
	// leader again.
	forwarded bool
	// signOnly: a member that cannot sign passed it here (joinIndexHeader);
	// sign or refuse.
	signOnly bool
	// minIndex is the applied index to wait for before the token lookup.
	minIndex uint64
}

// errBadToken is the one answer to a join whose token is malformed, for
// another cluster, unknown or carries a wrong secret: the caller learns
// nothing about which ids exist. The reason goes to this node's log.
var errBadToken = fmt.Errorf("%w: the token is malformed, unknown or wrong; create a new one with `newbieha token create`", ErrTokenInvalid)

// tokenRefusal is why a token was refused, for the log; the caller is
// answered errBadToken.
type tokenRefusal struct{ reason string }

func (e *tokenRefusal) Error() string { return "join token refused: " + e.reason }
func (e *tokenRefusal) Unwrap() error { return ErrTokenInvalid }

// publicJoinError is what the joining node is told: the same message for
// every bad token.
func publicJoinError(err error) error {
	var tr *tokenRefusal
	if errors.As(err, &tr) {
		return errBadToken
	}
	return err
}

// dummySecretHash is compared against when a token id is unknown, so that
// an unknown id costs the same as a wrong secret.
var dummySecretHash = pki.HashSecret("00000000000000000000000000000000")

// lookupToken checks a join token against the replicated state as this
// node has applied it. It reads only the local state: nothing here writes
// to Raft, whatever the token.
func (a *Agent) lookupToken(raw string) (fsm.Token, error) {
	tok, err := pki.ParseToken(raw)
	if err != nil {
		return fsm.Token{}, &tokenRefusal{reason: err.Error()}
	}
	if tok.CAHash != pki.Hash(a.bundle.CA.Cert) {
		return fsm.Token{}, &tokenRefusal{reason: "ca hash is another cluster's (token id " + tok.ID + ")"}
	}
	st := a.node.fsm.State()
	stored, known := st.Tokens[tok.ID]
	hash := stored.SecretHash
	if !known {
		hash = dummySecretHash
	}
	match := pki.SecretMatches(tok.Secret, hash)
	switch {
	case !known:
		return fsm.Token{}, &tokenRefusal{reason: "unknown token id " + tok.ID}
	case !match:
		return fsm.Token{}, &tokenRefusal{reason: "wrong secret for token id " + tok.ID}
	}
	// A revoked or used-up token is one more bad token: the caller is
	// told only that it is invalid, the reason goes to the log.
	switch {
	case stored.Revoked():
		return fsm.Token{}, &tokenRefusal{reason: "token id " + tok.ID + " was revoked at " + stored.RevokedAt.UTC().Format(time.RFC3339) + " by " + stored.RevokedBy}
	case stored.UsedUp():
		return fsm.Token{}, &tokenRefusal{reason: fmt.Sprintf("token id %s has spent all its %d uses", tok.ID, stored.UsesAllowed)}
	}
	// Only a holder of the secret learns that the token has expired.
	if now := a.cfg.Now(); !now.Before(stored.Expires) {
		return fsm.Token{}, fmt.Errorf("%w: token %s expired at %s; create a new one with `newbieha token create`", ErrTokenExpired, tok.ID, stored.Expires.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return stored, nil
}

// waitApplied waits until this node has applied index idx, for at most
// ApplyTimeout. It only reads Raft's counters.
func (a *Agent) waitApplied(ctx context.Context, idx uint64) error {
	if a.node.raft.AppliedIndex() >= idx {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ApplyTimeout)
	defer cancel()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for a.node.raft.AppliedIndex() < idx {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: state not caught up to index %d (at %d)", ErrNoLeader, idx, a.node.raft.AppliedIndex())
		case <-t.C:
		}
	}
	return nil
}

// checkJoinToken decides on a join's token without touching Raft. A
// follower that cannot accept it (unknown, or wrong, which it must not
// tell apart) passes the join to the leader, which holds every committed
// entry in its log: it waits until it has applied its whole log (no
// barrier is written) and judges. fwd is the leader's answer when the
// join was passed on.
func (a *Agent) checkJoinToken(ctx context.Context, req JoinRequest, hop joinHop) (tok fsm.Token, fwd *JoinResponse, err error) {
	if hop.minIndex > 0 {
		if err := a.waitApplied(ctx, hop.minIndex); err != nil {
			return fsm.Token{}, nil, err
		}
	}
	tok, err = a.lookupToken(req.Token)
	var tr *tokenRefusal
	if err == nil || !errors.As(err, &tr) {
		return tok, nil, err
	}
	if a.IsLeader() {
		if werr := a.waitApplied(ctx, a.node.raft.LastIndex()); werr != nil {
			return fsm.Token{}, nil, werr
		}
		tok, err = a.lookupToken(req.Token)
		return tok, nil, err
	}
	if hop.forwarded || hop.signOnly {
		return fsm.Token{}, nil, err
	}
	var resp JoinResponse
	if ferr := a.toLeader(ctx, "/v1/join", req, &resp); ferr != nil {
		return fsm.Token{}, nil, ferr
	}
	return fsm.Token{}, &resp, nil
}

// admitsRole reports whether a token admits role. A gpu token admits a GPU
// node or a witness, a witness token only a witness, and a token from
// before roles (COMPAT(v1)) either.
func admitsRole(tok fsm.Token, role fsm.Role) bool {
	return tok.Role == "" || tok.Role == fsm.RoleGPU || tok.Role == role
}

// checkNoClash refuses a join under the name of a current member, or at an
// IP address a current member advertises: its certificate would let the
// newcomer answer as that member. The member has to be removed first.
func checkNoClash(st fsm.State, name string, ip netip.Addr) error {
	if _, ok := st.Members[name]; ok {
		return fmt.Errorf("%w: %q is a current member; remove it first (`newbieha remove %s`) to join again under that name", ErrMemberExists, name, name)
	}
	for _, m := range st.Members {
		for _, addr := range []string{m.RaftAddr, m.APIAddr, m.GossipAddr} {
			if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Unmap() == ip.Unmap() {
				return fmt.Errorf("%w: %s is the address of member %q; remove it first to join at that address", ErrMemberExists, ip, m.Name)
			}
		}
	}
	return nil
}

// admit checks a join request and, if it is good, signs the node's
// certificate and records it as a member. Every check that needs no Raft
// write (fields, public key, token, name and address) comes first; the
// only write is the member record of an admitted node.
//
// The node that signs checks the token itself, against its own applied
// state: a member without the CA key (a witness) checks it too, and then
// passes the join to a GPU member with the index it found the token at
// (joinIndexHeader), which waits for that index and checks again. No
// header makes a token good.
func (a *Agent) admit(ctx context.Context, req JoinRequest, hop joinHop) (JoinResponse, error) {
	ip, err := validateJoin(req)
	if err != nil {
		return JoinResponse{}, err
	}
	pub, err := pki.ParsePublicKey([]byte(req.PublicKey))
	if err != nil {
		return JoinResponse{}, fmt.Errorf("%w: public_key: %w", ErrBadRequest, err)
	}
	tok, fwd, err := a.checkJoinToken(ctx, req, hop)
	if err != nil {
		return JoinResponse{}, err
	}
	if fwd != nil {
		return *fwd, nil
	}
	if !admitsRole(tok, req.Role) {
		return JoinResponse{}, fmt.Errorf("%w: token %s admits role %s only, not %s", ErrTokenInvalid, tok.ID, tok.Role, req.Role)
	}
	applied := a.node.raft.AppliedIndex()
	st := a.node.fsm.State()
	if err := checkNoClash(st, req.Name, ip); err != nil {
		return JoinResponse{}, err
	}
	if a.bundle.CA.Key == nil {
		if hop.signOnly {
			return JoinResponse{}, pki.ErrNoCAKey
		}
		return a.admitElsewhere(ctx, req, st, applied)
	}
	cert, err := a.bundle.CA.Issue(pki.NodeIdentity{Name: req.Name, Role: string(req.Role), IP: ip}, pub)
	if err != nil {
		return JoinResponse{}, err
	}
	member := fsm.Member{
		Name:       req.Name,
		Role:       req.Role,
		RaftAddr:   hostPort(req.Advertise, req.Ports.Raft),
		APIAddr:    hostPort(req.Advertise, req.Ports.API),
		GossipAddr: hostPort(req.Advertise, req.Ports.Gossip),
		JoinedAt:   a.cfg.Now().UTC(),
		// Only this certificate speaks for the new member (identity.go).
		Certs: []fsm.MemberCert{{Serial: pki.Serial(cert), Expires: cert.NotAfter.UTC()}},
	}
	// The member record spends one use of the token in the same entry:
	// the state machine refuses it if the token was revoked or used up
	// meanwhile (two joins racing for its last use), so a token admits no
	// more nodes than it allows whichever members admit them.
	if err := a.apply(ctx, fsm.UpsertMember{Member: member, TokenID: tok.ID}); err != nil {
		if tokenSpent(err) {
			return JoinResponse{}, &tokenRefusal{reason: fmt.Sprintf("token id %s refused as the member record was applied: %v", tok.ID, err)}
		}
		return JoinResponse{}, fmt.Errorf("record member %s: %w", req.Name, err)
	}
	resp := JoinResponse{
		CACert:    string(pki.EncodeCert(a.bundle.CA.Cert)),
		NodeCert:  string(pki.EncodeCert(cert)),
		GossipKey: encodeKey(a.gossipKey),
		Members:   append(memberAPIAddrs(st, req.Name), a.cfg.Node.APIAddr()),
	}
	// A GPU node joining with a gpu token gets the CA key too, so any GPU
	// member can admit nodes while another is down. A witness never holds
	// it, nor does a node admitted by a witness token or one from before
	// token roles.
	if req.Role == fsm.RoleGPU && tok.Role == fsm.RoleGPU {
		kb, err := pki.EncodeKey(a.bundle.CA.Key)
		if err != nil {
			return JoinResponse{}, err
		}
		resp.CAKey = string(kb)
	}
	return resp, nil
}

// tokenSpent reports whether err is the state machine refusing a member
// record because its token is unknown, expired, revoked or used up. A
// refusal applied on this node wraps the fsm sentinel; one applied on the
// leader comes back over /v1/internal/apply as its message only, so the
// sentinel's text is looked for too.
func tokenSpent(err error) bool {
	if errors.Is(err, fsm.ErrTokenUnusable) || errors.Is(err, fsm.ErrUnknownToken) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, fsm.ErrTokenUnusable.Error()) || strings.Contains(msg, fsm.ErrUnknownToken.Error())
}

// admitElsewhere passes a join whose token this node accepted to the GPU
// members in turn, with the index it found the token at.
func (a *Agent) admitElsewhere(ctx context.Context, req JoinRequest, st fsm.State, applied uint64) (JoinResponse, error) {
	var errs []error
	for _, m := range st.Members {
		if m.Role != fsm.RoleGPU || m.Name == a.Name() {
			continue
		}
		var resp JoinResponse
		err := a.joinCall(ctx, m.APIAddr, req, applied, &resp)
		if err == nil {
			return resp, nil
		}
		if errors.Is(err, ErrTokenInvalid) || errors.Is(err, ErrTokenExpired) || errors.Is(err, ErrBadRequest) || errors.Is(err, ErrMemberExists) {
			return JoinResponse{}, err
		}
		errs = append(errs, err)
	}
	return JoinResponse{}, fmt.Errorf("%w; no GPU member could admit the node: %w", pki.ErrNoCAKey, errors.Join(errs...))
}

// joinCall passes a join to the member at apiAddr (see joinIndexHeader).
func (a *Agent) joinCall(ctx context.Context, apiAddr string, req JoinRequest, applied uint64, out *JoinResponse) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+apiAddr+"/v1/join", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(forwardedHeader, a.Name())
	hr.Header.Set(joinIndexHeader, strconv.FormatUint(applied, 10))
	resp, err := a.peers.Do(hr)
	if err != nil {
		return fmt.Errorf("call %s/v1/join: %w", apiAddr, err)
	}
	defer resp.Body.Close()
	return decodeResponse(resp, out)
}

// JoinOptions are the inputs of `newbieha join`.
type JoinOptions struct {
	DataDir   string
	Addr      string // any member's API address, ip[:port]
	Token     string
	Name      string
	Role      fsm.Role
	Advertise string
	Bind      string
	Ports     Ports
	Raft      RaftTimings // zero means defaults
}

// Join asks a member to admit this node, checking first that the member
// belongs to the cluster the token pins. On success it writes the TLS
// material, the gossip key and the node config into the data dir; the
// node becomes a voter when its agent first starts.
func Join(ctx context.Context, opts JoinOptions) (NodeConfig, error) {
	cfg := DefaultNodeConfig()
	cfg.Name, cfg.Role, cfg.Advertise, cfg.Bind = opts.Name, opts.Role, opts.Advertise, opts.Bind
	if opts.Ports != (Ports{}) {
		cfg.Ports = opts.Ports
	}
	if opts.Raft != (RaftTimings{}) {
		cfg.Raft = opts.Raft
	}
	if err := cfg.Validate(); err != nil {
		return NodeConfig{}, err
	}
	tok, err := pki.ParseToken(opts.Token)
	if err != nil {
		return NodeConfig{}, fmt.Errorf("--token: %w", err)
	}
	addr, err := apiAddrWithDefaultPort(opts.Addr)
	if err != nil {
		return NodeConfig{}, err
	}
	if err := prepareDataDir(opts.DataDir); err != nil {
		return NodeConfig{}, err
	}
	key, err := pki.NewKey()
	if err != nil {
		return NodeConfig{}, err
	}
	pubPEM, err := pki.EncodePublicKey(&key.PublicKey)
	if err != nil {
		return NodeConfig{}, err
	}
	req := JoinRequest{Token: opts.Token, Name: cfg.Name, Role: cfg.Role, Advertise: cfg.Advertise, Ports: cfg.Ports, PublicKey: string(pubPEM)}
	body, err := json.Marshal(req)
	if err != nil {
		return NodeConfig{}, err
	}
	var pinned *x509.Certificate
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.PinnedClientConfig(tok.CAHash, func(c *x509.Certificate) { pinned = c })}}
	defer client.CloseIdleConnections()
	var resp JoinResponse
	// A member that is still starting (connection refused) or knows no
	// leader yet (an election, a restart) is tried again until ctx ends.
	for {
		err := postJoin(ctx, client, addr, body, &resp)
		if err == nil {
			break
		}
		var op *net.OpError
		retry := errors.Is(err, ErrNoLeader) || (errors.As(err, &op) && op.Op == "dial")
		if !retry {
			return NodeConfig{}, fmt.Errorf("join via %s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return NodeConfig{}, fmt.Errorf("join via %s: %w", addr, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	caCert, err := pki.ParseCert([]byte(resp.CACert))
	if err != nil {
		return NodeConfig{}, fmt.Errorf("join response: ca_cert: %w", err)
	}
	if pinned == nil || !caCert.Equal(pinned) {
		return NodeConfig{}, fmt.Errorf("join response: %w", pki.ErrCAMismatch)
	}
	nodeCert, err := pki.ParseCert([]byte(resp.NodeCert))
	if err != nil {
		return NodeConfig{}, fmt.Errorf("join response: node_cert: %w", err)
	}
	ca := &pki.CA{Cert: caCert}
	if resp.CAKey != "" {
		if ca.Key, err = pki.ParseKey([]byte(resp.CAKey)); err != nil {
			return NodeConfig{}, fmt.Errorf("join response: ca_key: %w", err)
		}
	}
	gk, err := decodeKey(resp.GossipKey)
	if err != nil {
		return NodeConfig{}, fmt.Errorf("join response: gossip_key: %w", err)
	}
	bundle := &pki.Bundle{CA: ca, NodeCert: nodeCert, NodeKey: key}
	if pk, ok := nodeCert.PublicKey.(*ecdsa.PublicKey); !ok || !pk.Equal(&key.PublicKey) {
		return NodeConfig{}, errors.New("join response: node_cert is not for our key")
	}
	if err := pki.WriteBundle(filepath.Join(opts.DataDir, tlsDirName), bundle); err != nil {
		return NodeConfig{}, err
	}
	if err := writeGossipKey(opts.DataDir, gk); err != nil {
		return NodeConfig{}, err
	}
	cfg.Join = dedupe(append([]string{addr}, resp.Members...))
	if err := WriteNodeConfig(filepath.Join(opts.DataDir, ConfigFileName), cfg); err != nil {
		return NodeConfig{}, err
	}
	return cfg, nil
}

func postJoin(ctx context.Context, client *http.Client, addr string, body []byte, out *JoinResponse) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/v1/join", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeResponse(resp, out)
}
