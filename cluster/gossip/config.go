package gossip

import (
	"crypto"
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/memberlist"
)

// KeySize is the length of the gossip key: AES-256.
const KeySize = 32

// Defaults for the failure detector and dissemination, tuned for a LAN of a
// few nodes. docs/gossip.md has the measurements behind them.
const (
	// DefaultProbeInterval is how often each node probes one random peer.
	// memberlist's LAN default is 1 s; 200 ms brought dead-node detection on
	// three nodes from a 5.9 s median to about 0.7 s (NOTES.md).
	DefaultProbeInterval = 200 * time.Millisecond
	// DefaultProbeTimeout is how long a probe waits for an ack before
	// asking other nodes to probe indirectly. A LAN round trip is well under
	// 1 ms; 100 ms leaves room for a loaded host.
	DefaultProbeTimeout = 100 * time.Millisecond
	// DefaultSuspicionMult scales the time a suspected node has to refute
	// before it is declared dead (SuspicionMult × log10(n) × ProbeInterval,
	// at least that times one).
	DefaultSuspicionMult = 2
	// DefaultGossipInterval is how often queued broadcasts (state updates,
	// membership changes) are sent to random peers (LAN default 200 ms).
	DefaultGossipInterval = 100 * time.Millisecond
	// DefaultPushPullInterval is how often a node exchanges its full view
	// (membership and every node's state) with one random peer over TCP:
	// the anti-entropy that repairs anything a lost UDP packet missed
	// (LAN default 30 s).
	DefaultPushPullInterval = 5 * time.Second
	// DefaultTCPTimeout bounds one TCP exchange (push/pull, a direct state
	// send) with a peer (LAN default 10 s). It also bounds how long Close
	// may wait for a send in flight to a peer that vanished.
	DefaultTCPTimeout = 3 * time.Second
	// DefaultReconnectInterval is how often a node tries to join again
	// each peer it saw and now counts as failed. memberlist never probes
	// or syncs with a dead node once GossipToTheDeadTime (30 s) has
	// passed, so without this the two sides of a healed partition would
	// stay apart (Serf's reconnect does the same job).
	DefaultReconnectInterval = 3 * time.Second
	// DefaultBindAddr is the address bound when Config.BindAddr is empty.
	DefaultBindAddr = "0.0.0.0"
)

