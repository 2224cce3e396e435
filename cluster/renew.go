package cluster

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// Node certificates are short-lived (pki.NodeValidity, 30 days). Each agent
// renews its own RenewBefore its expiry (10 days by default) through a GPU
// member, which holds the CA key: it asks POST /v1/internal/renew with its
// current certificate, the GPU member signs a new one for the same name,
// role, IP and key, and commits the member record with the new serial
// first and the presented one second (fsm.MaxMemberCerts). Every check of a
// node certificate (API, Raft, gossip) honours only the serials of the
// record, so a renewal withdraws the certificate before the one presented,
// and a removal all of them.

// RenewResponse carries a renewed node certificate (PEM).
type RenewResponse struct {
	NodeCert string `json:"node_cert"`
}

// handleRenew signs a fresh node certificate for the caller, for the key of
// the certificate it called with. The body is an empty object.
func (p *peerAPI) handleRenew(w http.ResponseWriter, r *http.Request, c caller) {
	a := p.a
	var req struct{}
	if !readJSON(w, r, &req) {
		return
	}
	if a.bundle.CA.Key == nil {
		writeError(w, fmt.Errorf("%w: %s cannot sign; ask a GPU member", pki.ErrNoCAKey, a.Name()))
		return
	}
	leaf := r.TLS.VerifiedChains[0][0]
	m, ok := a.node.fsm.Member(c.name)
	if !ok {
		writeError(w, fmt.Errorf("%w: %q", ErrUnknownMember, c.name))
		return
	}
	ip, err := certIP(leaf)
	if err != nil {
		writeError(w, fmt.Errorf("%w: %w", ErrBadRequest, err))
		return
	}
	cert, err := a.bundle.CA.IssueFor(pki.NodeIdentity{Name: c.name, Role: string(m.Role), IP: ip}, leaf.PublicKey, pki.NodeValidity)
	if err != nil {
		writeError(w, err)
		return
	}
	renewed := m
	renewed.Certs = []fsm.MemberCert{
		{Serial: pki.Serial(cert), Expires: cert.NotAfter.UTC()},
		{Serial: pki.Serial(leaf), Expires: leaf.NotAfter.UTC()},
	}
	if err := a.apply(r.Context(), fsm.UpsertMember{Member: renewed}); err != nil {
		writeError(w, fmt.Errorf("record the renewed certificate of %s: %w", c.name, err))
		return
	}
	a.log.Info("renewed node certificate", "member", c.name, "serial", pki.Serial(cert), "expires", cert.NotAfter.UTC().Format(time.RFC3339))
	writeJSON(w, http.StatusOK, RenewResponse{NodeCert: string(pki.EncodeCert(cert))})
}

// certIP is the one IP address a node certificate names.
func certIP(c *x509.Certificate) (netip.Addr, error) {
	if len(c.IPAddresses) != 1 {
		return netip.Addr{}, fmt.Errorf("certificate of %s names %d IP addresses, want 1", c.Subject.CommonName, len(c.IPAddresses))
	}
	ip, ok := netip.AddrFromSlice(c.IPAddresses[0])
	if !ok {
		return netip.Addr{}, fmt.Errorf("certificate of %s: bad IP address", c.Subject.CommonName)
	}
	return ip.Unmap(), nil
}

// isRenewal reports whether next is cur with only its certificates changed
// (what handleRenew commits), for peerCommandAllowed.
func isRenewal(cur, next fsm.Member) bool {
	return cur.Name == next.Name && cur.Role == next.Role && cur.RaftAddr == next.RaftAddr && cur.APIAddr == next.APIAddr &&
		cur.GossipAddr == next.GossipAddr && cur.JoinedAt.Equal(next.JoinedAt)
}

