package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// Snapshot file format (`newbieha snapshot save`), all of it covered by
// the checksum at the end:
//
//	8 bytes   SnapshotFileMagic
//	1 byte    format version (SnapshotFileVersion)
//	4 bytes   header length, big endian
//	header    SnapshotInfo as JSON
//	body      the FSM snapshot, exactly as Raft stores it (fsm.Snapshot)
//	32 bytes  SHA-256 of everything before it
//
// The body is the FSM's own format (docs/fsm.md), with its own magic and
// version, so a restore checks both.
const (
	// SnapshotFileMagic starts every snapshot file.
	SnapshotFileMagic = "NBHAFILE"
	// SnapshotFileVersion is the snapshot file format this build writes
	// and reads.
	SnapshotFileVersion uint8 = 1
	// maxSnapshotHeader bounds the JSON header.
	maxSnapshotHeader = 1 << 20
)

// ErrBadSnapshotFile means a snapshot file cannot be used: not one, a
// version this build does not read, a checksum that does not match, or a
// state that does not decode. The message says which.
var ErrBadSnapshotFile = errors.New("bad snapshot file")

// raftKeyCurrentTerm is the stable-store key under which hashicorp/raft
// keeps the current term (raft.go keyCurrentTerm, the key BootstrapCluster
// sets too). A restored node starts at the snapshot's term, never below
// it: a leader whose term is below its own last log term would write
// entries a node holding only the snapshot counts as older, and an
// election could then drop committed entries. TestSnapshot_RestoreThenStart
// checks that the term carries on.
var raftKeyCurrentTerm = []byte("CurrentTerm")

// SnapshotInfo is the self-describing header of a snapshot file.
type SnapshotInfo struct {
	Format uint8 `json:"format"`
	// Cluster is the common name of the cluster CA, CAHash its pin: a
	// restore goes only into a data dir of the same cluster.
	Cluster string    `json:"cluster"`
	CAHash  string    `json:"ca_hash"`
	Node    string    `json:"node"` // the node it was saved from
	Index   uint64    `json:"index"`
	Term    uint64    `json:"term"`
	Created time.Time `json:"created"`
	// Servers is the Raft configuration at Index, for information: a
	// restore makes the restoring node the only voter.
	Servers []RaftServer `json:"servers"`
	// Members, Active and History summarize the state in the body.
	Members []string `json:"members"`
	Active  string   `json:"active,omitempty"`
	History int      `json:"history"`
	// Size is the length of the body (the FSM snapshot).
	Size int `json:"size"`
	// SHA256 is the checksum at the end of the file (hex); not part of
	// the header.
	SHA256 string `json:"-"`
}

// memSink is a raft.SnapshotSink into memory.
type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "memory" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }

// fsmSnapshotBytes is f's snapshot in the FSM's format.
func fsmSnapshotBytes(f *fsm.FSM) ([]byte, error) {
	snap, err := f.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("snapshot state: %w", err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		return nil, fmt.Errorf("snapshot state: %w", err)
	}
	return sink.Bytes(), nil
}

func summarize(info *SnapshotInfo, st fsm.State) {
	info.Members = info.Members[:0]
	for name := range st.Members {
		info.Members = append(info.Members, name)
	}
	sort.Strings(info.Members)
	info.Active = st.Active.Node
	info.History = len(st.History)
}

// encodeSnapshotFile returns the whole file for info and body.
func encodeSnapshotFile(info SnapshotInfo, body []byte) ([]byte, error) {
	info.Format, info.Size = SnapshotFileVersion, len(body)
	header, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot header: %w", err)
	}
	var b bytes.Buffer
	b.WriteString(SnapshotFileMagic)
	b.WriteByte(SnapshotFileVersion)
	_ = binary.Write(&b, binary.BigEndian, uint32(len(header)))
	b.Write(header)
	b.Write(body)
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes(), nil
}

