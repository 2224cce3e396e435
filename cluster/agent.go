package cluster

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/newbieha/newbieha/cluster/gossip"
	"github.com/newbieha/newbieha/cluster/hooks"
	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// File and directory names inside a data dir.
const (
	tlsDirName    = "tls"
	gossipKeyFile = "gossip.key"
	socketName    = "newbieha.sock"
)

// SocketPath is the local API socket of the agent using dataDir.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, socketName) }

// Config is what an agent needs to run.
type Config struct {
	// DataDir holds the node's config, TLS material, Raft data and socket.
	DataDir string
	// Node is this node's own config (usually DataDir/newbieha.yaml).
	Node NodeConfig
	// Logger receives all logs; nil means Node.NewLogger on stderr.
	Logger *slog.Logger
	// ApplyTimeout bounds one Raft apply or membership change (default 5s).
	ApplyTimeout time.Duration
	// PeerTimeout bounds one call to another member (default 2s).
	PeerTimeout time.Duration
	// AdmitRetry is the pause between attempts of a fresh node to be made a
	// voter (default 500ms).
	AdmitRetry time.Duration
	// Version is the agent's release, reported in status.
	Version string
	// Revision is the git commit it was built from (newbieha_build_info).
	Revision string
	// RenewCheck is how often the agent looks at its node certificate's
	// expiry (default 1h); RenewBefore is how long before expiry it renews
	// it through a GPU member (default a third of pki.NodeValidity, 10
	// days). See renew.go.
	RenewCheck, RenewBefore time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Clock reads the monotonic clock every lease time is measured on;
	// nil means CLOCK_BOOTTIME, the clock of the kernel fence.
	Clock func() time.Duration
	// NewVIP builds this node's VIP actuator from the replicated settings;
	// nil means this agent never touches a VIP (tests, a witness).
	NewVIP VIPFactory
	// Health reports this node's own service health; nil means healthy.
	Health HealthReporter
	// ValidateSettings checks the parts of the cluster settings whose
	// schema belongs to other packages (checks, container spec) before a
	// change is committed; nil accepts them.
	ValidateSettings func(Settings) error
	// OnSettings is called with the replicated settings whenever they
	// change (and once at start), so cmd can reconfigure health checks and
	// the workload. It runs on its own goroutine, one call at a time;
	// when it is slow, intermediate versions are skipped.
	OnSettings func(Settings)
	// Workload is told whether this node is active, on every step.
	Workload Workload
	// Drill forces a check result on this node until a time (drills).
	Drill func(check string, passing bool, until time.Time) error
	// Partition drops this host's IP traffic to and from the given peer
	// addresses until a time, by rules the kernel expires by itself
	// (drills); a zero until removes them at once. With check it only
	// checks that the rules would load. nil: no partition can be drilled
	// on this node.
	Partition func(peers []string, until time.Time, check bool) error
	// ServiceFault takes this node's service out of service for a drill
	// until a time (fault ServiceFaultStop, ServiceFaultPause or
	// ServiceFaultErrors, status for the last); a zero until puts it back
	// at once. Each ends by itself at until. nil: this node runs no
	// service to drill.
	ServiceFault func(ctx context.Context, fault string, status int, until time.Time) error
	// Crash ends this agent at once without any cleanup, as a crash does
	// (drill agent-crash); it does not return. nil: no crash can be
	// drilled on this node.
	Crash func()
	// BeforeStart, when set, runs once the data dir is locked (the Raft
	// store is open) and before anything serves or touches the VIP: cmd
	// removes any VIP and fence this node left from before. An error stops
	// the start.
	BeforeStart func() error
	// Web is the status page (package web), served at / on the metrics
	// address when the node config has web: true.
	Web http.Handler
	// ProbeVIP asks by ARP on iface who answers for ip; a node without a
	// VIP actuator (the witness) uses it to watch for conflicts when it
	// shares the VIP's segment. nil turns that off.
	ProbeVIP func(ctx context.Context, iface string, ip netip.Addr, timeout time.Duration) ([]net.HardwareAddr, error)
	// HookRunner and HookDoer, when set, replace the command runner and
	// the HTTP client of the transition hooks (docs/hooks.md); nil means
	// the real ones. The API fuzzers set inert ones, so that no fuzzed
	// settings run a command.
	HookRunner hooks.Runner
	HookDoer   hooks.Doer
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = c.Node.NewLogger(os.Stderr)
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = 5 * time.Second
	}
	if c.PeerTimeout == 0 {
		c.PeerTimeout = 2 * time.Second
	}
	if c.RenewCheck == 0 {
		c.RenewCheck = time.Hour
	}
	if c.RenewBefore == 0 {
		c.RenewBefore = pki.NodeValidity / 3
	}
	if c.AdmitRetry == 0 {
		c.AdmitRetry = 500 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) clock() func() time.Duration {
	if c.Clock != nil {
		return c.Clock
	}
	return bootClock
}

