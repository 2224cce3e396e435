package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

var (
	// ErrClosed is returned by calls on a Gossip after Close.
	ErrClosed = errors.New("gossip closed")
	// ErrStateTooLarge is returned by SetLocalState for a blob over
	// MaxStateSize.
	ErrStateTooLarge = errors.New("gossip state too large")
	// ErrKeyMismatch is matched (errors.Is) by a Join error when the
	// other side's messages did not decrypt with this node's key: the
	// nodes hold different gossip keys.
	ErrKeyMismatch = errors.New("the nodes do not share this gossip key")
)

// maxSeqAhead is how far past this node's clock (in nanoseconds since the
// epoch, the unit sequences start in) a received sequence may be. A node's
// sequence starts at its boot time and grows by one per state, so a real
// one is never far ahead; one near 2^64 is forged or from a broken clock,
// and accepting it would pin that origin's state (nothing could be newer)
// and, for this node's own name, wrap its sequence to zero.
const maxSeqAhead = uint64(time.Hour)

// broadcastMax is the largest encoded state message sent through
// memberlist's UDP broadcast queue. A gossip packet holds
// UDPBufferSize (1400 in the LAN config) minus the compound header (2),
// the encryption overhead (29) and per-message framing; 1200 leaves room for
// memberlist's own alive/suspect messages in the same packet. Larger states
// go to every peer directly over TCP (SendReliable).
const broadcastMax = 1200

// Member is one node as this node sees it.
type Member struct {
	// Name is the node's name.
	Name string
	// Addr is the node's gossip address, "ip:port"; empty if the node is
	// known only through its state (relayed by others, never seen alive).
	Addr string
	// Alive is true while memberlist counts the node as a member (alive,
	// or suspect and not yet declared dead). False means dead, left, or
	// never seen: memberlist v0.7.0 does not tell dead from left.
	Alive bool
	// Since is when Alive last changed on this node; zero if the node was
	// never seen alive.
	Since time.Time
	// State is the latest state blob the node published (nil if none
	// arrived yet). It stays after the node dies: check Alive.
	State []byte
	// Version is the sequence number of State; it only grows.
	Version uint64
	// UpdatedAt is when this node received State (local clock).
	UpdatedAt time.Time
}

// entry is the newest state known for one origin.
type entry struct {
	seq   uint64
	raw   []byte // signed message, full form: sent in push/pull and over TCP
	bcast []byte // the form that fits a broadcast (full or compact), or nil
	state []byte
	at    time.Time
}

// peer is liveness and address of one node, from memberlist's events.
type peer struct {
	alive bool
	since time.Time
	ip    net.IP
	port  uint16
}

func (p *peer) addr() string {
	if p.ip == nil {
		return ""
	}
	return net.JoinHostPort(p.ip.String(), strconv.Itoa(int(p.port)))
}

// Gossip is one node's membership in the encrypted gossip cluster: it
// detects failed peers and spreads each node's opaque state blob to all.
// All methods are safe for concurrent use.
type Gossip struct {
	cfg   Config
	log   *slog.Logger
	id    identity
	ml    *memberlist.Memberlist
	queue *memberlist.TransmitLimitedQueue
	alive atomic.Int64 // nodes alive, for the queue's retransmit count

	// life orders Join and Leave against Close (memberlist panics on
	// Leave after Shutdown). Never held together with mu by a caller of
	// memberlist, see mu.
	life   sync.RWMutex
	closed bool // written with both life and mu held; read under either

	// mu guards everything below. memberlist calls the delegates with its
	// node lock held, so mu is never held while calling into memberlist
	// (the broadcast queue is ours and safe).
	mu      sync.Mutex
	enc     encoder
	seq     uint64            // this node's latest state sequence
	states  map[string]*entry // newest state per origin, this node included
	peers   map[string]*peer
	syncs   map[string]bool // peers owed a push/pull (they just came alive)
	sendAll bool            // every live peer is owed this node's state over TCP
	// forgotten names were dropped with Forget: their states are ignored
	// and they are not reconnected until they are seen alive again.
	forgotten map[string]bool
	// certs holds the certificates that verified, for compact envelopes.
	certs certCache
	// certSent names the live peers this node sent its full signed state
	// to since they came alive, so that its compact broadcasts verify
	// there.
	certSent map[string]bool

	changeCh chan struct{} // OnChange wake-up, capacity 1
	sendCh   chan struct{} // direct-send wake-up, capacity 1
	stop     chan struct{}
	wg       sync.WaitGroup
}

