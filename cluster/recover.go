package cluster

import (
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// Offline operator commands (raft recover, snapshot save and restore) work
// on a stopped node's data dir through the same stores the agent opens.
// docs/recovery.md has the runbooks.

var (
	// ErrDataDirLocked means an offline command found the data dir in use:
	// the agent (or another command) holds the Raft store's file lock.
	ErrDataDirLocked = errors.New("data dir is in use")
	// ErrForceRequired means a command that rewrites the Raft state was run
	// without --force: it showed what it would do and changed nothing.
	ErrForceRequired = errors.New("nothing changed: run again with --force to do it")
	// ErrPeersAnswer means a member that a recover or restore would cut off
	// still accepts connections on its Raft address: recovering next to a
	// live majority makes a second cluster (and a second VIP holder).
	ErrPeersAnswer = errors.New("other members still answer")
)

// offlineLockTimeout is how long an offline command waits for the Raft
// store's lock before it says the data dir is in use.
const offlineLockTimeout = time.Second

// offlineNode is a stopped node's data dir, its Raft store opened (and so
// locked) by an operator command.
type offlineNode struct {
	dataDir string
	cfg     NodeConfig
	store   *raftboltdb.BoltStore // nil when the data dir has no raft.db
	logger  *slog.Logger
}

func raftDBPath(dataDir string) string { return filepath.Join(raftDir(dataDir), "raft.db") }

// openOffline loads dataDir's node config and opens its Raft store with
// the same options as the agent, taking the same lock: bolt's exclusive
// lock on raft/raft.db, which the agent holds from Start to Close. A
// data dir without a raft.db is an error when mustExist is set, else it
// comes back with a nil store (nothing to lock, nothing to read). A
// command that only reads opens it read-only: bolt then takes the lock
// shared, which the running agent's exclusive lock still excludes (and
// which keeps an agent from starting meanwhile), and writes nothing.
func openOffline(dataDir string, logger *slog.Logger, mustExist, readOnly bool) (*offlineNode, error) {
	if logger == nil {
		logger = logging.ForCommand(os.Stderr)
	}
	cfg, err := LoadNodeConfig(filepath.Join(dataDir, ConfigFileName))
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dataDir, err)
	}
	if err := checkPermissions(dataDir); err != nil {
		return nil, err
	}
	n := &offlineNode{dataDir: dataDir, cfg: cfg, logger: logger}
	db := raftDBPath(dataDir)
	if _, err := os.Stat(db); err != nil {
		if errors.Is(err, os.ErrNotExist) && !mustExist {
			return n, agentAnswers(dataDir)
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no raft state in %s: %s does not exist", dataDir, db)
		}
		return nil, fmt.Errorf("raft store %s: %w", db, err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: db, BoltOptions: &bbolt.Options{Timeout: offlineLockTimeout, ReadOnly: readOnly}})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: the lock on %s is held, most likely by the running agent: stop it first (systemctl stop newbieha)", ErrDataDirLocked, db)
	}
	if err != nil {
		return nil, fmt.Errorf("open bolt store %s: %w", db, err)
	}
	n.store = store
	return n, nil
}

// AgentAnswers reports whether an agent serves dataDir's local API
// socket.
func AgentAnswers(dataDir string) bool { return agentAnswers(dataDir) != nil }

// agentAnswers fails when an agent serves dataDir's local API socket: for
// a data dir without a raft.db, which has no lock to take (its raft dir
// was deleted, perhaps under a running agent, whose lock is then on a
// file no longer there).
func agentAnswers(dataDir string) error {
	sock := SocketPath(dataDir)
	c, err := net.DialTimeout("unix", sock, 200*time.Millisecond)
	if err != nil {
		return nil // no socket, or a stale one from a crash
	}
	_ = c.Close()
	return fmt.Errorf("%w: an agent answers on %s: stop it first (systemctl stop newbieha)", ErrDataDirLocked, sock)
}

func (n *offlineNode) close() error {
	if n.store == nil {
		return nil
	}
	if err := n.store.Close(); err != nil {
		return fmt.Errorf("close bolt store: %w", err)
	}
	return nil
}

// snapshots opens the node's file snapshot store, retaining as many as
// the agent does.
func (n *offlineNode) snapshots() (*raft.FileSnapshotStore, error) {
	s, err := raft.NewFileSnapshotStoreWithLogger(raftDir(n.dataDir), 2, logging.HCLog(n.logger, "raft.snapshot", slog.LevelError))
	if err != nil {
		return nil, fmt.Errorf("open snapshot store %s: %w", raftDir(n.dataDir), err)
	}
	return s, nil
}