// Config configures one gossip member. Zero durations take the defaults
// above; Name and Key are required.
type Config struct {
	// Name is this node's name, unique in the cluster.
	Name string
	// BindAddr is the IP to listen on (TCP and UDP); empty means
	// DefaultBindAddr.
	BindAddr string
	// BindPort is the TCP and UDP port (7702 in the product). Zero picks a
	// free port, for tests; LocalAddr reports it.
	BindPort int
	// AdvertiseAddr is the IP other nodes reach this one at; empty means
	// BindAddr (or, for 0.0.0.0, an address of this host memberlist picks).
	AdvertiseAddr string
	// AdvertisePort is the port other nodes reach this one at; zero means
	// the bound port.
	AdvertisePort int
	// Key is the cluster's gossip key, KeySize bytes. Every packet and
	// stream is encrypted and authenticated with it (AES-GCM); there is no
	// unencrypted mode, and messages that do not decrypt are dropped.
	Key []byte
	// SigningKey and Certificate are this node's identity: every state it
	// publishes is signed with SigningKey and names Certificate (DER: the
	// certificate of SigningKey, which the cluster CA issued to this node).
	// Required: there is no unsigned mode.
	SigningKey  crypto.Signer
	Certificate []byte
	// VerifyOrigin decides whether the certificate cert (DER) may speak for
	// the node named origin, and returns its public key. A state it refuses,
	// or whose signature does not hold under that key, is dropped and
	// logged. It runs on memberlist's goroutines, so it must not block (no
	// network). Required.
	VerifyOrigin func(origin string, cert []byte) (crypto.PublicKey, error)
	// Logger receives this package's and memberlist's logs (memberlist's
	// [ERR]/[WARN] lines keep their level). Nil discards them.
	Logger *slog.Logger

	// ProbeInterval: see DefaultProbeInterval.
	ProbeInterval time.Duration
	// ProbeTimeout: see DefaultProbeTimeout. Must be below ProbeInterval.
	ProbeTimeout time.Duration
	// SuspicionMult: see DefaultSuspicionMult.
	SuspicionMult int
	// GossipInterval: see DefaultGossipInterval.
	GossipInterval time.Duration
	// PushPullInterval: see DefaultPushPullInterval.
	PushPullInterval time.Duration
	// TCPTimeout: see DefaultTCPTimeout.
	TCPTimeout time.Duration
	// ReconnectInterval: see DefaultReconnectInterval.
	ReconnectInterval time.Duration

	// OnChange, if set, is called after any member's liveness, address or
	// state changes (this node's own state included). Calls come from one
	// goroutine, one at a time, and are coalesced: many changes during a
	// slow call produce one more call, never a queue. It runs outside
	// memberlist's goroutines, so a slow OnChange delays nothing but later
	// OnChange calls; it must return for Close to return. Read the new
	// view with Members.
	OnChange func()

	// tweak, for tests only, adjusts memberlist's config last.
	tweak func(*memberlist.Config)
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.BindAddr == "" {
		c.BindAddr = DefaultBindAddr
	}
	if c.Logger == nil {
		c.Logger = logging.Discard()
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.SuspicionMult == 0 {
		c.SuspicionMult = DefaultSuspicionMult
	}
	if c.GossipInterval == 0 {
		c.GossipInterval = DefaultGossipInterval
	}
	if c.PushPullInterval == 0 {
		c.PushPullInterval = DefaultPushPullInterval
	}
	if c.TCPTimeout == 0 {
		c.TCPTimeout = DefaultTCPTimeout
	}
	if c.ReconnectInterval == 0 {
		c.ReconnectInterval = DefaultReconnectInterval
	}
	return c
}

// Validate checks c after defaults are applied (New applies them) and
// returns every problem found, each naming its field.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if err := validName(c.Name); err != nil {
		errs = append(errs, fmt.Errorf("gossip config: Name: %w", err))
	}
	if c.SigningKey == nil {
		errs = append(errs, errors.New("gossip config: SigningKey: required (states are signed)"))
	}
	if len(c.Certificate) == 0 {
		errs = append(errs, errors.New("gossip config: Certificate: required (states are signed)"))
	}
	if c.VerifyOrigin == nil {
		errs = append(errs, errors.New("gossip config: VerifyOrigin: required (states are verified)"))
	}
	if len(c.Key) != KeySize {
		errs = append(errs, fmt.Errorf("gossip config: Key: %d bytes, want %d (AES-256)", len(c.Key), KeySize))
	}
	if net.ParseIP(c.BindAddr) == nil {
		errs = append(errs, fmt.Errorf("gossip config: BindAddr %q is not an IP address", c.BindAddr))
	}
	if c.AdvertiseAddr != "" {
		if ip := net.ParseIP(c.AdvertiseAddr); ip == nil || ip.IsUnspecified() {
			errs = append(errs, fmt.Errorf("gossip config: AdvertiseAddr %q is not a usable IP address", c.AdvertiseAddr))
		}
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"BindPort", c.BindPort}, {"AdvertisePort", c.AdvertisePort}} {
		if p.v < 0 || p.v > 65535 {
			errs = append(errs, fmt.Errorf("gossip config: %s %d is out of range 0-65535", p.name, p.v))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ProbeInterval", c.ProbeInterval}, {"ProbeTimeout", c.ProbeTimeout}, {"GossipInterval", c.GossipInterval},
		{"PushPullInterval", c.PushPullInterval}, {"TCPTimeout", c.TCPTimeout},
		{"ReconnectInterval", c.ReconnectInterval},
	} {
		if d.v < time.Millisecond {
			errs = append(errs, fmt.Errorf("gossip config: %s %v is below 1ms", d.name, d.v))
		}
	}
	if c.ProbeTimeout >= c.ProbeInterval {
		errs = append(errs, fmt.Errorf("gossip config: ProbeTimeout %v must be below ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval))
	}
	if c.SuspicionMult < 1 {
		errs = append(errs, fmt.Errorf("gossip config: SuspicionMult %d must be at least 1", c.SuspicionMult))
	}
	return errors.Join(errs...)
}
