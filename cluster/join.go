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
	"time"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

func (a *Agent) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if !readJSON(w, r, &req) {
		return
	}
	// Only a member (verified certificate) may vouch for a token.
	vouched := callerName(r) != "" && r.Header.Get(tokenVerifiedHeader) != ""
	resp, err := a.admit(r.Context(), req, r.Header.Get(forwardedHeader) != "", vouched)
	if err != nil {
		a.log.Warn("refused join", "name", req.Name, "remote", r.RemoteAddr, "error", err)
		writeError(w, err)
		return
	}
	a.log.Info("admitted node", "name", req.Name, "role", req.Role, "advertise", req.Advertise)
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
	if err != nil || ip.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("%w: advertise %q is not a usable IP address", ErrBadRequest, req.Advertise)
	}
	for name, p := range map[string]int{"ports.api": req.Ports.API, "ports.raft": req.Ports.Raft, "ports.gossip": req.Ports.Gossip} {
		if p < 1 || p > 65535 {
			return netip.Addr{}, fmt.Errorf("%w: %s %d is not a port", ErrBadRequest, name, p)
		}
	}
	return ip, nil
}

// errTokenUnknown is wrapped in ErrTokenInvalid when the token id is not in
// the local state.
var errTokenUnknown = errors.New("unknown token")

// tokenVerifiedHeader marks a join that a member has already checked.
const tokenVerifiedHeader = "X-Newbieha-Token-Verified"

// syncState makes sure the local state is current enough to judge a
// token: the leader applies everything committed first (a barrier); a
// node that knows no leader (just restarted, or cut off) refuses with
// ErrNoLeader, which the joining node retries.
func (a *Agent) syncState() error {
	if a.IsLeader() {
		if err := a.node.raft.Barrier(a.cfg.ApplyTimeout).Error(); err != nil {
			return fmt.Errorf("%w: barrier: %w", ErrNoLeader, err)
		}
		return nil
	}
	if a.Leader() == "" {
		return ErrNoLeader
	}
	return nil
}

// checkToken verifies a join token against the replicated state.
func (a *Agent) checkToken(s string) error {
	tok, err := pki.ParseToken(s)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	if tok.CAHash != pki.Hash(a.bundle.CA.Cert) {
		return fmt.Errorf("%w: token is for another cluster (ca hash differs)", ErrTokenInvalid)
	}
	st := a.node.fsm.State()
	stored, ok := st.Tokens[tok.ID]
	if !ok {
		return fmt.Errorf("%w: %w (token id %s)", ErrTokenInvalid, errTokenUnknown, tok.ID)
	}
	if !pki.SecretMatches(tok.Secret, stored.SecretHash) {
		return fmt.Errorf("%w: wrong secret (token id %s)", ErrTokenInvalid, tok.ID)
	}
	if now := a.cfg.Now(); !now.Before(stored.Expires) {
		return fmt.Errorf("%w: token %s expired at %s; create a new one with `newbieha token create`", ErrTokenExpired, tok.ID, stored.Expires.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return nil
}

// admit checks a join request and, if it is good, signs the node's
// certificate and records it as a member. A member without the CA key
// (a witness) passes the request to a GPU member.
//
// The token is checked once, by the first member that has the committed
// token: a follower that does not know the token yet (replication lag)
// passes the join to the leader, which checks after a barrier. A member
// that checked it and cannot sign (no CA key) passes the join on with
// tokenVerifiedHeader, which only a member's certificate may carry.
func (a *Agent) admit(ctx context.Context, req JoinRequest, forwarded, vouched bool) (JoinResponse, error) {
	ip, err := validateJoin(req)
	if err != nil {
		return JoinResponse{}, err
	}
	pub, err := pki.ParsePublicKey([]byte(req.PublicKey))
	if err != nil {
		return JoinResponse{}, fmt.Errorf("%w: public_key: %w", ErrBadRequest, err)
	}
	if !vouched {
		if err := a.syncState(); err != nil {
			return JoinResponse{}, err
		}
		err := a.checkToken(req.Token)
		if errors.Is(err, errTokenUnknown) && !a.IsLeader() && !forwarded {
			var resp JoinResponse
			if ferr := a.toLeader(ctx, "/v1/join", req, &resp); ferr != nil {
				return JoinResponse{}, ferr
			}
			return resp, nil
		}
		if err != nil {
			return JoinResponse{}, err
		}
	}
	st := a.node.fsm.State()
	if a.bundle.CA.Key == nil {
		if vouched {
			return JoinResponse{}, pki.ErrNoCAKey
		}
		return a.admitElsewhere(ctx, req, st)
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
	}
	if err := a.apply(ctx, fsm.UpsertMember{Member: member}); err != nil {
		return JoinResponse{}, fmt.Errorf("record member %s: %w", req.Name, err)
	}
	resp := JoinResponse{
		CACert:    string(pki.EncodeCert(a.bundle.CA.Cert)),
		NodeCert:  string(pki.EncodeCert(cert)),
		GossipKey: encodeKey(a.gossipKey),
		Members:   append(memberAPIAddrs(st, req.Name), a.cfg.Node.APIAddr()),
	}
	// GPU members get the CA key too, so any of them can admit nodes while
	// another is down; the witness never holds it.
	if req.Role == fsm.RoleGPU {
		kb, err := pki.EncodeKey(a.bundle.CA.Key)
		if err != nil {
			return JoinResponse{}, err
		}
		resp.CAKey = string(kb)
	}
	return resp, nil
}

// admitElsewhere forwards a join to the GPU members in turn.
func (a *Agent) admitElsewhere(ctx context.Context, req JoinRequest, st fsm.State) (JoinResponse, error) {
	var errs []error
	for _, m := range st.Members {
		if m.Role != fsm.RoleGPU || m.Name == a.Name() {
			continue
		}
		var resp JoinResponse
		err := a.peerCall(ctx, m.APIAddr, http.MethodPost, "/v1/join", req, &resp, true, tokenVerifiedHeader)
		if err == nil {
			return resp, nil
		}
		if errors.Is(err, ErrTokenInvalid) || errors.Is(err, ErrTokenExpired) || errors.Is(err, ErrBadRequest) {
			return JoinResponse{}, err
		}
		errs = append(errs, err)
	}
	return JoinResponse{}, fmt.Errorf("%w; no GPU member could admit the node: %w", pki.ErrNoCAKey, errors.Join(errs...))
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
