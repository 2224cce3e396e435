package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// ConfigFileName is the node config's name inside the data dir.
const ConfigFileName = "newbieha.yaml"

// Default ports.
const (
	DefaultAPIPort    = 7700
	DefaultRaftPort   = 7701
	DefaultGossipPort = 7702
)

// DefaultDataDir is where an agent keeps its state unless told otherwise.
const DefaultDataDir = "/var/lib/newbieha"

// Ports are the TCP/UDP ports an agent listens on.
type Ports struct {
	API    int `yaml:"api"`
	Raft   int `yaml:"raft"`
	Gossip int `yaml:"gossip"`
}

// RaftTimings are the Raft timeouts of this node. See docs/timings.md for
// which timeout bounds what.
type RaftTimings struct {
	HeartbeatTimeout   time.Duration `yaml:"heartbeat_timeout"`
	ElectionTimeout    time.Duration `yaml:"election_timeout"`
	LeaderLeaseTimeout time.Duration `yaml:"leader_lease_timeout"`
	CommitTimeout      time.Duration `yaml:"commit_timeout"`
}

// DefaultRaftTimings are tuned for a LAN (NOTES.md: a new leader about
// 0.34 s after the old one stops with 200/200/100 ms; these are 1.5x that
// for margin on a loaded host). docs/timings.md: they bound detection only.
// CommitTimeout is how often an idle leader sends AppendEntries besides
// its heartbeats; hashicorp/raft's 50 ms cost 20 RPCs a second per
// follower for nothing, since the entries that must reach followers at
// once (moves) are followed by a barrier.
func DefaultRaftTimings() RaftTimings {
	return RaftTimings{
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		CommitTimeout:      500 * time.Millisecond,
	}
}

// NodeConfig is one agent's own settings: who it is and where it listens.
// Cluster-wide settings live in the replicated state instead.
type NodeConfig struct {
	Name      string   `yaml:"name"`
	Role      fsm.Role `yaml:"role"`
	Advertise string   `yaml:"advertise"`
	Bind      string   `yaml:"bind,omitempty"`
	Ports     Ports    `yaml:"ports"`
	Join      []string `yaml:"join,omitempty"`
	// VIPInterface is where this node puts the VIP; empty means the
	// interface that holds the advertised address (cmd fills it in).
	VIPInterface string      `yaml:"vip_interface,omitempty"`
	Raft         RaftTimings `yaml:"raft"`
	LogLevel     string      `yaml:"log_level,omitempty"`
	// LogFormat is text (key=value, the default) or json (one object
	// a line).
	LogFormat string `yaml:"log_format,omitempty"`
	// MetricsAddr, when set, serves Prometheus metrics over plain HTTP
	// (e.g. 127.0.0.1:7703). They are also at /v1/metrics on the API.
	MetricsAddr string `yaml:"metrics_addr,omitempty"`
	// Web serves the read-only status page at / on MetricsAddr
	// (docs/web.md); off by default.
	Web bool `yaml:"web,omitempty"`
	// WebOperatorCert serves MetricsAddr over TLS (the node certificate)
	// and lets only operator certificates see the page; /metrics stays
	// open to any client.
	WebOperatorCert bool `yaml:"web_operator_cert,omitempty"`
}

// DefaultNodeConfig returns a config with every default filled in.
func DefaultNodeConfig() NodeConfig {
	return NodeConfig{
		Ports:    Ports{API: DefaultAPIPort, Raft: DefaultRaftPort, Gossip: DefaultGossipPort},
		Raft:     DefaultRaftTimings(),
		LogLevel: "info",
	}
}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidateName checks a node name.
func ValidateName(name string) error {
	if !nameRe.MatchString(name) {
		return fmt.Errorf("name %q: want 1-63 lowercase letters, digits or '-', starting with a letter or digit", name)
	}
	return nil
}