// New validates cfg, starts listening and returns a member that knows only
// itself; call Join to reach the others.
func New(cfg Config) (*Gossip, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	id, err := newIdentity(cfg.SigningKey, cfg.Certificate)
	if err != nil {
		return nil, err
	}
	g := &Gossip{
		cfg:       cfg,
		log:       cfg.Logger,
		id:        id,
		certs:     make(certCache),
		certSent:  make(map[string]bool),
		states:    make(map[string]*entry),
		peers:     make(map[string]*peer),
		syncs:     make(map[string]bool),
		forgotten: make(map[string]bool),
		changeCh:  make(chan struct{}, 1),
		sendCh:    make(chan struct{}, 1),
		stop:      make(chan struct{}),
		// Start above anything a previous run of this node can have
		// published, so a restart's first state wins; a lower start (the
		// clock stepped back) is repaired when the old state comes back
		// to us (see apply).
		seq: uint64(time.Now().UnixNano()),
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = cfg.BindPort
	}
	mc.SecretKey = bytes.Clone(cfg.Key)
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	// memberlist's own LZW compression of every message: our states are
	// DEFLATE-compressed already (codec.go) and everything else it sends
	// is a few dozen bytes, yet each compressed message allocated a fresh
	// LZW writer (a third of an idle agent's allocations, measured). A
	// receiver still takes compressed messages from an older peer.
	mc.EnableCompression = false
	mc.ProbeInterval = cfg.ProbeInterval
	mc.ProbeTimeout = cfg.ProbeTimeout
	mc.SuspicionMult = cfg.SuspicionMult
	mc.GossipInterval = cfg.GossipInterval
	mc.PushPullInterval = cfg.PushPullInterval
	mc.TCPTimeout = cfg.TCPTimeout
	mc.Delegate = delegate{g}
	mc.Events = events{g}
	mc.Logger = logging.StdLog(cfg.Logger, "", slog.LevelInfo, logging.LevelTrace) // its lines start "memberlist:"
	if cfg.tweak != nil {
		cfg.tweak(mc)
	}
	g.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(g.alive.Load()) },
		RetransmitMult: mc.RetransmitMult,
	}

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	g.ml = ml
	g.wg.Add(3)
	go g.notifyLoop()
	go g.sendLoop()
	go g.reconnectLoop()
	g.log.Debug("gossip started", "name", cfg.Name, "addr", g.LocalAddr())
	return g, nil
}

// LocalAddr returns the address other nodes join this one at, "ip:port".
func (g *Gossip) LocalAddr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.peers[g.cfg.Name]; p != nil {
		return p.addr()
	}
	return ""
}

// Join contacts the given nodes ("ip:port") and syncs membership and
// states with each that answers. It returns how many answered; the error
// is non-nil only if none did. A node holding another gossip key cannot
// join: its messages fail authentication on the other side, both sides
// log why, and Join returns an error.
func (g *Gossip) Join(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("gossip join: no addresses")
	}
	g.life.RLock()
	defer g.life.RUnlock()
	if g.closed {
		return 0, ErrClosed
	}
	n, err := g.ml.Join(addrs)
	if err != nil {
		je := &joinError{addrs: addrs, err: err}
		g.log.Error("gossip join failed", "error", je.Error())
		return n, je
	}
	return n, nil
}

// joinError flattens memberlist's multi-line multierror into one line and
// recognises a key mismatch.
type joinError struct {
	addrs []string
	err   error
}

func (e *joinError) Error() string {
	var parts []string
	if w, ok := e.err.(interface{ WrappedErrors() []error }); ok {
		for _, err := range w.WrappedErrors() {
			parts = append(parts, err.Error())
		}
	} else {
		parts = append(parts, e.err.Error())
	}
	msg := "gossip join " + strings.Join(e.addrs, ",") + ": " + strings.Join(parts, "; ")
	if e.keyMismatch() {
		msg += " (" + ErrKeyMismatch.Error() + ")"
	}
	return msg
}

// keyMismatch reports whether memberlist failed to decrypt the answer.
// memberlist returns only strings here; its message is
// "no installed keys could decrypt the message".
func (e *joinError) keyMismatch() bool {
	return strings.Contains(e.err.Error(), "could decrypt")
}