// renewLoop renews this node's certificate RenewBefore its expiry; a failed
// attempt is tried again at the next check.
func (a *Agent) renewLoop() {
	defer a.wg.Done()
	t := time.NewTicker(a.cfg.RenewCheck)
	defer t.Stop()
	for {
		if left := time.Until(a.bundle.Leaf().NotAfter); left < a.cfg.RenewBefore {
			if err := a.renewCert(a.ctx); err != nil && a.ctx.Err() == nil {
				a.log.Warn("node certificate renewal failed, will retry", "expires_in", left.Round(time.Minute), "error", err)
			}
		}
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// renewCert obtains a renewed certificate from a GPU member, waits until
// the other members have applied the record that honours it, writes it to
// the TLS dir and presents it from then on (TLS and gossip).
func (a *Agent) renewCert(ctx context.Context) error {
	st := a.node.fsm.State()
	var errs []error
	for _, m := range st.Members {
		if m.Role != fsm.RoleGPU {
			continue
		}
		var resp RenewResponse
		cctx, cancel := context.WithTimeout(ctx, a.cfg.ApplyTimeout+a.cfg.PeerTimeout)
		err := a.peerCallWith(cctx, a.slowPeers(), m.APIAddr, http.MethodPost, "/v1/internal/renew", struct{}{}, &resp, false)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
			continue
		}
		return a.installRenewed(ctx, []byte(resp.NodeCert))
	}
	if len(errs) == 0 {
		return errors.New("no GPU member to renew the certificate with")
	}
	return errors.Join(errs...)
}

func (a *Agent) installRenewed(ctx context.Context, pemCert []byte) error {
	cert, err := pki.ParseCert(pemCert)
	if err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pool := x509.NewCertPool()
	pool.AddCert(a.bundle.CA.Cert)
	switch {
	case cert.Subject.CommonName != a.Name() || pki.Role(cert) != string(a.cfg.Node.Role):
		return fmt.Errorf("renewed certificate names %s (%s), not this node", cert.Subject.CommonName, pki.Role(cert))
	case !a.bundle.NodeKey.Public().(equaler).Equal(cert.PublicKey):
		return errors.New("renewed certificate is not for this node's key")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	serial := pki.Serial(cert)
	// Present it only once every reachable member honours it, so no lease
	// round or Raft call is refused for a certificate its record does not
	// yet name.
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(10 * time.Second)
		for !cond() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("own record", func() bool { m, ok := a.node.fsm.Member(a.Name()); return ok && m.Honours(serial) })
	idx := a.node.raft.AppliedIndex()
	for _, m := range a.node.fsm.State().Members {
		if m.Name == a.Name() {
			continue
		}
		waitFor(m.Name, func() bool {
			s, err := a.selfOf(ctx, m.Name)
			var ne net.Error
			return err == nil && s.AppliedIndex >= idx || errors.As(err, &ne)
		})
	}
	if err := pki.WriteFileAtomic(filepath.Join(a.cfg.DataDir, tlsDirName, pki.NodeCertFile), pki.EncodeCert(cert), 0o600); err != nil {
		return err
	}
	a.bundle.SetNodeCert(cert)
	if a.gossip != nil {
		if err := a.gossip.SetCertificate(cert.Raw); err != nil {
			return err
		}
	}
	// Connections kept alive from before present the old certificate,
	// which the next renewal withdraws: from now on every call opens a
	// fresh one.
	a.peerTransport.renew()
	a.log.Info("node certificate renewed", "serial", serial, "expires", cert.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// peerTransport is the members' HTTPS connection pool. Keep-alive
// connections present the certificate they were opened with, so a renewal
// replaces the pool (renew) rather than waiting for them to go idle: the
// lease rounds keep theirs busy every renew interval.
type peerTransport struct {
	bundle *pki.Bundle
	cur    atomic.Pointer[http.Transport]
}

func newPeerTransport(b *pki.Bundle) *peerTransport {
	t := &peerTransport{bundle: b}
	t.cur.Store(t.fresh())
	return t
}

func (t *peerTransport) fresh() *http.Transport {
	return &http.Transport{TLSClientConfig: t.bundle.ClientConfig(), ForceAttemptHTTP2: false, MaxIdleConnsPerHost: 2}
}

// RoundTrip is http.RoundTripper.
func (t *peerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.cur.Load().RoundTrip(r)
}

// CloseIdleConnections closes the idle connections of the pool in use.
func (t *peerTransport) CloseIdleConnections() { t.cur.Load().CloseIdleConnections() }

// renew starts a fresh pool; calls in flight finish on the old one, whose
// connections are closed as they go idle.
func (t *peerTransport) renew() {
	old := t.cur.Swap(t.fresh())
	old.CloseIdleConnections()
	go func() {
		// Close what was busy at the swap once its calls are done.
		time.Sleep(time.Minute)
		old.CloseIdleConnections()
	}()
}