// Validate checks the config.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("agent config: data dir is required")
	}
	return c.Node.Validate()
}

// Agent is one running newbieha node: Raft, the FSM and the API.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	bundle    *pki.Bundle
	gossipKey []byte
	node      *raftNode
	peers     *http.Client
	// peerTransport is peers' connection pool, replaced by a fresh one
	// when the node certificate is renewed (renew.go).
	peerTransport *peerTransport
	root          rootCert // root@NODE's operator certificate (operatorcert.go)
	ctl           *controller
	lease         *leaseRunner
	hooks         *hookSource // hookwire.go
	gossip        *gossip.Gossip

	votersMu sync.Mutex
	voters   []string
	votersAt time.Time

	gossipMu      sync.Mutex
	gossipDecoded map[string]gossipMember // by name, as of its UpdatedAt

	settingsMu  sync.Mutex
	settingsRaw string
	settingsVal Settings

	leaseDone chan struct{} // closed when the lease runner has released and stopped

	remoteSrv  *http.Server
	localSrv   *http.Server
	metricsSrv *http.Server

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Start opens the node in cfg.DataDir and starts serving. A node whose
// Raft stores are empty (it has just joined, or was wiped and joined again)
// asks the members it knows to make it a voter, and keeps asking until one
// does or the agent is closed.
func Start(cfg Config) (_ *Agent, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkPermissions(cfg.DataDir); err != nil { // security (perms.go): no key open to other users
		return nil, err
	}
	bundle, err := pki.LoadBundle(filepath.Join(cfg.DataDir, tlsDirName))
	if err != nil {
		return nil, fmt.Errorf("load tls material (run init or join first): %w", err)
	}
	gk, err := readGossipKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, bundle: bundle, gossipKey: gk}
	a.ctx, a.cancel = context.WithCancel(withBeats(context.Background(), time.Now))
	a.peerTransport = newPeerTransport(bundle)
	a.peers = &http.Client{Timeout: cfg.PeerTimeout, Transport: a.peerTransport}

	node, hadState, err := openRaft(cfg.DataDir, cfg.Node, bundle, a.log, logging.LevelTrace, false)
	if err != nil {
		return nil, err
	}
	a.node = node
	defer func() {
		if err != nil {
			a.cancel()
			_ = node.close()
		}
	}()
	if cfg.BeforeStart != nil {
		if err := cfg.BeforeStart(); err != nil {
			return nil, fmt.Errorf("clean up before start: %w", err)
		}
	}

	a.lease = newLeaseRunner(cfg.Node.Name, cfg.Node.Role == fsm.RoleGPU, logging.Named(a.log, "lease"), cfg.clock(), agentLeaseEnv{a}, cfg.NewVIP)
	a.hooks = newHookSource(hookDeps{name: cfg.Node.Name, gpu: cfg.Node.Role == fsm.RoleGPU, log: logging.Named(a.log, "hooks"),
		now: cfg.Now, fsm: node.fsm, raft: node.raft, settings: a.settings, runner: cfg.HookRunner, doer: cfg.HookDoer})
	a.lease.onHold = a.hooks.hold
	a.ctl = newController(ctlDeps{
		name: cfg.Node.Name, role: cfg.Node.Role, log: a.log, now: cfg.Now,
		fsm: node.fsm, raft: node.raft, raftTimings: cfg.Node.Raft, applyTimeout: cfg.ApplyTimeout,
		settings: a.settings, ownHealth: a.ownHealth, peerHealth: a.gossipHealth,
		voters: a.voterNames, ownReport: a.lease.report, otherReports: a.otherReports,
		commit: a.applyAndSpread, workload: cfg.Workload, onSettings: cfg.OnSettings,
		vip: a.lease.currentVIP, probeVIP: cfg.ProbeVIP, vipIface: cfg.Node.VIPInterface, recordEvent: a.recordEvent,
		conflictSeen: a.hooks.conflict,
	})
	a.leaseDone = make(chan struct{})
	if err := a.startGossip(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = a.gossip.Close()
		}
	}()
	if err := a.serve(); err != nil {
		return nil, err
	}
	a.wg.Add(5)
	go func() {
		defer a.wg.Done()
		a.gossipLoop()
	}()
	go func() {
		defer a.wg.Done()
		a.hooks.run(a.ctx)
	}()
	go func() {
		defer a.wg.Done()
		defer close(a.leaseDone)
		a.lease.run(a.ctx)
	}()
	go func() {
		defer a.wg.Done()
		a.ctl.run(a.ctx)
	}()
	go func() {
		defer a.wg.Done()
		a.ctl.conflictLoop(a.ctx)
	}()
	if cfg.OnSettings != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.ctl.settingsLoop(a.ctx)
		}()
	}
	if !hadState {
		a.wg.Add(1)
		go a.admitLoop()
	}
	a.wg.Add(1)
	go a.renewLoop()
	a.log.Info("agent started", "name", cfg.Node.Name, "role", cfg.Node.Role, "raft", cfg.Node.RaftAddr(), "api", cfg.Node.APIAddr(), "fresh", !hadState)
	return a, nil
}