func (e *joinError) Unwrap() []error {
	if e.keyMismatch() {
		return []error{ErrKeyMismatch, e.err}
	}
	return []error{e.err}
}

// SetLocalState publishes this node's state blob (at most MaxStateSize
// bytes). Each call supersedes the last everywhere; a blob equal to the
// current one is not sent again. It reaches live peers within about a
// GossipInterval or one TCP round trip; see docs/gossip.md.
func (g *Gossip) SetLocalState(b []byte) error {
	if len(b) > MaxStateSize {
		return fmt.Errorf("set local state of %d bytes: %w (limit %d)", len(b), ErrStateTooLarge, MaxStateSize)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	if own := g.states[g.cfg.Name]; own != nil && bytes.Equal(own.state, b) {
		return nil
	}
	g.seq++
	return g.publishLocked(b)
}

// publishLocked stores b as this node's state at g.seq and starts spreading
// it. g.mu must be held.
func (g *Gossip) publishLocked(b []byte) error {
	inner, err := g.enc.encodeState(stateMsg{Origin: g.cfg.Name, Seq: g.seq, Payload: b})
	if err != nil {
		return fmt.Errorf("encode local state: %w", err)
	}
	sig, err := sign(g.id.key, inner)
	if err != nil {
		return fmt.Errorf("sign local state: %w", err)
	}
	raw := encodeEnvelope(formFull, g.id.cert, sig, inner)
	bcast := broadcastForm(raw, g.id.hash[:], sig, inner)
	g.states[g.cfg.Name] = &entry{seq: g.seq, raw: raw, bcast: bcast, state: bytes.Clone(b), at: time.Now()}
	switch {
	case bcast == nil:
		g.sendAll = true
		signal(g.sendCh)
	case bcast[1] == formCompact:
		// Peers that never got this node's certificate cannot check a
		// compact broadcast: sendLoop sends them the full form once.
		g.queue.QueueBroadcast(&broadcast{origin: g.cfg.Name, seq: g.seq, msg: bcast})
		signal(g.sendCh)
	default:
		g.queue.QueueBroadcast(&broadcast{origin: g.cfg.Name, seq: g.seq, msg: bcast})
	}
	signal(g.changeCh)
	return nil
}

// broadcastForm returns the signed message that fits a broadcast: the full
// form if it fits, else the compact one (certificate hash) if that fits,
// else nil (the state goes to every peer over TCP).
func broadcastForm(full, hash, sig, inner []byte) []byte {
	if len(full) <= broadcastMax {
		return full
	}
	if compact := encodeEnvelope(formCompact, hash, sig, inner); len(compact) <= broadcastMax {
		return compact
	}
	return nil
}

// Members returns every node this one knows of, sorted by name: those
// memberlist reports plus any whose state arrived. States are copies.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Member, 0, len(g.peers)+len(g.states))
	for name, p := range g.peers {
		m := Member{Name: name, Addr: p.addr(), Alive: p.alive, Since: p.since}
		if e := g.states[name]; e != nil {
			m.State, m.Version, m.UpdatedAt = bytes.Clone(e.state), e.seq, e.at
		}
		out = append(out, m)
	}
	for name, e := range g.states {
		if g.peers[name] == nil {
			out = append(out, Member{Name: name, State: bytes.Clone(e.state), Version: e.seq, UpdatedAt: e.at})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Forget drops a node that is not alive from this node's view: its state
// and address go, states relayed for it are ignored, and it is no longer
// reconnected, until it is seen alive again. Use it when the node was
// removed from the cluster; Forget of a live node or of this node is an
// error.
func (g *Gossip) Forget(name string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if name == g.cfg.Name {
		return fmt.Errorf("gossip forget %q: that is this node", name)
	}
	if p := g.peers[name]; p != nil && p.alive {
		return fmt.Errorf("gossip forget %q: the node is alive", name)
	}
	delete(g.peers, name)
	delete(g.states, name)
	delete(g.syncs, name)
	g.forgotten[name] = true
	signal(g.changeCh)
	return nil
}

// Leave tells the others this node is leaving and waits up to timeout for
// that message to go out. The node stays reachable until Close; others
// then see it not alive at once instead of after failure detection.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.life.RLock()
	defer g.life.RUnlock()
	if g.closed {
		return ErrClosed
	}
	if err := g.ml.Leave(timeout); err != nil {
		return fmt.Errorf("gossip leave: %w", err)
	}
	return nil
}

// Close stops gossip without a leave message (call Leave first for a
// clean exit): listeners close, others detect this node as failed, and
// Close waits for this package's goroutines (OnChange included). Safe to
// call more than once.
func (g *Gossip) Close() error {
	g.life.Lock()
	if g.closed {
		g.life.Unlock()
		return nil
	}
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	err := g.ml.Shutdown()
	g.life.Unlock()
	close(g.stop)
	g.wg.Wait()
	if err != nil {
		return fmt.Errorf("gossip shutdown: %w", err)
	}
	return nil
}

// verify checks a received signed message: framing, the state inside, the
// certificate (VerifyOrigin), the signature and the sequence bound. It
// returns the state and the certificate.
func (g *Gossip) verify(raw []byte) (stateMsg, envelope, []byte, error) {
	env, err := decodeEnvelope(raw)
	if err != nil {
		return stateMsg{}, envelope{}, nil, err
	}
	m, err := decodeState(env.inner)
	if err != nil {
		return stateMsg{}, envelope{}, nil, err
	}
	der := env.ref
	if env.form == formCompact {
		g.mu.Lock()
		der = g.certs[[32]byte(env.ref)]
		g.mu.Unlock()
		if der == nil {
			return m, env, nil, errCertUnknown
		}
	}
	pub, err := g.cfg.VerifyOrigin(m.Origin, der)
	if err != nil {
		return m, env, nil, fmt.Errorf("%w: certificate refused for %s: %w", ErrForged, m.Origin, err)
	}
	if err := verifySig(pub, env.inner, env.sig); err != nil {
		return m, env, nil, err
	}
	if limit := uint64(time.Now().UnixNano()) + maxSeqAhead; m.Seq > limit {
		return m, env, nil, fmt.Errorf("%w: sequence %d of %s is past this node's clock (limit %d)", errSeqAhead, m.Seq, m.Origin, limit)
	}
	return m, env, der, nil
}

var (
	// errCertUnknown: a compact envelope whose certificate this node has
	// not seen yet; the full form comes with the next push/pull.
	errCertUnknown = errors.New("certificate of compact state not known yet")
	// errSeqAhead: a sequence number far past the clock (see maxSeqAhead).
	errSeqAhead = errors.New("gossip sequence number from the future")
)

// apply takes one received signed state message: it keeps it if it
// verifies and is newer than what this node has for that origin, relays it
// if it fits the broadcast queue, and drops anything malformed, forged or
// from the future with a log line.
func (g *Gossip) apply(raw []byte, via string) {
	if g.known(raw, via) {
		return
	}
	m, env, der, err := g.verify(raw)
	switch {
	case errors.Is(err, errCertUnknown):
		g.log.Debug("dropping gossip state until its certificate arrives", "origin", m.Origin, "via", via)
		return
	case errors.Is(err, ErrForged), errors.Is(err, errSeqAhead):
		g.log.Warn("dropping gossip state not signed by its origin", "origin", m.Origin, "seq", m.Seq, "via", via, "error", err)
		return
	case err != nil:
		g.log.Warn("dropping gossip message", "via", via, "size", len(raw), "error", err)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.certs.add(der)
	if m.Origin == g.cfg.Name {
		// Our own state coming back. Newer than ours means a previous run
		// of this node published it: jump past it so ours wins again.
		if m.Seq > g.seq {
			g.log.Info("superseding this node's state from a previous run", "seen", m.Seq, "ours", g.seq)
			g.seq = m.Seq
			if own := g.states[g.cfg.Name]; own != nil {
				g.seq++
				if err := g.publishLocked(own.state); err != nil {
					g.log.Error("republish local state", "error", err)
				}
			}
		}
		return
	}
	if g.forgotten[m.Origin] {
		return
	}
	cur := g.states[m.Origin]
	if cur != nil && cur.seq >= m.Seq {
		if cur.seq > m.Seq {
			// Relays and push/pull bring old states back all the time;
			// a replay is one of them, and changes nothing.
			g.log.Debug("ignoring an older gossip state", "origin", m.Origin, "seq", m.Seq, "have", cur.seq, "via", via)
		}
		return
	}
	if cur == nil && len(g.states) >= maxOrigins {
		g.log.Warn("dropping gossip state: too many nodes", "origin", m.Origin, "limit", maxOrigins)
		return
	}
	// memberlist reuses its buffer: build both forms afresh.
	full := encodeEnvelope(formFull, der, env.sig, env.inner)
	hash := certHash(der)
	bcast := broadcastForm(full, hash[:], env.sig, env.inner)
	g.states[m.Origin] = &entry{seq: m.Seq, raw: full, bcast: bcast, state: m.Payload, at: time.Now()}
	if bcast != nil {
		g.queue.QueueBroadcast(&broadcast{origin: m.Origin, seq: m.Seq, msg: bcast})
	}
	signal(g.changeCh)
}

// known reports whether raw claims a state that apply would ignore anyway:
// not newer than the one this node holds for its origin (or its own
// state, not newer than its own sequence), or from a forgotten origin.
// Relays, retransmissions and every push/pull bring such states back all
// the time, and each would cost an inflate and a signature check (most of
// what gossip cost an idle agent). The claim is not verified, and need not
// be: a message dropped here is one that could only ever be ignored or
// refused, and a forger cannot make a genuine newer state look older,
// since the sequence number is part of what its origin signs.
func (g *Gossip) known(raw []byte, via string) bool {
	env, err := decodeEnvelope(raw)
	if err != nil {
		return false
	}
	_, seq, origin, _, err := decodeStateHeader(env.inner)
	if err != nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if origin == g.cfg.Name {
		return seq <= g.seq
	}
	if g.forgotten[origin] {
		return true
	}
	cur := g.states[origin]
	if cur != nil && cur.seq > seq {
		g.log.Debug("ignoring an older gossip state", "origin", origin, "seq", seq, "have", cur.seq, "via", via)
	}
	return cur != nil && cur.seq >= seq
}

// localBundle encodes every state this node holds, for push/pull.
func (g *Gossip) localBundle() []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	raws := make([][]byte, 0, len(g.states))
	for _, e := range g.states {
		raws = append(raws, e.raw)
	}
	return encodeBundle(raws)
}

// notifyLoop runs OnChange, one call at a time, coalescing wake-ups.
func (g *Gossip) notifyLoop() {
	defer g.wg.Done()
	for {
		select {
		case <-g.stop:
			return
		case <-g.changeCh:
			if g.cfg.OnChange != nil {
				g.cfg.OnChange()
			}
		}
	}
}

// sendLoop works off, outside memberlist's goroutines, what events left
// owed: a full push/pull with each peer that just came alive, and a direct
// TCP send of this node's state to every live peer when the state is too
// large for the broadcast queue.
//
// The push/pull matters for a node that restarts at its old address
// without joining: the others learn it is alive from its refutation,
// piggybacked on an ack, but nothing tells it about them until a periodic
// push/pull happens to pick it. Syncing on every join event closes that gap
// at once and hands the newcomer every state, in both directions.
func (g *Gossip) sendLoop() {
	defer g.wg.Done()
	for {
		select {
		case <-g.stop:
			return
		case <-g.sendCh:
		}
		g.mu.Lock()
		own := g.states[g.cfg.Name]
		var syncs []string
		var sends []*memberlist.Node
		for name, p := range g.peers {
			switch {
			case name == g.cfg.Name || !p.alive:
			case g.syncs[name]:
				syncs = append(syncs, p.addr())
			case own != nil && (g.sendAll || !g.certSent[name]):
				sends = append(sends, &memberlist.Node{Name: name, Addr: p.ip, Port: p.port})
				g.certSent[name] = true
			}
		}
		g.sendAll = false
		clear(g.syncs)
		g.mu.Unlock()
		var wg sync.WaitGroup
		for _, a := range syncs {
			wg.Go(func() {
				if err := g.pushPull(a); err != nil {
					g.log.Warn("sync with new peer", "addr", a, "error", err)
				}
			})
		}
		for _, n := range sends {
			wg.Go(func() {
				if err := g.ml.SendReliable(n, own.raw); err != nil {
					g.log.Warn("send state to peer", "peer", n.Name, "error", err)
				}
			})
		}
		wg.Wait()
	}
}

// pushPull exchanges full state (membership and every node's state) with
// the node at addr.
func (g *Gossip) pushPull(addr string) error {
	g.life.RLock()
	defer g.life.RUnlock()
	if g.closed {
		return ErrClosed
	}
	if _, err := g.ml.Join([]string{addr}); err != nil {
		return &joinError{addrs: []string{addr}, err: err}
	}
	return nil
}

// reconnectLoop tries, every ReconnectInterval, to join again each peer
// that was seen and now counts as failed. A join that answers brings the
// two sides' views back together; one that does not costs a connection
// attempt (bounded by TCPTimeout) and a debug line.
func (g *Gossip) reconnectLoop() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		g.mu.Lock()
		var addrs []string
		for name, p := range g.peers {
			if name != g.cfg.Name && !p.alive && p.ip != nil {
				addrs = append(addrs, p.addr())
			}
		}
		g.mu.Unlock()
		for _, a := range addrs {
			select {
			case <-g.stop:
				return
			default:
			}
			if err := g.pushPull(a); err != nil {
				g.log.Debug("reconnect failed", "error", err)
			} else {
				g.log.Info("reconnected to failed peer", "addr", a)
			}
		}
	}
}

