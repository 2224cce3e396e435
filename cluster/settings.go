package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/newbieha/newbieha/cluster/lease"
)

// Settings are the cluster-wide settings, replicated through Raft:
// `newbieha init --cluster-config FILE` stores the first version and
// `newbieha config apply FILE` later ones. Per-node things (the VIP's
// interface) stay in the node config.
type Settings struct {
	VIP     VIPSettings     `yaml:"vip" json:"vip"`
	Service ServiceSettings `yaml:"service" json:"service"`
	// Checks are the health checks every GPU node runs on itself. Their
	// schema belongs to the health package: the agent passes them on
	// as they are, and Config.ValidateSettings checks them.
	Checks   []any            `yaml:"checks" json:"checks,omitempty"`
	Failover FailoverSettings `yaml:"failover" json:"failover"`
	Timings  Timings          `yaml:"timings" json:"timings"`
	// Hooks run on transitions (settings_hooks.go, docs/hooks.md).
	Hooks []HookSettings `yaml:"hooks,omitempty" json:"hooks,omitempty"`
}

// FailoverSettings say when the cluster moves the active role by itself.
type FailoverSettings struct {
	// HoldDown is how long after a change of active node no health-driven
	// move happens (against flapping).
	HoldDown Duration `yaml:"hold_down" json:"hold_down"`
	// Preempt moves the active role back to Preferred by itself once that
	// node is healthy again (and the hold-down has passed). Off by
	// default: a recovered node does not take the role back.
	Preempt bool `yaml:"preempt" json:"preempt"`
	// Preferred is the GPU node that should be active when it is healthy
	// (used only with Preempt).
	Preferred string `yaml:"preferred" json:"preferred,omitempty"`
	// StopHandover bounds how long an active agent that is told to stop
	// (SIGTERM) waits for a planned failover to a healthy standby before
	// it releases and exits. Zero: release at once.
	StopHandover Duration `yaml:"stop_handover" json:"stop_handover"`
}

// VIPSettings say which address clients use and how it is announced.
type VIPSettings struct {
	// Address is the VIP with its prefix length, e.g. 10.0.0.100/24. Empty
	// means no VIP: the cluster only names the active node.
	Address string `yaml:"address" json:"address"`
	// GARPRepeat is how many gratuitous ARPs a claim sends
	// (Keepalived: garp_master_repeat).
	GARPRepeat int `yaml:"garp_repeat" json:"garp_repeat"`
	// GARPInterval is the pause between them (garp_interval).
	GARPInterval Duration `yaml:"garp_interval" json:"garp_interval"`
	// GARPRefresh, when set, re-announces the VIP this often while held
	// (garp_master_refresh); zero turns it off.
	GARPRefresh Duration `yaml:"garp_refresh" json:"garp_refresh"`
	// ConflictProbeInterval is how often GPU nodes ask by ARP who answers
	// for the VIP (0 turns conflict detection off).
	ConflictProbeInterval Duration `yaml:"conflict_probe_interval" json:"conflict_probe_interval"`
}

// ServiceSettings describe the service the active node answers for.
type ServiceSettings struct {
	// HealthURL, when set, is probed on each GPU node (its own service) as
	// a required http check named "service", in addition to Checks.
	HealthURL string `yaml:"health_url" json:"health_url"`
	// Runtime is who runs the container: "none" (something else: systemd,
	// an existing compose stack; newbieha only checks it and moves the
	// VIP) or "docker" (newbieha runs it through the Docker Engine API).
	Runtime string `yaml:"runtime" json:"runtime"`
	// Standby is "hot" (the container runs on both GPU nodes; only the VIP
	// moves) or "cold" (only on the active node).
	Standby string `yaml:"standby" json:"standby"`
	// ComposeFile and ComposeService import the container spec from an
	// existing docker-compose.yml (runtime docker).
	ComposeFile    string `yaml:"compose_file" json:"compose_file,omitempty"`
	ComposeService string `yaml:"compose_service" json:"compose_service,omitempty"`
	// Container is the container spec (runtime docker), when it does not
	// come from a compose file. Its schema belongs to the runtime package.
	Container map[string]any `yaml:"container" json:"container,omitempty"`
}

