package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// InitOptions are the inputs of `newbieha init`.
type InitOptions struct {
	DataDir   string
	Name      string
	Role      fsm.Role // default gpu
	Advertise string
	Bind      string
	Ports     Ports       // zero means defaults
	Raft      RaftTimings // zero means defaults
	TokenTTL  time.Duration
	// Maintenance, when not empty, starts the cluster in maintenance
	// with this reason: no node becomes active and nobody claims the VIP
	// until `maintenance off` (a cutover from Keepalived, docs/cutover.md).
	Maintenance string
	// TokenUses is how many nodes the first token admits (0:
	// DefaultInitTokenUses, the other GPU node and the witness).
	TokenUses int
	// ClusterConfig is a cluster settings document (YAML) to store at
	// bootstrap; empty means defaults (no VIP).
	ClusterConfig []byte
	Logger        *slog.Logger
}

// DefaultInitTokenUses is how many nodes init's token admits: the second
// GPU node and the witness. `newbieha token create` makes more.
const DefaultInitTokenUses = 2

// InitResult is what init prints.
type InitResult struct {
	Token   string    `json:"token"`
	Join    string    `json:"join"`
	Expires time.Time `json:"expires"`
}

// Init creates a new cluster in opts.DataDir: the cluster CA, this node's
// certificate, the gossip key, a one-voter Raft cluster holding this node
// as its first member, and a first join token. The node config is written
// last, so a data dir with a config is always a complete one.
func Init(ctx context.Context, opts InitOptions) (InitResult, error) {
	cfg := DefaultNodeConfig()
	cfg.Name, cfg.Role, cfg.Advertise, cfg.Bind = opts.Name, opts.Role, opts.Advertise, opts.Bind
	if cfg.Role == "" {
		cfg.Role = fsm.RoleGPU
	}
	if opts.Ports != (Ports{}) {
		cfg.Ports = opts.Ports
	}
	if opts.Raft != (RaftTimings{}) {
		cfg.Raft = opts.Raft
	}
	cfg.Join = []string{cfg.APIAddr()}
	if err := cfg.Validate(); err != nil {
		return InitResult{}, err
	}
	settings, err := ParseSettings(opts.ClusterConfig)
	if err != nil {
		return InitResult{}, fmt.Errorf("cluster config: %w", err)
	}
	settingsJSON, err := json.Marshal(settings)
	if err != nil {
		return InitResult{}, err
	}
	uses := opts.TokenUses
	if uses == 0 {
		uses = DefaultInitTokenUses
	}
	if uses < 1 || uses > fsm.MaxTokenUses {
		return InitResult{}, fmt.Errorf("token uses %d must be between 1 and %d", uses, fsm.MaxTokenUses)
	}
	ttl := opts.TokenTTL
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < time.Second || ttl > MaxTokenTTL {
		return InitResult{}, fmt.Errorf("token ttl %v must be between 1s and %v", ttl, MaxTokenTTL)
	}
	logger := opts.Logger
	if logger == nil {
		logger = logging.ForCommand(os.Stderr)
	}
	if err := prepareDataDir(opts.DataDir); err != nil {
		return InitResult{}, err
	}
	ip, _ := netip.ParseAddr(cfg.Advertise)
	ca, err := pki.NewCA(cfg.Name)
	if err != nil {
		return InitResult{}, err
	}
	key, err := pki.NewKey()
	if err != nil {
		return InitResult{}, err
	}
	cert, err := ca.Issue(pki.NodeIdentity{Name: cfg.Name, Role: string(cfg.Role), IP: ip}, &key.PublicKey)
	if err != nil {
		return InitResult{}, err
	}
	bundle := &pki.Bundle{CA: ca, NodeCert: cert, NodeKey: key}
	if err := pki.WriteBundle(filepath.Join(opts.DataDir, tlsDirName), bundle); err != nil {
		return InitResult{}, err
	}
	gk := make([]byte, 32)
	if _, err := rand.Read(gk); err != nil {
		return InitResult{}, fmt.Errorf("random gossip key: %w", err)
	}
	if err := writeGossipKey(opts.DataDir, gk); err != nil {
		return InitResult{}, err
	}

	node, _, err := openRaft(opts.DataDir, cfg, bundle, logger, slog.LevelError, true)
	if err != nil {
		return InitResult{}, err
	}
	defer node.close()
	if err := waitLeader(ctx, node.raft, 30*time.Second); err != nil {
		return InitResult{}, err
	}
	now := time.Now().UTC()
	tok, err := pki.NewToken(pki.Hash(ca.Cert))
	if err != nil {
		return InitResult{}, err
	}
	cmds := []fsm.Command{
		fsm.UpsertMember{Member: fsm.Member{Name: cfg.Name, Role: cfg.Role, RaftAddr: cfg.RaftAddr(), APIAddr: cfg.APIAddr(), GossipAddr: cfg.GossipAddr(), JoinedAt: now,
			Certs: []fsm.MemberCert{{Serial: pki.Serial(cert), Expires: cert.NotAfter.UTC()}}}},
		fsm.CreateToken{Token: fsm.Token{ID: tok.ID, SecretHash: tok.SecretHash(), CreatedAt: now, Expires: now.Add(ttl), Role: fsm.RoleGPU, UsesAllowed: uses}},
		fsm.SetSettings{Settings: settingsJSON},
	}
	if opts.Maintenance != "" {
		// Before any agent runs: the first leader's controller finds it
		// on and names no active node.
		cmds = append(cmds, fsm.SetMaintenance{On: true, Time: now, Reason: opts.Maintenance, By: "root@" + cfg.Name})
	}
	for _, c := range cmds {
		data, err := fsm.Encode(c)
		if err != nil {
			return InitResult{}, err
		}
		f := node.raft.Apply(data, 10*time.Second)
		if err := f.Error(); err != nil {
			return InitResult{}, fmt.Errorf("commit %T: %w", c, err)
		}
		if res, _ := f.Response().(fsm.Result); res.Err != nil {
			return InitResult{}, fmt.Errorf("commit %T: %w", c, res.Err)
		}
	}
	if err := node.close(); err != nil {
		return InitResult{}, err
	}
	if err := WriteNodeConfig(filepath.Join(opts.DataDir, ConfigFileName), cfg); err != nil {
		return InitResult{}, err
	}
	return InitResult{Token: tok.String(), Join: JoinCommand(cfg.APIAddr(), tok.String()), Expires: now.Add(ttl)}, nil
}