// raftConfig is the Raft config the agent runs this node with (openRaft),
// as far as RecoverCluster looks at it.
func (n *offlineNode) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.Name)
	rc.HeartbeatTimeout = n.cfg.Raft.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.Raft.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.Raft.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.Raft.CommitTimeout
	rc.Logger = logging.HCLog(n.logger, "raft", slog.LevelError)
	return rc
}

func (n *offlineNode) newFSM() *fsm.FSM {
	return fsm.New(fsm.Config{Logger: logging.Named(n.logger, "fsm"), ValidateSettings: validateReplicatedSettings})
}

// alone is the configuration of this node as the only voter.
func (n *offlineNode) alone() raft.Configuration {
	return raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.Name), Address: raft.ServerAddress(n.cfg.RaftAddr())}}}
}

// replayed is a node's state as its stores hold it: the FSM restored from
// the newest snapshot with every log entry after it applied, the latest
// configuration, and the index and term of the last entry.
type replayed struct {
	fsm           *fsm.FSM
	configuration raft.Configuration
	index, term   uint64
}

// replay builds the node's state the way raft.RecoverCluster does: the
// newest snapshot that restores, then every command entry in the log
// after it. Offline there is no commit index, so entries at the end of the
// log that a majority never stored count as well; on a node of a healthy
// cluster that was stopped cleanly they are all committed.
func (n *offlineNode) replay(snaps raft.SnapshotStore) (replayed, error) {
	out := replayed{fsm: n.newFSM()}
	metas, err := snaps.List()
	if err != nil {
		return out, fmt.Errorf("list snapshots: %w", err)
	}
	var restoreErrs []error
	for _, m := range metas {
		meta, rc, err := snaps.Open(m.ID)
		if err != nil {
			restoreErrs = append(restoreErrs, fmt.Errorf("open snapshot %s: %w", m.ID, err))
			continue
		}
		err = out.fsm.Restore(rc)
		_ = rc.Close()
		if err != nil {
			restoreErrs = append(restoreErrs, fmt.Errorf("snapshot %s: %w", m.ID, err))
			out.fsm = n.newFSM()
			continue
		}
		out.index, out.term, out.configuration = meta.Index, meta.Term, meta.Configuration
		break
	}
	if len(metas) > 0 && out.index == 0 {
		return out, fmt.Errorf("no snapshot restores: %w", errors.Join(restoreErrs...))
	}
	first, err := n.store.FirstIndex()
	if err != nil {
		return out, fmt.Errorf("read first log index: %w", err)
	}
	last, err := n.store.LastIndex()
	if err != nil {
		return out, fmt.Errorf("read last log index: %w", err)
	}
	if last > out.index && first > out.index+1 {
		return out, fmt.Errorf("the log starts at index %d but the newest usable snapshot ends at %d: entries in between are gone", first, out.index)
	}
	for i := out.index + 1; i <= last; i++ {
		var l raft.Log
		if err := n.store.GetLog(i, &l); err != nil {
			return out, fmt.Errorf("read log entry %d: %w", i, err)
		}
		switch l.Type {
		case raft.LogCommand:
			_ = out.fsm.Apply(&l) // a rejected command is rejected the same on every node
		case raft.LogConfiguration:
			out.configuration = raft.DecodeConfiguration(l.Data)
		}
		out.index, out.term = l.Index, l.Term
	}
	return out, nil
}

// RaftServer is one server of a Raft configuration.
type RaftServer struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
}