// serve starts the remote (mTLS TCP) and local (unix socket) API servers.
func (a *Agent) serve() error {
	remoteLn, err := listenCapped("tcp", hostPort(a.cfg.Node.BindAddr(), a.cfg.Node.Ports.API), remoteMaxConns) // security (limits.go): connection cap
	if err != nil {
		return fmt.Errorf("listen api %s: %w", hostPort(a.cfg.Node.BindAddr(), a.cfg.Node.Ports.API), err)
	}
	sock := SocketPath(a.cfg.DataDir)
	localLn, err := listenLocalSocket(sock) // security (perms.go): 0600 from the first instant
	if err != nil {
		remoteLn.Close()
		return err
	}
	errLog := logging.StdLog(a.log, "http", slog.LevelInfo, logging.LevelTrace)
	// security (limits.go): read, write and idle timeouts on every server.
	a.remoteSrv = limitServer(&http.Server{Handler: a.handler(true), ErrorLog: errLog, BaseContext: func(net.Listener) context.Context { return a.ctx }}, remoteLimits)
	a.localSrv = limitServer(&http.Server{Handler: a.handler(false), ErrorLog: errLog, BaseContext: func(net.Listener) context.Context { return a.ctx }}, localLimits)
	tlsLn := tls.NewListener(remoteLn, a.bundle.APIServerConfig())
	servers := []struct {
		srv *http.Server
		ln  net.Listener
	}{{a.remoteSrv, tlsLn}, {a.localSrv, localLn}}
	if addr := a.cfg.Node.MetricsAddr; addr != "" {
		mln, err := listenCapped("tcp", addr, metricsMaxConns)
		if err != nil {
			remoteLn.Close()
			localLn.Close()
			return fmt.Errorf("listen metrics %s: %w", addr, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /metrics", a.handleMetrics)
		if a.cfg.Web != nil && a.cfg.Node.Web {
			page := a.cfg.Web
			if a.cfg.Node.WebOperatorCert {
				page = a.requireOperator(page)
				// security: the node certificate serves it; a client
				// certificate is asked for, and the page needs one.
				mln = tls.NewListener(mln, a.bundle.APIServerConfig())
			}
			mux.Handle("/", page)
		}
		a.metricsSrv = limitServer(&http.Server{Handler: mux, ErrorLog: errLog}, remoteLimits)
		servers = append(servers, struct {
			srv *http.Server
			ln  net.Listener
		}{a.metricsSrv, mln})
	}
	for _, s := range servers {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("api server stopped", "addr", s.ln.Addr().String(), "error", err)
			}
		}()
	}
	return nil
}