// DecodeSnapshotFile checks a whole snapshot file and returns its header
// and the FSM snapshot in it. The checks, in order: magic, format
// version, checksum, header, body length, and that the body restores into
// a fresh FSM. Every error wraps ErrBadSnapshotFile and names the problem.
func DecodeSnapshotFile(b []byte) (SnapshotInfo, []byte, error) {
	bad := func(format string, args ...any) (SnapshotInfo, []byte, error) {
		return SnapshotInfo{}, nil, fmt.Errorf("%w: "+format, append([]any{ErrBadSnapshotFile}, args...)...)
	}
	const fixed = len(SnapshotFileMagic) + 1 + 4
	if len(b) < fixed+sha256.Size {
		return bad("%d bytes, too short for a snapshot file", len(b))
	}
	if m := b[:len(SnapshotFileMagic)]; string(m) != SnapshotFileMagic {
		return bad("not a newbieha snapshot file (it starts with %q, want %q)", m, SnapshotFileMagic)
	}
	if v := b[len(SnapshotFileMagic)]; v != SnapshotFileVersion {
		return bad("format version %d, this build reads version %d", v, SnapshotFileVersion)
	}
	content, recorded := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if sum := sha256.Sum256(content); !bytes.Equal(sum[:], recorded) {
		return bad("checksum mismatch: the file is corrupt or truncated (SHA-256 of its content %s, recorded %s)", hex.EncodeToString(sum[:8]), hex.EncodeToString(recorded[:8]))
	}
	hlen := int(binary.BigEndian.Uint32(b[len(SnapshotFileMagic)+1:]))
	if hlen > maxSnapshotHeader || fixed+hlen > len(content) {
		return bad("header length %d does not fit the file", hlen)
	}
	var info SnapshotInfo
	if err := json.Unmarshal(content[fixed:fixed+hlen], &info); err != nil {
		return bad("header: %v", err)
	}
	body := content[fixed+hlen:]
	switch {
	case info.Format != SnapshotFileVersion:
		return bad("header says format %d, the file is version %d", info.Format, SnapshotFileVersion)
	case info.Size != len(body):
		return bad("header says the state is %d bytes, the file holds %d", info.Size, len(body))
	case info.Index == 0 || info.Term == 0:
		return bad("index %d, term %d: both must be positive", info.Index, info.Term)
	}
	f := fsm.New(fsm.Config{Logger: logging.Discard(), ValidateSettings: validateReplicatedSettings})
	if err := f.Restore(io.NopCloser(bytes.NewReader(body))); err != nil {
		return bad("state: %v", err)
	}
	info.SHA256 = hex.EncodeToString(recorded)
	return info, body, nil
}