// Validate checks every field and names the key of the first one wrong.
func (c NodeConfig) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("key \"name\": missing"))
	} else if err := ValidateName(c.Name); err != nil {
		errs = append(errs, fmt.Errorf("key \"name\": %w", err))
	}
	if !c.Role.Valid() {
		errs = append(errs, fmt.Errorf("key \"role\": %q is not gpu or witness", c.Role))
	}
	if c.Advertise == "" {
		errs = append(errs, errors.New("key \"advertise\": missing"))
	} else if a, err := netip.ParseAddr(c.Advertise); err != nil || a.IsUnspecified() {
		errs = append(errs, fmt.Errorf("key \"advertise\": %q is not a usable IP address", c.Advertise))
	}
	if c.Bind != "" {
		if _, err := netip.ParseAddr(c.Bind); err != nil {
			errs = append(errs, fmt.Errorf("key \"bind\": %q is not an IP address", c.Bind))
		}
	}
	for key, p := range map[string]int{"ports.api": c.Ports.API, "ports.raft": c.Ports.Raft, "ports.gossip": c.Ports.Gossip} {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("key %q: %d is not a port (1-65535)", key, p))
		}
	}
	if c.Ports.API == c.Ports.Raft || c.Ports.API == c.Ports.Gossip || c.Ports.Raft == c.Ports.Gossip {
		errs = append(errs, fmt.Errorf("key \"ports\": api, raft and gossip must differ (%d, %d, %d)", c.Ports.API, c.Ports.Raft, c.Ports.Gossip))
	}
	for i, j := range c.Join {
		if _, err := netip.ParseAddrPort(j); err != nil {
			errs = append(errs, fmt.Errorf("key \"join[%d]\": %q is not ip:port", i, j))
		}
	}
	if c.MetricsAddr != "" {
		if _, err := netip.ParseAddrPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("key \"metrics_addr\": %q is not ip:port", c.MetricsAddr))
		}
	}
	if c.Web && c.MetricsAddr == "" {
		errs = append(errs, errors.New("key \"web\": the page is served on metrics_addr, which is not set"))
	}
	if c.WebOperatorCert && !c.Web {
		errs = append(errs, errors.New("key \"web_operator_cert\": set web: true too (there is no page to protect)"))
	}
	if err := c.Raft.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := logging.ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("key \"log_level\": %w", err))
	}
	if !logging.ValidFormat(c.LogFormat) {
		errs = append(errs, fmt.Errorf("key \"log_format\": %q is not text or json", c.LogFormat))
	}
	return errors.Join(errs...)
}

// Validate checks the Raft timings against hashicorp/raft's own rules.
func (t RaftTimings) Validate() error {
	min := 5 * time.Millisecond
	for key, d := range map[string]time.Duration{
		"raft.heartbeat_timeout": t.HeartbeatTimeout, "raft.election_timeout": t.ElectionTimeout,
		"raft.leader_lease_timeout": t.LeaderLeaseTimeout, "raft.commit_timeout": t.CommitTimeout,
	} {
		if d < min {
			return fmt.Errorf("key %q: %v is below the minimum %v", key, d, min)
		}
	}
	if t.LeaderLeaseTimeout > t.HeartbeatTimeout {
		return fmt.Errorf("key \"raft.leader_lease_timeout\": %v must not exceed raft.heartbeat_timeout %v", t.LeaderLeaseTimeout, t.HeartbeatTimeout)
	}
	if t.HeartbeatTimeout > t.ElectionTimeout {
		return fmt.Errorf("key \"raft.heartbeat_timeout\": %v must not exceed raft.election_timeout %v", t.HeartbeatTimeout, t.ElectionTimeout)
	}
	return nil
}

// BindAddr is the address listeners bind to.
func (c NodeConfig) BindAddr() string {
	if c.Bind != "" {
		return c.Bind
	}
	return c.Advertise
}

// RaftAddr is the advertised Raft address.
func (c NodeConfig) RaftAddr() string { return hostPort(c.Advertise, c.Ports.Raft) }

// APIAddr is the advertised API address.
func (c NodeConfig) APIAddr() string { return hostPort(c.Advertise, c.Ports.API) }

