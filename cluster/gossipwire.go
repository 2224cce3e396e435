package cluster

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"sync"
	"time"

	"github.com/newbieha/newbieha/cluster/gossip"
	"github.com/newbieha/newbieha/cluster/lease"
	"github.com/newbieha/newbieha/cluster/pki"
)

// gossipState is what each agent spreads about itself over gossip: its
// health verdict and report (checks, GPU telemetry) and whether it holds
// the VIP. Status on any member reads the others' from its gossip view.
type gossipState struct {
	Healthy      bool   `json:"healthy"`
	HealthReason string `json:"health_reason,omitempty"`
	// Pending: no verdict yet (just started); not a reason to move.
	Pending  bool `json:"pending,omitempty"`
	Health   any  `json:"health,omitempty"`
	HoldsVIP bool `json:"holds_vip"`
}

// startGossip joins the encrypted gossip cluster. Every state is signed
// with this node's key and carries its certificate; a received state is
// taken only when newGossipVerifier's check holds for its origin.
func (a *Agent) startGossip() error {
	v := newGossipVerifier(a.bundle.CA.Cert, func(name, serial string) bool {
		m, ok := a.node.fsm.Member(name)
		return ok && m.Honours(serial)
	})
	g, err := gossip.New(gossip.Config{
		Name:          a.Name(),
		BindAddr:      a.cfg.Node.BindAddr(),
		BindPort:      a.cfg.Node.Ports.Gossip,
		AdvertiseAddr: a.cfg.Node.Advertise,
		AdvertisePort: a.cfg.Node.Ports.Gossip,
		Key:           a.gossipKey,
		SigningKey:    a.bundle.NodeKey,
		Certificate:   a.bundle.NodeCert.Raw,
		VerifyOrigin:  v.verify,
		Logger:        logging.Named(a.log, "gossip"),
	})
	if err != nil {
		return err
	}
	a.gossip = g
	return nil
}

// gossipLoop publishes this node's state every 2 s (telemetry for status;
// each publication is signed and checked by every peer), and at once when
// its health verdict changes (checked every 100 ms: a health-driven
// failover should not wait for the next round), and joins members it does
// not see yet, from their addresses in the replicated state.
func (a *Agent) gossipLoop() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var last time.Time
	var lastOK bool
	var lastWhy string
	for {
		ok, why, pending := a.ownHealth()
		a.hooks.health(ok, why, pending) // hookwire.go: never blocks
		if time.Since(last) >= 2*time.Second || ok != lastOK || why != lastWhy {
			a.publishGossip()
			a.joinGossip()
			last, lastOK, lastWhy = time.Now(), ok, why
		}
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) publishGossip() {
	healthy, why, pending := a.ownHealth()
	s := gossipState{Healthy: healthy, HealthReason: why, Pending: pending, HoldsVIP: a.lease.holdsVIP()}
	if a.cfg.Health != nil {
		s.Health = gossipDetail(a.cfg.Health.Detail())
	}
	b, err := json.Marshal(s)
	if err != nil {
		a.log.Error("encode gossip state", "error", err)
		return
	}
	if err := a.gossip.SetLocalState(b); err != nil {
		a.log.Warn("publish gossip state", "error", err)
	}
}

// gossipDetail is the health detail without the per-check latency
// histograms and sample durations: they are for this node's metrics, and
// would make every gossip state larger (about 250 bytes a check) and
// different at every sample.
func gossipDetail(d any) any {
	b, err := json.Marshal(d)
	if err != nil {
		return d
	}
	var v any
	if json.Unmarshal(b, &v) != nil {
		return d
	}
	var strip func(any)
	strip = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			delete(v, "latency")
			delete(v, "duration_ns")
			for _, e := range v {
				strip(e)
			}
		case []any:
			for _, e := range v {
				strip(e)
			}
		}
	}
	strip(v)
	return v
}

func (a *Agent) joinGossip() {
	alive := map[string]bool{}
	for _, m := range a.gossip.Members() {
		if m.Alive {
			alive[m.Name] = true
		}
	}
	var addrs []string
	for _, m := range a.node.fsm.State().Members {
		if m.Name != a.Name() && !alive[m.Name] && m.GossipAddr != "" {
			addrs = append(addrs, m.GossipAddr)
		}
	}
	if len(addrs) == 0 {
		return
	}
	if _, err := a.gossip.Join(addrs); err != nil {
		a.log.Debug("gossip join", "addrs", addrs, "error", err)
	}
}