func raftServers(c raft.Configuration) []RaftServer {
	out := make([]RaftServer, 0, len(c.Servers))
	for _, s := range c.Servers {
		out = append(out, RaftServer{Name: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// probePeers dials each address (name → raft address) once and returns
// the names that accepted a connection, sorted.
func probePeers(addrs map[string]string) []string {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var up []string
	for name, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
			if err != nil {
				return
			}
			_ = c.Close()
			mu.Lock()
			up = append(up, name)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Strings(up)
	return up
}

// RecoverOptions are the inputs of `newbieha raft recover`.
type RecoverOptions struct {
	DataDir string
	// Force rewrites the Raft state; without it Recover only returns the
	// plan (and ErrForceRequired).
	Force bool
	// SkipPeerCheck recovers even though another member's Raft address
	// accepts connections (something else listens there).
	SkipPeerCheck bool
	Logger        *slog.Logger
}

// RecoverPlan is what a recovery does, or did.
type RecoverPlan struct {
	Node     string `json:"node"`
	RaftAddr string `json:"raft_addr"`
	DataDir  string `json:"data_dir"`
	// Current is the latest Raft configuration in the stores.
	Current []RaftServer `json:"current"`
	// LastIndex and LastTerm are those of the last entry in the stores.
	LastIndex uint64 `json:"last_index"`
	LastTerm  uint64 `json:"last_term"`
	// Dropped are the servers that leave the configuration: they must be
	// removed (newbieha remove) and join again with wiped data dirs.
	Dropped []string `json:"dropped"`
	// NotInConfiguration is set when this node is not a server of the
	// current configuration (it was removed); it becomes one.
	NotInConfiguration bool `json:"not_in_configuration,omitempty"`
	// Answering are the dropped servers whose Raft address accepts
	// connections now.
	Answering []string `json:"answering,omitempty"`
	// NoCAKey is set when this node holds no cluster CA key (a witness):
	// alone, it cannot admit any new member.
	NoCAKey bool `json:"no_ca_key,omitempty"`
	// Recovered is true once the stores were rewritten.
	Recovered bool `json:"recovered"`
}

// Recover makes a stopped node the only voter of its Raft cluster, for a
// lost quorum, the way hashicorp/raft supports it: raft.RecoverCluster on
// the node's own stores with a configuration of this node alone. The
// replicated state is kept as the node has it (the newest snapshot plus
// every entry of its log). The member records of the others stay in the
// state until `newbieha remove` (a change only the running leader can
// commit); they join again with wiped data dirs and new tokens.
//
// It refuses while the data dir is in use (ErrDataDirLocked) and while a
// dropped member's Raft address answers (ErrPeersAnswer, unless
// SkipPeerCheck). Without Force it changes nothing and returns the plan
// with ErrForceRequired.
func Recover(opts RecoverOptions) (plan RecoverPlan, err error) {
	n, err := openOffline(opts.DataDir, opts.Logger, true, !opts.Force)
	if err != nil {
		return plan, err
	}
	defer func() {
		if cerr := n.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	snaps, err := n.snapshots()
	if err != nil {
		return plan, err
	}
	has, err := raft.HasExistingState(n.store, n.store, snaps)
	if err != nil {
		return plan, fmt.Errorf("read raft state: %w", err)
	}
	if !has {
		return plan, fmt.Errorf("no raft state in %s: this node never joined a cluster (nothing to recover)", opts.DataDir)
	}
	st, err := n.replay(snaps)
	if err != nil {
		return plan, fmt.Errorf("read raft state: %w", err)
	}
	plan = RecoverPlan{Node: n.cfg.Name, RaftAddr: n.cfg.RaftAddr(), DataDir: opts.DataDir, Current: raftServers(st.configuration),
		LastIndex: st.index, LastTerm: st.term, NotInConfiguration: true}
	others := map[string]string{}
	for _, s := range st.configuration.Servers {
		if string(s.ID) == n.cfg.Name {
			plan.NotInConfiguration = false
			continue
		}
		plan.Dropped = append(plan.Dropped, string(s.ID))
		others[string(s.ID)] = string(s.Address)
	}
	sort.Strings(plan.Dropped)
	if _, err := os.Stat(filepath.Join(opts.DataDir, tlsDirName, pki.CAKeyFile)); errors.Is(err, os.ErrNotExist) {
		plan.NoCAKey = true
	}
	plan.Answering = probePeers(others)
	if !opts.Force {
		return plan, ErrForceRequired
	}
	if len(plan.Answering) > 0 && !opts.SkipPeerCheck {
		return plan, peersAnswerError(plan.Answering, others)
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(n.cfg.RaftAddr())) // RecoverCluster only encodes peers with it
	defer trans.Close()
	if err := raft.RecoverCluster(n.raftConfig(), n.newFSM(), n.store, n.store, snaps, trans, n.alone()); err != nil {
		return plan, fmt.Errorf("recover raft cluster: %w", err)
	}
	plan.Recovered = true
	n.logger.Info("recovered: this node is the only voter", "name", n.cfg.Name, "last_index", st.index, "last_term", st.term, "dropped", plan.Dropped)
	return plan, nil
}

func peersAnswerError(names []string, addrs map[string]string) error {
	var list string
	for i, name := range names {
		if i > 0 {
			list += ", "
		}
		list += name + " (" + addrs[name] + ")"
	}
	return fmt.Errorf("%w: %s accept connections on their raft address: their agents may be running, and a node cut off next to a live majority makes a second cluster with a second VIP holder; stop them (or pass --skip-peer-check if that address is not a newbieha agent)", ErrPeersAnswer, list)
}