// GossipAddr is the advertised gossip address.
func (c NodeConfig) GossipAddr() string { return hostPort(c.Advertise, c.Ports.Gossip) }

func hostPort(ip string, port int) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip + ":" + strconv.Itoa(port)
	}
	return netip.AddrPortFrom(a, uint16(port)).String()
}

// LoadNodeConfig reads and validates a node config file strictly: an
// unknown key, a value of the wrong type, a bad address or a missing value
// is an error that names the key and the file.
func LoadNodeConfig(path string) (NodeConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return NodeConfig{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseNodeConfig(data)
	if err != nil {
		return NodeConfig{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseNodeConfig parses and validates a node config document.
func ParseNodeConfig(data []byte) (NodeConfig, error) {
	cfg := DefaultNodeConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return NodeConfig{}, describeYAMLError(data, err)
	}
	if err := cfg.Validate(); err != nil {
		return NodeConfig{}, err
	}
	return cfg, nil
}

// WriteNodeConfig writes cfg to path (0600) atomically.
func WriteNodeConfig(path string, cfg NodeConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	header := []byte("# newbieha node config, written by init/join. Strict: unknown keys are errors.\n")
	return pki.WriteFileAtomic(path, append(header, out...), 0o600)
}

var (
	yamlLineRe    = regexp.MustCompile(`line (\d+): `)
	yamlUnknownRe = regexp.MustCompile(`field (\S+) not found in type \S+`)
)

// describeYAMLError turns yaml.v3's messages into ones that name the key
// by its dotted path.
func describeYAMLError(data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		if errors.Is(err, io.EOF) {
			return errors.New("empty config: keys \"name\", \"role\" and \"advertise\" are required")
		}
		return fmt.Errorf("not valid YAML: %w", err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root)
	keys := map[int][]keyAt{}
	collectKeyLines(&root, "", keys)
	var errs []error
	for _, msg := range te.Errors {
		if m := yamlUnknownRe.FindStringSubmatch(msg); m != nil {
			msg = strings.Replace(msg, m[0], fmt.Sprintf("unknown key %q", m[1]), 1)
		}
		if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			if p, ok := keyOnLine(keys[line], msg); ok {
				msg = strings.Replace(msg, m[0], fmt.Sprintf("line %d: key %q: ", line, p), 1)
			}
		}
		errs = append(errs, errors.New(msg))
	}
	return errors.Join(errs...)
}

// keyAt is a key found on a line, with its scalar value.
type keyAt struct{ path, value string }

// keyOnLine picks the key a yaml error message is about: the only key on
// its line, or (flow style, several keys on one line) the one whose value
// the message quotes.
func keyOnLine(keys []keyAt, msg string) (string, bool) {
	if len(keys) == 1 {
		return keys[0].path, true
	}
	for _, k := range keys {
		if k.value != "" && strings.Contains(msg, "`"+k.value+"`") {
			return k.path, true
		}
	}
	return "", false
}

// collectKeyLines records, for each line, the keys on it by dotted path.
func collectKeyLines(n *yaml.Node, prefix string, out map[int][]keyAt) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			collectKeyLines(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			out[k.Line] = append(out[k.Line], keyAt{path: p, value: v.Value})
			collectKeyLines(v, p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			if c.Kind == yaml.ScalarNode && c.Line != n.Line {
				out[c.Line] = append(out[c.Line], keyAt{path: p, value: c.Value})
			}
			collectKeyLines(c, p, out)
		}
	}
}

// NewLogger is the agent's logger as this config asks (log_level,
// log_format), on w, every line naming the node (agent=NAME). A config that did not
// pass Validate gets info and text.
func (c NodeConfig) NewLogger(w io.Writer) *slog.Logger {
	level, err := logging.ParseLevel(c.LogLevel)
	if err != nil {
		level = slog.LevelInfo
	}
	format := c.LogFormat
	if !logging.ValidFormat(format) {
		format = "text"
	}
	l, _ := logging.New(logging.Options{Format: format, Level: level, Output: w})
	return l.With("agent", c.Name)
}