// signal wakes the loop reading ch without blocking; a wake-up already
// pending absorbs this one.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// broadcast is one state message in memberlist's broadcast queue.
type broadcast struct {
	origin string
	seq    uint64
	msg    []byte
}

// Invalidates drops a queued older state of the same origin.
func (b *broadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*broadcast)
	return ok && o.origin == b.origin && o.seq <= b.seq
}

// Message returns the encoded state.
func (b *broadcast) Message() []byte { return b.msg }

// Finished is called when the message is no longer queued.
func (b *broadcast) Finished() {}

// delegate implements memberlist.Delegate. memberlist calls it from its
// packet and stream goroutines, so nothing in it blocks: it decodes, takes
// g.mu briefly and signals channels.
type delegate struct{ g *Gossip }

// NodeMeta returns no metadata: states travel as messages (NodeMeta over
// 512 bytes makes memberlist panic).
func (d delegate) NodeMeta(limit int) []byte { return nil }

// NotifyMsg handles one state message from a peer (UDP broadcast or TCP).
func (d delegate) NotifyMsg(b []byte) { d.g.apply(b, "message") }

// GetBroadcasts hands memberlist the queued state messages that fit.
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.g.queue.GetBroadcasts(overhead, limit)
}

// LocalState returns every state this node holds for a push/pull.
func (d delegate) LocalState(join bool) []byte { return d.g.localBundle() }