// JoinCommand is the command line an operator runs on a new node.
func JoinCommand(apiAddr, token string) string {
	return fmt.Sprintf("newbieha join %s --token %s --name NAME --role gpu|witness --advertise IP", apiAddr, token)
}

// waitLeader waits until r is leader.
func waitLeader(ctx context.Context, r *raft.Raft, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		if r.State() == raft.Leader {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return errors.New("raft did not become leader in time")
		case <-r.LeaderCh():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// prepareDataDir creates dataDir 0700 and refuses one that already holds a
// node config.
func prepareDataDir(dataDir string) error {
	if dataDir == "" {
		return errors.New("data dir is required")
	}
	if _, err := os.Stat(filepath.Join(dataDir, ConfigFileName)); err == nil {
		return fmt.Errorf("%w: %s (remove the data dir to start over)", ErrAlreadyInitialized, filepath.Join(dataDir, ConfigFileName))
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir %s: %w", dataDir, err)
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return fmt.Errorf("chmod data dir %s: %w", dataDir, err)
	}
	return nil
}

// apiAddrWithDefaultPort accepts "ip" or "ip:port".
func apiAddrWithDefaultPort(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, DefaultAPIPort).String(), nil
	}
	if h, p, err := net.SplitHostPort(s); err == nil {
		if _, err := strconv.Atoi(p); err == nil && h != "" {
			return s, nil
		}
	}
	return "", fmt.Errorf("join address %q: want IP or IP:PORT of a member's API", s)
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func encodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

func decodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(k) != 32 {
		return nil, errors.New("want base64 of 32 bytes")
	}
	return k, nil
}