// Timings of the holder lease. docs/timings.md gives the argument that they
// make two holders impossible, and which setting bounds which time.
type Timings struct {
	// LeaseDuration (L) is the lease the holder asks the voters for; its
	// fence deadline is the instant it sent the round plus L.
	LeaseDuration Duration `yaml:"lease_duration" json:"lease_duration"`
	// LeaseDrift (ε) is what each voter adds to the grants it measures, to
	// cover the difference in clock rates between two hosts.
	LeaseDrift Duration `yaml:"lease_drift" json:"lease_drift"`
	// LeaseRenewInterval (R) is how often the holder renews its lease.
	LeaseRenewInterval Duration `yaml:"lease_renew_interval" json:"lease_renew_interval"`
	// LeaseRetryInterval is how often a node named active asks again while
	// it has no lease yet (an older grant is running out).
	LeaseRetryInterval Duration `yaml:"lease_retry_interval" json:"lease_retry_interval"`
	// VIPLifetime is the kernel lifetime (valid_lft) of the address: only a
	// backstop that removes a dead holder's address; the fence is what
	// stops it answering. Whole seconds, longer than the lease.
	VIPLifetime Duration `yaml:"vip_lifetime" json:"vip_lifetime"`
	// RaftHeartbeatTimeout and RaftElectionTimeout, when set, replace the
	// nodes' own values at run time (raft reloads them). They bound how
	// fast a dead leader is noticed, not safety. Zero keeps each node's.
	RaftHeartbeatTimeout Duration `yaml:"raft_heartbeat_timeout" json:"raft_heartbeat_timeout,omitempty"`
	RaftElectionTimeout  Duration `yaml:"raft_election_timeout" json:"raft_election_timeout,omitempty"`
}

// DefaultSettings returns settings with every default filled in.
func DefaultSettings() Settings {
	p := lease.DefaultParams()
	return Settings{
		VIP:      VIPSettings{GARPRepeat: 5, GARPInterval: Duration(200 * time.Millisecond), ConflictProbeInterval: Duration(2 * time.Second)},
		Service:  ServiceSettings{Runtime: "none", Standby: "hot"},
		Failover: FailoverSettings{HoldDown: Duration(30 * time.Second), StopHandover: Duration(5 * time.Second)},
		Timings: Timings{
			LeaseDuration:      Duration(p.Duration),
			LeaseDrift:         Duration(p.Drift),
			LeaseRenewInterval: Duration(p.Renew),
			LeaseRetryInterval: Duration(p.Retry),
			VIPLifetime:        Duration(2 * time.Second),
		},
	}
}

// Lease returns the lease parameters of the timings.
func (t Timings) Lease() lease.Params {
	return lease.Params{Duration: time.Duration(t.LeaseDuration), Drift: time.Duration(t.LeaseDrift),
		Renew: time.Duration(t.LeaseRenewInterval), Retry: time.Duration(t.LeaseRetryInterval)}
}

// VIPPrefix parses the VIP address; ok is false when no VIP is set.
func (s Settings) VIPPrefix() (p netip.Prefix, ok bool) {
	if s.VIP.Address == "" {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s.VIP.Address)
	return p, err == nil
}