// ReadSnapshotFile reads and checks a snapshot file (DecodeSnapshotFile).
func ReadSnapshotFile(path string) (SnapshotInfo, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return SnapshotInfo{}, nil, fmt.Errorf("read snapshot file: %w", err)
	}
	defer f.Close()
	limit := int64(fsm.MaxSnapshotSize + maxSnapshotHeader + 64)
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return SnapshotInfo{}, nil, fmt.Errorf("read snapshot file %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return SnapshotInfo{}, nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrBadSnapshotFile, path, limit)
	}
	info, body, err := DecodeSnapshotFile(b)
	if err != nil {
		return SnapshotInfo{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	return info, body, nil
}

// writeNewFile writes data to path with mode 0600, whole or not at all,
// and never over an existing file: a temporary file beside it is synced,
// then linked to path (which fails if path exists).
func writeNewFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists: choose a new name (a snapshot file is never overwritten)", path)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// SaveOptions are the inputs of `newbieha snapshot save`.
type SaveOptions struct {
	DataDir string
	File    string
	Logger  *slog.Logger
	// Now stamps the file; nil means time.Now.
	Now func() time.Time
}

// SaveSnapshot writes the replicated state of a stopped node to a new
// snapshot file (mode 0600). The state is the node's newest Raft snapshot
// with every entry of its log after it applied, as raft.RecoverCluster
// builds it; the file records its index and term, the Raft configuration
// and the cluster CA. It refuses while the data dir is in use.
func SaveSnapshot(opts SaveOptions) (info SnapshotInfo, err error) {
	if opts.File == "" {
		return info, errors.New("snapshot save: a file name is required")
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	n, err := openOffline(opts.DataDir, opts.Logger, true, true)
	if err != nil {
		return info, err
	}
	defer func() {
		if cerr := n.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	bundle, err := pki.LoadBundle(filepath.Join(opts.DataDir, tlsDirName))
	if err != nil {
		return info, fmt.Errorf("load tls material: %w", err)
	}
	snaps, err := n.snapshots()
	if err != nil {
		return info, err
	}
	st, err := n.replay(snaps)
	if err != nil {
		return info, fmt.Errorf("read raft state: %w", err)
	}
	if st.index == 0 {
		return info, fmt.Errorf("no raft state in %s: nothing to save", opts.DataDir)
	}
	body, err := fsmSnapshotBytes(st.fsm)
	if err != nil {
		return info, err
	}
	info = SnapshotInfo{Cluster: bundle.CA.Cert.Subject.CommonName, CAHash: pki.Hash(bundle.CA.Cert), Node: n.cfg.Name,
		Index: st.index, Term: st.term, Created: now().UTC().Truncate(time.Second), Servers: raftServers(st.configuration)}
	summarize(&info, st.fsm.State())
	data, err := encodeSnapshotFile(info, body)
	if err != nil {
		return info, err
	}
	if err := writeNewFile(opts.File, data); err != nil {
		return info, err
	}
	info.Format, info.Size = SnapshotFileVersion, len(body)
	info.SHA256 = hex.EncodeToString(data[len(data)-sha256.Size:])
	return info, nil
}

// RestoreOptions are the inputs of `newbieha snapshot restore`.
type RestoreOptions struct {
	DataDir string
	File    string
	// Force installs the state; without it Restore only returns the plan
	// (and ErrForceRequired).
	Force bool
	// SkipPeerCheck restores even though another member's Raft address
	// accepts connections.
	SkipPeerCheck bool
	Logger        *slog.Logger
	// Now names the directory the old Raft state is kept in; nil means
	// time.Now.
	Now func() time.Time
}

// RestorePlan is what a restore does, or did.
type RestorePlan struct {
	Snapshot SnapshotInfo `json:"snapshot"`
	Node     string       `json:"node"`
	RaftAddr string       `json:"raft_addr"`
	DataDir  string       `json:"data_dir"`
	// Existing is set when the data dir holds Raft state; it is kept
	// aside in KeptAt, not deleted.
	Existing  bool   `json:"existing"`
	LastIndex uint64 `json:"last_index,omitempty"`
	KeptAt    string `json:"kept_at,omitempty"`
	// Others are the members of the restored state besides this node:
	// they must be removed and join again.
	Others    []string `json:"others"`
	Answering []string `json:"answering,omitempty"`
	Restored  bool     `json:"restored"`
}

// RestoreSnapshot installs a snapshot file into a stopped node as its
// whole Raft state: a new Raft snapshot (through raft's FileSnapshotStore,
// Create, Write, Close) at the file's index and term, with a configuration
// of this node alone as voter, and an empty log. The node then starts as a
// one-voter cluster with that state; the other members are removed and
// join again.
//
// The new state is built in a temporary directory inside the data dir and
// swapped with raft/ in one rename (RENAME_EXCHANGE), so the data dir holds
// the old state or the new one, never a mix; the old one is kept beside it
// (raft.before-restore-TIME). It refuses a file that does not check
// (ErrBadSnapshotFile), one of another cluster (a different CA) or one
// without this node as a member, a data dir in use (ErrDataDirLocked),
// and, unless SkipPeerCheck, other members that still answer
// (ErrPeersAnswer). Without Force it changes nothing (ErrForceRequired).
func RestoreSnapshot(opts RestoreOptions) (plan RestorePlan, err error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	info, body, err := ReadSnapshotFile(opts.File)
	if err != nil {
		return plan, err
	}
	n, err := openOffline(opts.DataDir, opts.Logger, false, true) // the old state is only read, then swapped aside
	if err != nil {
		return plan, err
	}
	defer func() {
		if cerr := n.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	bundle, err := pki.LoadBundle(filepath.Join(opts.DataDir, tlsDirName))
	if err != nil {
		return plan, fmt.Errorf("load tls material: %w", err)
	}
	if h := pki.Hash(bundle.CA.Cert); h != info.CAHash {
		return plan, fmt.Errorf("%s is a snapshot of another cluster (%s, CA %s); this data dir belongs to %s (CA %s)",
			opts.File, info.Cluster, info.CAHash, bundle.CA.Cert.Subject.CommonName, h)
	}
	f := n.newFSM()
	if err := f.Restore(io.NopCloser(bytes.NewReader(body))); err != nil {
		return plan, fmt.Errorf("%w: %w", ErrBadSnapshotFile, err)
	}
	st := f.State()
	if _, ok := st.Members[n.cfg.Name]; !ok {
		return plan, fmt.Errorf("%s is not a member in %s (members: %v): restore into the data dir of one of them", n.cfg.Name, opts.File, info.Members)
	}
	plan = RestorePlan{Snapshot: info, Node: n.cfg.Name, RaftAddr: n.cfg.RaftAddr(), DataDir: opts.DataDir}
	others := map[string]string{}
	for name, m := range st.Members {
		if name != n.cfg.Name {
			plan.Others = append(plan.Others, name)
			others[name] = m.RaftAddr
		}
	}
	sort.Strings(plan.Others)
	term := info.Term
	if n.store != nil {
		last, err := n.store.LastIndex()
		if err != nil {
			return plan, fmt.Errorf("read last log index: %w", err)
		}
		cur, err := n.store.GetUint64(raftKeyCurrentTerm)
		if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
			return plan, fmt.Errorf("read current term: %w", err)
		}
		snaps, err := n.snapshots()
		if err != nil {
			return plan, err
		}
		if metas, err := snaps.List(); err == nil && len(metas) > 0 {
			last = max(last, metas[0].Index)
		}
		plan.Existing, plan.LastIndex = true, last
		term = max(term, cur)
	} else if _, err := os.Stat(raftDir(opts.DataDir)); err == nil {
		plan.Existing = true
	}
	if plan.Existing {
		base := filepath.Join(opts.DataDir, "raft.before-restore-"+now().UTC().Format("20060102T150405Z"))
		plan.KeptAt = base
		for i := 2; ; i++ {
			_, err := os.Lstat(plan.KeptAt)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err != nil {
				return plan, fmt.Errorf("restore: %w", err)
			}
			plan.KeptAt = fmt.Sprintf("%s-%d", base, i)
		}
	}
	plan.Answering = probePeers(others)
	if !opts.Force {
		return plan, ErrForceRequired
	}
	if len(plan.Answering) > 0 && !opts.SkipPeerCheck {
		return plan, peersAnswerError(plan.Answering, others)
	}
	if err := n.installSnapshot(info, body, term, plan.KeptAt); err != nil {
		return plan, err
	}
	plan.Restored = true
	n.logger.Info("restored snapshot as the only voter", "name", n.cfg.Name, "index", info.Index, "term", info.Term, "kept", plan.KeptAt)
	return plan, nil
}

// installSnapshot builds a Raft state of body at index/term with this
// node alone as voter and current term term, in a temporary directory of
// the data dir, then swaps it with raft/ (keeping the old one at keptAt,
// when there is one).
func (n *offlineNode) installSnapshot(info SnapshotInfo, body []byte, term uint64, keptAt string) (err error) {
	tmp, err := os.MkdirTemp(n.dataDir, ".raft-restore-")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	swapped := false
	defer func() {
		if !swapped {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	// The new store is locked from here until the end, so an agent
	// starting meanwhile waits for it (and then times out) rather than
	// reading a state being built.
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(tmp, "raft.db"), BoltOptions: &bbolt.Options{Timeout: offlineLockTimeout}})
	if err != nil {
		return fmt.Errorf("restore: create bolt store: %w", err)
	}
	defer func() {
		if cerr := store.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("restore: close bolt store: %w", cerr)
		}
	}()
	if err := store.SetUint64(raftKeyCurrentTerm, term); err != nil {
		return fmt.Errorf("restore: set current term: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(tmp, 2, logging.HCLog(n.logger, "raft.snapshot", slog.LevelError))
	if err != nil {
		return fmt.Errorf("restore: open snapshot store: %w", err)
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(n.cfg.RaftAddr()))
	defer trans.Close()
	sink, err := snaps.Create(1, info.Index, info.Term, n.alone(), info.Index, trans)
	if err != nil {
		return fmt.Errorf("restore: create raft snapshot: %w", err)
	}
	if _, err := sink.Write(body); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("restore: write raft snapshot: %w", err)
	}
	if err := sink.Close(); err != nil { // syncs the files and the snapshot dir
		return fmt.Errorf("restore: close raft snapshot: %w", err)
	}
	if err := store.Sync(); err != nil {
		return fmt.Errorf("restore: sync bolt store: %w", err)
	}
	dst := raftDir(n.dataDir)
	if keptAt == "" {
		if err := os.Rename(tmp, dst); err != nil {
			return fmt.Errorf("restore: move the new state into place: %w", err)
		}
	} else {
		// One atomic swap: raft/ is the old state or the new one.
		if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE); err != nil {
			return fmt.Errorf("restore: swap the new state into place: %w", err)
		}
		swapped = true
		if err := os.Rename(tmp, keptAt); err != nil {
			return fmt.Errorf("restore: the new state is in place; the old one is at %s (keep %s aside): %w", tmp, keptAt, err)
		}
	}
	swapped = true
	return syncDir(n.dataDir)
}