// admitLoop asks known members to make this node a voter until one does.
func (a *Agent) admitLoop() {
	defer a.wg.Done()
	req := VoterRequest{Name: a.cfg.Node.Name, RaftAddr: a.cfg.Node.RaftAddr()}
	for attempt := 1; ; attempt++ {
		var last error
		for _, addr := range a.cfg.Node.Join {
			if addr == a.cfg.Node.APIAddr() {
				continue
			}
			ctx, cancel := context.WithTimeout(a.ctx, a.cfg.ApplyTimeout+a.cfg.PeerTimeout)
			err := a.peerCall(ctx, addr, http.MethodPost, "/v1/internal/voter", req, nil, false)
			cancel()
			if err == nil {
				a.log.Info("admitted as voter", "via", addr, "attempt", attempt)
				return
			}
			last = err
		}
		if attempt == 1 || attempt%20 == 0 {
			a.log.Warn("not a voter yet, will retry", "join", strings.Join(a.cfg.Node.Join, ","), "error", last)
		}
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(a.cfg.AdmitRetry):
		}
	}
}

// Close stops the API, shuts Raft down and waits for every goroutine.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		a.cancel()
		a.ctlDone()
		var errs []error
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, s := range []*http.Server{a.remoteSrv, a.localSrv, a.metricsSrv} {
			if s == nil {
				continue
			}
			if err := s.Shutdown(ctx); err != nil {
				_ = s.Close()
			}
		}
		// Every loop ends with the context; wait for them before their
		// gossip and raft go away under them.
		a.wg.Wait()
		a.hooks.close() // after the lease runner's last released
		if err := a.gossip.Leave(time.Second); err != nil {
			a.log.Debug("gossip leave", "error", err)
		}
		if err := a.gossip.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := a.node.close(); err != nil {
			errs = append(errs, err)
		}
		a.peers.CloseIdleConnections()
		_ = os.Remove(SocketPath(a.cfg.DataDir))
		a.closeErr = errors.Join(errs...)
		a.log.Info("agent stopped", "name", a.cfg.Node.Name)
	})
	return a.closeErr
}

// settings returns the replicated cluster settings (defaults until some
// are committed; the last good ones if a committed document cannot be read).
func (a *Agent) settings() Settings {
	return a.settingsFrom(a.node.fsm.SettingsRaw())
}

// settingsFrom decodes a replicated settings document, caching the last.
func (a *Agent) settingsFrom(raw json.RawMessage) Settings {
	a.settingsMu.Lock()
	defer a.settingsMu.Unlock()
	if string(raw) == a.settingsRaw && a.settingsRaw != "" {
		return a.settingsVal
	}
	s, err := decodeSettings(raw)
	if err != nil {
		a.log.Error("cannot read replicated settings; keeping the previous ones", "error", err)
		if a.settingsRaw == "" {
			return DefaultSettings()
		}
		return a.settingsVal
	}
	a.settingsRaw, a.settingsVal = string(raw), s
	return s
}

// ctlDone waits until the lease runner has released the VIP and the
// controller has stopped.
func (a *Agent) ctlDone() {
	if a.ctl == nil {
		return
	}
	<-a.leaseDone
	<-a.ctl.stopped
}

// Name is this node's name.
func (a *Agent) Name() string { return a.cfg.Node.Name }

// FSM exposes the replicated state (read-only use).
func (a *Agent) FSM() *fsm.FSM { return a.node.fsm }

// IsLeader reports whether this node currently believes it is the leader.
func (a *Agent) IsLeader() bool { return a.node.raft.State() == raft.Leader }

// Leader returns the leader's name as this node sees it, or "".
func (a *Agent) Leader() string {
	_, id := a.node.raft.LeaderWithID()
	return string(id)
}

// RaftState returns this node's Raft role as Status reports it.
func (a *Agent) RaftState() string {
	switch a.node.raft.State() {
	case raft.Leader:
		return RaftLeader
	case raft.Candidate:
		return RaftCandidate
	case raft.Follower:
		return RaftFollower
	default:
		return RaftUnreachable
	}
}

// apply commits cmd through the leader: locally when this node leads,
// otherwise forwarded once to the leader's API.
func (a *Agent) apply(ctx context.Context, cmd fsm.Command) error {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	err = a.applyLocal(data)
	if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader) {
		return err
	}
	return a.toLeader(ctx, "/v1/internal/apply", applyBody{Command: base64.StdEncoding.EncodeToString(data)}, nil)
}

type applyBody struct {
	Command string `json:"command"` // base64 of an fsm.Encode'd command
}

// applyHere commits cmd if this node is the leader, else ErrNotLeader: for
// operator actions, which go to the leader as a whole (operatorAPI).
func (a *Agent) applyHere(cmd fsm.Command) error {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return a.applyLocal(data)
}

