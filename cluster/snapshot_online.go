package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// maxSnapshotBody bounds the FSM snapshot an online save reads (the state
// is a few hundred KiB at most: members, tokens, settings, bounded
// history).
const maxSnapshotBody = 64 << 20

// SnapshotFile returns this member's replicated state as a snapshot file
// (the format of `snapshot save`), without stopping anything: the leader
// first runs a barrier, so every entry committed before the call is in
// it; a follower saves what it has applied (its index is in the header).
// The state is a Raft snapshot taken now (raft.Snapshot), or the newest
// one when nothing was applied since.
func (a *Agent) SnapshotFile(ctx context.Context) ([]byte, SnapshotInfo, error) {
	var info SnapshotInfo
	r := a.node.raft
	if r.State() == raft.Leader {
		if err := r.Barrier(a.cfg.ApplyTimeout).Error(); err != nil {
			return nil, info, fmt.Errorf("snapshot: barrier: %w", err)
		}
	}
	meta, rc, err := a.openSnapshotNow()
	if err != nil {
		return nil, info, err
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, maxSnapshotBody+1))
	if err != nil {
		return nil, info, fmt.Errorf("snapshot: read: %w", err)
	}
	if len(body) > maxSnapshotBody {
		return nil, info, fmt.Errorf("snapshot: state over %d bytes", maxSnapshotBody)
	}
	// The same check a restore makes, before the file leaves the agent.
	f := fsm.New(fsm.Config{ValidateSettings: validateReplicatedSettings})
	if err := f.Restore(io.NopCloser(bytes.NewReader(body))); err != nil {
		return nil, info, fmt.Errorf("snapshot: state does not restore: %w", err)
	}
	ca := a.bundle.CA.Cert
	info = SnapshotInfo{Cluster: ca.Subject.CommonName, CAHash: pki.Hash(ca), Node: a.Name(),
		Index: meta.Index, Term: meta.Term, Created: time.Now().UTC().Truncate(time.Second), Servers: raftServers(meta.Configuration)}
	summarize(&info, f.State())
	data, err := encodeSnapshotFile(info, body)
	if err != nil {
		return nil, info, err
	}
	info, _, err = DecodeSnapshotFile(data) // fills Format, Size, SHA256
	return data, info, err
}

// openSnapshotNow takes a Raft snapshot, or opens the newest when there
// is nothing new to snapshot (then the newest holds every applied entry).
func (a *Agent) openSnapshotNow() (*raft.SnapshotMeta, io.ReadCloser, error) {
	fut := a.node.raft.Snapshot()
	err := fut.Error()
	if err == nil {
		meta, rc, err := fut.Open()
		if err != nil {
			return nil, nil, fmt.Errorf("snapshot: open: %w", err)
		}
		return meta, rc, nil
	}
	if !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return nil, nil, fmt.Errorf("snapshot: %w", err)
	}
	list, lerr := a.node.snaps.List()
	if lerr != nil || len(list) == 0 {
		return nil, nil, fmt.Errorf("snapshot: nothing applied yet and no snapshot on disk (%v)", lerr)
	}
	meta, rc, err := a.node.snaps.Open(list[0].ID)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot: open %s: %w", list[0].ID, err)
	}
	return meta, rc, nil
}

// handleSnapshot serves GET /v1/snapshot: the member's state as a
// snapshot file. Operators only (the state lists members and token
// hashes); logged with who asked.
func (o *operatorAPI) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	data, info, err := o.a.SnapshotFile(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	o.a.log.Info("snapshot saved online", "caller", callerOf(r).String(), "index", info.Index, "term", info.Term, "bytes", len(data))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	_, _ = w.Write(data)
}

// Snapshot fetches the member's state as a snapshot file (GET
// /v1/snapshot) and checks it as a restore would before returning it.
func (c *Client) Snapshot(ctx context.Context) ([]byte, SnapshotInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/snapshot", nil)
	if err != nil {
		return nil, SnapshotInfo{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, SnapshotInfo{}, fmt.Errorf("%s: %w", c.where, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, SnapshotInfo{}, decodeResponse(resp, nil)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxSnapshotBody+maxSnapshotHeader+64))
	if err != nil {
		return nil, SnapshotInfo{}, fmt.Errorf("%s: read snapshot: %w", c.where, err)
	}
	info, _, err := DecodeSnapshotFile(data)
	if err != nil {
		return nil, info, fmt.Errorf("%s: %w", c.where, err)
	}
	return data, info, nil
}

// WriteNewFile writes data to a new file at path: mode 0600 from the
// first byte, synced, linked into place, never over an existing file (a
// snapshot, a token file).
func WriteNewFile(path string, data []byte) error { return writeNewFile(path, data) }