// MergeRemoteState keeps the newer of each state a peer sent in push/pull.
func (d delegate) MergeRemoteState(buf []byte, join bool) {
	parts, err := decodeBundle(buf)
	if err != nil {
		d.g.log.Warn("dropping gossip push/pull state", "size", len(buf), "error", err)
		return
	}
	for _, p := range parts {
		d.g.apply(p, "push/pull")
	}
}

// events implements memberlist.EventDelegate. memberlist calls it with its
// node lock held: it only records and signals.
type events struct{ g *Gossip }

// NotifyJoin records a node seen alive and owes it a push/pull.
func (e events) NotifyJoin(n *memberlist.Node) {
	g := e.g
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.touchLocked(n)
	if !p.alive {
		p.alive, p.since = true, time.Now()
		g.alive.Add(1)
	}
	delete(g.forgotten, n.Name)
	delete(g.certSent, n.Name)
	if n.Name != g.cfg.Name {
		g.syncs[n.Name] = true
		signal(g.sendCh)
	}
	signal(g.changeCh)
}

// NotifyLeave records a node dead or left.
func (e events) NotifyLeave(n *memberlist.Node) {
	g := e.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.forgotten[n.Name] {
		return
	}
	p := g.touchLocked(n)
	if p.alive {
		p.alive, p.since = false, time.Now()
		g.alive.Add(-1)
	}
	delete(g.syncs, n.Name)
	signal(g.changeCh)
}

// NotifyUpdate records a node's new address.
func (e events) NotifyUpdate(n *memberlist.Node) {
	g := e.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.forgotten[n.Name] {
		return
	}
	g.touchLocked(n)
	signal(g.changeCh)
}

// touchLocked returns n's peer record with its address updated. g.mu must
// be held.
func (g *Gossip) touchLocked(n *memberlist.Node) *peer {
	p := g.peers[n.Name]
	if p == nil {
		p = &peer{}
		g.peers[n.Name] = p
	}
	p.ip = bytes.Clone(n.Addr) // n is memberlist's; sendLoop may hold the old slice
	p.port = n.Port
	return p
}