// gossipView returns each member's gossip view by name. A state is decoded
// once per update (the leader's controller reads the view every renewal
// interval; states change every few seconds).
func (a *Agent) gossipView() map[string]gossipMember {
	a.gossipMu.Lock()
	defer a.gossipMu.Unlock()
	if a.gossipDecoded == nil {
		a.gossipDecoded = map[string]gossipMember{}
	}
	out := map[string]gossipMember{}
	for _, m := range a.gossip.Members() {
		gm, ok := a.gossipDecoded[m.Name]
		if !ok || !gm.UpdatedAt.Equal(m.UpdatedAt) {
			gm = gossipMember{UpdatedAt: m.UpdatedAt}
			if len(m.State) > 0 && json.Unmarshal(m.State, &gm.State) == nil {
				gm.HasState = true
			}
			a.gossipDecoded[m.Name] = gm
		}
		gm.Alive = m.Alive
		out[m.Name] = gm
	}
	return out
}

type gossipMember struct {
	Alive     bool
	HasState  bool
	State     gossipState
	UpdatedAt time.Time
}

// gossipVerifier decides whether a certificate may speak for a gossip
// origin: it must chain to the cluster CA (for client and server use, as
// node certificates are issued), name the origin as its CommonName, and the
// origin must be a current member. The chain check is cached by the
// certificate's hash; membership is asked every time, so a removed node's
// states stop counting at once.
type gossipVerifier struct {
	roots *x509.CertPool
	// isMember reports whether name is a current member whose record
	// honours the certificate with this serial.
	isMember func(name, serial string) bool
	now      func() time.Time

	mu    sync.Mutex
	cache map[[sha256.Size]byte]verifiedCert
}

type verifiedCert struct {
	cn       string
	serial   string
	pub      crypto.PublicKey
	notAfter time.Time
}

// maxVerifiedCerts bounds the cache (a few per member in practice).
const maxVerifiedCerts = 64

func newGossipVerifier(ca *x509.Certificate, isMember func(name, serial string) bool) *gossipVerifier {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &gossipVerifier{roots: pool, isMember: isMember, now: time.Now, cache: map[[sha256.Size]byte]verifiedCert{}}
}

// verify is gossip.Config.VerifyOrigin. It reads no network.
func (v *gossipVerifier) verify(origin string, der []byte) (crypto.PublicKey, error) {
	h := sha256.Sum256(der)
	v.mu.Lock()
	vc, ok := v.cache[h]
	v.mu.Unlock()
	if !ok || !v.now().Before(vc.notAfter) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: v.roots, CurrentTime: v.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return nil, fmt.Errorf("certificate of %q: %w", c.Subject.CommonName, err)
		}
		if role := pki.Role(c); !pki.IsNodeRole(role) {
			return nil, fmt.Errorf("certificate of %q names role %q: only node certificates speak in gossip", c.Subject.CommonName, role)
		}
		vc = verifiedCert{cn: c.Subject.CommonName, serial: pki.Serial(c), pub: c.PublicKey, notAfter: c.NotAfter}
		v.mu.Lock()
		if len(v.cache) >= maxVerifiedCerts {
			clear(v.cache)
		}
		v.cache[h] = vc
		v.mu.Unlock()
	}
	if vc.cn != origin {
		return nil, fmt.Errorf("certificate of %q cannot speak for %q", vc.cn, origin)
	}
	if !v.isMember(origin, vc.serial) {
		return nil, errNotMember
	}
	return vc.pub, nil
}

// errNotMember: the origin is not in the replicated member list (removed,
// or not yet replicated here).
var errNotMember = errors.New("origin is not a current member")

// gossipHealth is what gossip says of the other nodes' health: a node that
// gossip holds dead, or that has published nothing, is not known.
func (a *Agent) gossipHealth() map[string]lease.NodeHealth {
	out := map[string]lease.NodeHealth{}
	for name, g := range a.gossipView() {
		if name != a.Name() && g.Alive && g.HasState && !g.State.Pending {
			out[name] = lease.NodeHealth{Known: true, Healthy: g.State.Healthy, Reason: g.State.HealthReason}
		}
	}
	return out
}