// Validate checks every field, and the timings against each other, naming
// the key and saying why a combination is refused.
func (s Settings) Validate() error {
	var errs []error
	if s.VIP.Address != "" {
		p, err := netip.ParsePrefix(s.VIP.Address)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("key \"vip.address\": %q is not ADDRESS/PREFIX (e.g. 10.0.0.100/24)", s.VIP.Address))
		case p.Addr().IsUnspecified() || p.Addr().IsLoopback() || p.Addr().IsMulticast():
			errs = append(errs, fmt.Errorf("key \"vip.address\": %s cannot be a VIP", p.Addr()))
		case p.Addr().Is4() && p.Bits() < 8:
			errs = append(errs, fmt.Errorf("key \"vip.address\": prefix /%d is too short", p.Bits()))
		}
	}
	if s.VIP.GARPRepeat < 1 || s.VIP.GARPRepeat > 100 {
		errs = append(errs, fmt.Errorf("key \"vip.garp_repeat\": %d must be 1-100", s.VIP.GARPRepeat))
	}
	if d := time.Duration(s.VIP.GARPInterval); d < 10*time.Millisecond || d > 10*time.Second {
		errs = append(errs, fmt.Errorf("key \"vip.garp_interval\": %v must be 10ms-10s", d))
	}
	if d := time.Duration(s.VIP.ConflictProbeInterval); d != 0 && (d < 200*time.Millisecond || d > time.Hour) {
		errs = append(errs, fmt.Errorf("key \"vip.conflict_probe_interval\": %v must be 0 (off) or 200ms-1h", d))
	}
	if d := time.Duration(s.VIP.GARPRefresh); d != 0 && d < time.Second {
		errs = append(errs, fmt.Errorf("key \"vip.garp_refresh\": %v must be 0 (off) or at least 1s", d))
	}
	if s.Service.HealthURL != "" {
		u, err := url.Parse(s.Service.HealthURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("key \"service.health_url\": %q is not an http(s) URL", s.Service.HealthURL))
		}
	}
	switch s.Service.Runtime {
	case "none":
		if s.Service.ComposeFile != "" || len(s.Service.Container) > 0 {
			errs = append(errs, errors.New("key \"service.runtime\": \"none\" runs no container; remove service.compose_file and service.container or set runtime: docker"))
		}
	case "docker":
		if (s.Service.ComposeFile == "") == (len(s.Service.Container) == 0) {
			errs = append(errs, errors.New("key \"service\": runtime docker needs exactly one of compose_file (with compose_service) or container"))
		}
		if s.Service.ComposeFile != "" && s.Service.ComposeService == "" {
			errs = append(errs, errors.New("key \"service.compose_service\": required with compose_file"))
		}
	default:
		errs = append(errs, fmt.Errorf("key \"service.runtime\": %q is not none or docker", s.Service.Runtime))
	}
	if s.Service.Standby != "hot" && s.Service.Standby != "cold" {
		errs = append(errs, fmt.Errorf("key \"service.standby\": %q is not hot or cold", s.Service.Standby))
	}
	if s.Failover.Preempt && s.Failover.Preferred == "" {
		errs = append(errs, errors.New("key \"failover.preferred\": required when failover.preempt is on"))
	}
	if s.Failover.Preferred != "" {
		if err := ValidateName(s.Failover.Preferred); err != nil {
			errs = append(errs, fmt.Errorf("key \"failover.preferred\": %w", err))
		}
	}
	if d := time.Duration(s.Failover.StopHandover); d < 0 || d > 5*time.Minute {
		errs = append(errs, fmt.Errorf("key \"failover.stop_handover\": %v must be 0-5m", d))
	}
	if d := time.Duration(s.Failover.HoldDown); d < 0 || d > 24*time.Hour {
		errs = append(errs, fmt.Errorf("key \"failover.hold_down\": %v must be 0-24h", d))
	}
	if err := s.Timings.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := s.validateBounds(); err != nil { // settings_bounds.go
		errs = append(errs, err)
	}
	if err := s.validateHooks(); err != nil { // settings_hooks.go
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Validate checks the lease timings against each other.
func (t Timings) Validate() error {
	if err := t.Lease().Validate(); err != nil {
		var pe *lease.ParamError
		if errors.As(err, &pe) {
			return fmt.Errorf("key \"timings.%s\": %s", pe.Field, pe.Msg)
		}
		return err
	}
	life := time.Duration(t.VIPLifetime)
	switch {
	case life < time.Second || life%time.Second != 0:
		return fmt.Errorf("key \"timings.vip_lifetime\": %v must be whole seconds, at least 1s (the kernel counts valid_lft in seconds)", life)
	case life > time.Minute:
		return fmt.Errorf("key \"timings.vip_lifetime\": %v is over 1m: a crashed holder's address would stay that long", life)
	case life < time.Duration(t.LeaseDuration)+time.Second/2:
		return fmt.Errorf("key \"timings.vip_lifetime\": %v must exceed lease_duration %v by at least 500ms, or the address could expire between two renewals while the fence is open", life, time.Duration(t.LeaseDuration))
	}
	hb, el := time.Duration(t.RaftHeartbeatTimeout), time.Duration(t.RaftElectionTimeout)
	switch {
	case (hb == 0) != (el == 0):
		return errors.New("key \"timings.raft_heartbeat_timeout\": set it together with raft_election_timeout, or neither")
	case hb == 0:
	case hb < 10*time.Millisecond:
		return fmt.Errorf("key \"timings.raft_heartbeat_timeout\": %v is below 10ms", hb)
	case hb > el:
		return fmt.Errorf("key \"timings.raft_heartbeat_timeout\": %v must not exceed raft_election_timeout %v (raft refuses it)", hb, el)
	case el > time.Minute:
		return fmt.Errorf("key \"timings.raft_election_timeout\": %v is over 1m", el)
	}
	return nil
}

// ParseSettings reads a settings document strictly (unknown keys and bad
// values are errors naming the key) on top of the defaults.
func ParseSettings(data []byte) (Settings, error) {
	s := DefaultSettings()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty document means "all defaults".
	if err := dec.Decode(&s); err != nil && !errors.Is(err, io.EOF) {
		return Settings{}, describeYAMLError(data, err)
	}
	if err := s.Validate(); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// YAML renders settings for `config show`.
func (s Settings) YAML() ([]byte, error) { return yaml.Marshal(s) }

// decodeSettings reads the replicated JSON form; empty means defaults.
func decodeSettings(raw json.RawMessage) (Settings, error) {
	s := DefaultSettings()
	if len(raw) == 0 || string(raw) == "null" {
		return s, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return Settings{}, fmt.Errorf("replicated settings: %w", err)
	}
	return s, nil
}

// UnmarshalYAML reads a duration such as "250ms".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as \"250ms\"", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: cannot unmarshal `%s` into a duration (want e.g. \"250ms\")", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