// applyLocal applies encoded data if this node is the leader.
func (a *Agent) applyLocal(data []byte) error {
	if a.node.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	f := a.node.raft.Apply(data, a.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return ErrNotLeader
		}
		if errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return fmt.Errorf("%w: %w", ErrNoLeader, err)
		}
		return fmt.Errorf("raft apply: %w", err)
	}
	res, ok := f.Response().(fsm.Result)
	if !ok {
		return fmt.Errorf("raft apply: unexpected response %T", f.Response())
	}
	if res.Err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, res.Err)
	}
	return nil
}

// applyAndSpread applies data (leader only), then appends a barrier, so
// the followers learn at once that the entry is committed. hashicorp/raft
// tells followers the commit index only with the next AppendEntries, and
// an idle leader sends one only after CommitTimeout (50 ms): a new active
// node or an old holder that must release would apply the move that much
// later. Used for the entries that move the active role.
func (a *Agent) applyAndSpread(data []byte) error {
	if err := a.applyLocal(data); err != nil {
		return err
	}
	if err := a.node.raft.Barrier(a.cfg.ApplyTimeout).Error(); err != nil {
		a.log.Debug("barrier after a move", "error", err)
	}
	return nil
}

// addVoter makes name a voter at raftAddr (leader only).
func (a *Agent) addVoter(req VoterRequest) error {
	if a.node.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	m, ok := a.node.fsm.Member(req.Name)
	if !ok {
		return fmt.Errorf("%w: %q has not joined (no member record)", ErrUnknownMember, req.Name)
	}
	// The address comes from the member record the signer wrote at join,
	// never from the request: a member cannot move its own (or anyone's)
	// voter address to another host.
	if req.RaftAddr != m.RaftAddr {
		return fmt.Errorf("%w: raft_addr %q is not %s's address on record (%s)", ErrBadRequest, req.RaftAddr, req.Name, m.RaftAddr)
	}
	err := a.node.raft.AddVoter(raft.ServerID(req.Name), raft.ServerAddress(m.RaftAddr), 0, a.cfg.ApplyTimeout).Error()
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
		return ErrNotLeader
	}
	if errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return fmt.Errorf("%w: %w", ErrNoLeader, err)
	}
	if err != nil {
		return fmt.Errorf("add voter %s: %w", req.Name, err)
	}
	a.log.Info("added voter", "name", req.Name, "raft", req.RaftAddr)
	return nil
}

// removeMember removes name from the state and from the Raft configuration
// (leader only).
func (a *Agent) removeMember(name string) error {
	if a.node.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	inState := false
	if _, ok := a.node.fsm.Member(name); ok {
		inState = true
	}
	inRaft, voters, isVoter := false, 0, false
	if cf := a.node.raft.GetConfiguration(); cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				voters++
			}
			if string(s.ID) == name {
				inRaft, isVoter = true, s.Suffrage == raft.Voter
			}
		}
	}
	if !inState && !inRaft {
		return fmt.Errorf("%w: %q", ErrUnknownMember, name)
	}
	// Checked before anything is written: Raft refuses to remove its last
	// voter, and the member record must not be gone while it stays one.
	if isVoter && voters == 1 {
		return fmt.Errorf("%w: %s is the cluster's last voter; removing it would leave no cluster", ErrBadRequest, name)
	}
	if inState {
		data, err := fsm.Encode(fsm.RemoveMember{Name: name})
		if err != nil {
			return err
		}
		if err := a.applyLocal(data); err != nil {
			return err
		}
	}
	if inRaft {
		err := a.node.raft.RemoveServer(raft.ServerID(name), 0, a.cfg.ApplyTimeout).Error()
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return ErrNotLeader
		}
		if err != nil {
			return fmt.Errorf("remove server %s: %w", name, err)
		}
	}
	_ = a.gossip.Forget(name)
	a.log.Info("removed member", "name", name)
	return nil
}

func readGossipKey(dataDir string) ([]byte, error) {
	p := filepath.Join(dataDir, gossipKeyFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read gossip key: %w", err)
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("gossip key %s: want base64 of 32 bytes", p)
	}
	return k, nil
}

func writeGossipKey(dataDir string, key []byte) error {
	return pki.WriteFileAtomic(filepath.Join(dataDir, gossipKeyFile), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
}
