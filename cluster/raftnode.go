package cluster

import (
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// raftNode is the consensus part of an agent: the raft instance, its
// stores and transport, and the FSM it drives.
type raftNode struct {
	raft      *raft.Raft
	fsm       *fsm.FSM
	store     *raftboltdb.BoltStore
	transport *raft.NetworkTransport
	snaps     raft.SnapshotStore
}

func raftDir(dataDir string) string { return filepath.Join(dataDir, "raft") }

// openRaft opens the stores in dataDir/raft and starts raft. When
// bootstrap is true and the stores are empty it bootstraps a one-voter
// cluster of this node.
func openRaft(dataDir string, cfg NodeConfig, bundle *pki.Bundle, logger *slog.Logger, libFloor slog.Level, bootstrap bool) (n *raftNode, hadState bool, err error) {
	dir := raftDir(dataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create raft dir %s: %w", dir, err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(dir, "raft.db"),
		// A second agent on the same data dir would otherwise block
		// forever on bolt's file lock.
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second},
	})
	if err != nil {
		return nil, false, fmt.Errorf("open bolt store %s (is another agent using this data dir?): %w", filepath.Join(dir, "raft.db"), err)
	}
	defer func() {
		if err != nil {
			store.Close()
		}
	}()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, logging.HCLog(logger, "raft.snapshot", libFloor))
	if err != nil {
		return nil, false, fmt.Errorf("open snapshot store %s: %w", dir, err)
	}
	advertise, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr())
	if err != nil {
		return nil, false, fmt.Errorf("resolve advertise address %s: %w", cfg.RaftAddr(), err)
	}
	stream, err := newTLSStreamLayer(hostPort(cfg.BindAddr(), cfg.Ports.Raft), advertise, bundle.ServerConfig(), bundle.ClientConfig(), logging.Named(logger, "raft-tls"))
	if err != nil {
		return nil, false, err
	}
	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 5 * time.Second,
		Logger:  logging.HCLog(logger, "raft.net", libFloor),
	})
	defer func() {
		if err != nil {
			transport.Close()
		}
	}()

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Name)
	rc.HeartbeatTimeout = cfg.Raft.HeartbeatTimeout
	rc.ElectionTimeout = cfg.Raft.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.Raft.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.Raft.CommitTimeout
	rc.Logger = logging.HCLog(logger, "raft", libFloor)
	// The state is tiny; snapshot often enough that a rejoining node
	// catches up from a snapshot rather than a long log.
	rc.SnapshotThreshold = 1024
	rc.TrailingLogs = 2048
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, false, fmt.Errorf("raft config: %w", err)
	}

	hadState, err = raft.HasExistingState(store, store, snaps)
	if err != nil {
		return nil, false, fmt.Errorf("read raft state: %w", err)
	}
	if bootstrap && !hadState {
		conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: transport.LocalAddr(), Suffrage: raft.Voter}}}
		if err := raft.BootstrapCluster(rc, store, store, snaps, transport, conf); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return nil, false, fmt.Errorf("bootstrap raft: %w", err)
		}
	}
	f := fsm.New(fsm.Config{Logger: logging.Named(logger, "fsm"), ValidateSettings: validateReplicatedSettings})
	r, err := raft.NewRaft(rc, f, store, store, snaps, transport)
	if err != nil {
		return nil, false, fmt.Errorf("start raft: %w", err)
	}
	stream.setAdmit(func(c *x509.Certificate) error { return admitRaftPeer(r, f, c) })
	return &raftNode{raft: r, fsm: f, store: store, transport: transport, snaps: snaps}, hadState, nil
}

// admitRaftPeer lets a Raft peer in only with a node certificate naming a
// server of the latest configuration, so that a removed node (its
// certificate still valid) or an operator certificate gets no answer, not
// even a term. A node whose configuration is empty has joined and waits
// for its first entries from a leader it cannot know yet; it has nothing
// to protect, so it takes any member certificate.
func admitRaftPeer(r *raft.Raft, f *fsm.FSM, c *x509.Certificate) error {
	if role := pki.Role(c); !pki.IsNodeRole(role) {
		return fmt.Errorf("certificate %q names role %q, not a member role", c.Subject.CommonName, role)
	}
	cf := r.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("read raft configuration: %w", err)
	}
	servers := cf.Configuration().Servers
	if len(servers) == 0 {
		return nil
	}
	name := c.Subject.CommonName
	for _, s := range servers {
		if string(s.ID) != name {
			continue
		}
		// A withdrawn certificate of a current server (renewed twice
		// since, or from before the member was removed and joined again).
		if m, ok := f.Member(name); ok && !m.Honours(pki.Serial(c)) {
			return fmt.Errorf("certificate %s of %s is not one its member record honours", pki.Serial(c), name)
		}
		return nil
	}
	return fmt.Errorf("%s is not a server of the current raft configuration", name)
}

// close shuts raft down and releases the stores and the port.
func (n *raftNode) close() error {
	var errs []error
	if err := n.raft.Shutdown().Error(); err != nil {
		errs = append(errs, fmt.Errorf("shutdown raft: %w", err))
	}
	if err := n.transport.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close raft transport: %w", err))
	}
	if err := n.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close bolt store: %w", err))
	}
	return errors.Join(errs...)
}
