package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/newbieha/newbieha/fsm"
)

// failoverTo moves the active role to name and waits until it holds the
// VIP, so that the history has a planned move in it.
func (c *testCluster) failoverTo(name string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.client(name).Failover(ctx, FailoverRequest{To: name}); err != nil {
		c.t.Fatalf("failover to %s: %v", name, err)
	}
	c.waitHolder(name)
}

// destroy stops name's agent and deletes its data dir, as if its host
// were gone for good.
func (c *testCluster) destroy(name string) {
	c.t.Helper()
	n := c.nodes[name]
	if n.agent != nil {
		c.stop(name)
	}
	if err := os.RemoveAll(n.dataDir); err != nil {
		c.t.Fatal(err)
	}
	delete(c.nodes, name)
}

// raftServerNames is the running node's latest Raft configuration.
func raftServerNames(t *testing.T, a *Agent) []string {
	t.Helper()
	f := a.node.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range f.Configuration().Servers {
		out = append(out, string(s.ID))
	}
	sort.Strings(out)
	return out
}

func memberNames(st fsm.State) []string {
	var out []string
	for name := range st.Members {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// storedState is what a stopped node's data dir holds, replayed as save
// and recover read it.
func storedState(t *testing.T, dataDir string) (fsm.State, uint64, uint64) {
	t.Helper()
	n, err := openOffline(dataDir, testLogger(t, "offline"), true, true)
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	snaps, err := n.snapshots()
	if err != nil {
		t.Fatal(err)
	}
	st, err := n.replay(snaps)
	if err != nil {
		t.Fatal(err)
	}
	return st.fsm.State(), st.index, st.term
}

func raftTerm(a *Agent) uint64 {
	t, _ := strconv.ParseUint(a.node.raft.Stats()["term"], 10, 64)
	return t
}

// The lost-quorum runbook (docs/recovery.md), end to end: two of three
// nodes destroyed, recover on the survivor, it leads alone with its
// history, the lost members are removed, a fresh node joins with a new
// token and catches up.
func TestRecover_TwoOfThreeLost(t *testing.T) {
	c := newVIPCluster(t)
	ctx := context.Background()
	c.failoverTo("node2")
	survivor := c.nodes["node2"]
	log := testLogger(t, "recover")

	// While the agent runs, the data dir's lock is held: refused, named.
	if _, err := Recover(RecoverOptions{DataDir: survivor.dataDir, Force: true, Logger: log}); !errors.Is(err, ErrDataDirLocked) || !strings.Contains(err.Error(), "raft.db") {
		t.Fatalf("recover on a running node: %v, want ErrDataDirLocked naming raft.db", err)
	}

	c.destroy("node1")
	c.stop("node2")
	// The witness still runs: a recovery next to it would make a second
	// cluster, so it is refused, naming it.
	_, err := Recover(RecoverOptions{DataDir: survivor.dataDir, Force: true, Logger: log})
	if !errors.Is(err, ErrPeersAnswer) || !strings.Contains(err.Error(), "witness") {
		t.Fatalf("recover while the witness runs: %v, want ErrPeersAnswer naming witness", err)
	}
	c.destroy("witness")

	before, lastIndex, lastTerm := storedState(t, survivor.dataDir)
	if len(before.History) < 2 {
		t.Fatalf("history before: %+v, want the startup and the failover", before.History)
	}

	// Without --force: the plan, nothing changed (not a byte).
	dbBefore := fileSum(t, raftDBPath(survivor.dataDir))
	plan, err := Recover(RecoverOptions{DataDir: survivor.dataDir, Logger: log})
	if !errors.Is(err, ErrForceRequired) {
		t.Fatalf("recover without force: %v, want ErrForceRequired", err)
	}
	if got := serverNames(plan.Current); !reflect.DeepEqual(got, []string{"node1", "node2", "witness"}) {
		t.Fatalf("plan current %+v", plan.Current)
	}
	if !reflect.DeepEqual(plan.Dropped, []string{"node1", "witness"}) || len(plan.Answering) != 0 || plan.Recovered || plan.NotInConfiguration {
		t.Fatalf("plan %+v", plan)
	}
	if plan.LastIndex != lastIndex || plan.LastTerm != lastTerm || plan.LastIndex == 0 {
		t.Fatalf("plan last index %d term %d, the stores hold %d/%d", plan.LastIndex, plan.LastTerm, lastIndex, lastTerm)
	}
	again, err := Recover(RecoverOptions{DataDir: survivor.dataDir, Logger: log})
	if !errors.Is(err, ErrForceRequired) || !reflect.DeepEqual(again, plan) {
		t.Fatalf("a second dry run differs (%v): %+v, first %+v", err, again, plan)
	}
	if fileSum(t, raftDBPath(survivor.dataDir)) != dbBefore {
		t.Fatal("a dry run changed raft.db")
	}

	plan, err = Recover(RecoverOptions{DataDir: survivor.dataDir, Force: true, Logger: log})
	if err != nil || !plan.Recovered {
		t.Fatalf("recover: %+v, %v", plan, err)
	}
	a := c.start("node2")
	waitFor(t, 10*time.Second, "node2 to lead alone", func() error {
		if !a.IsLeader() {
			return fmt.Errorf("node2 is %s", a.RaftState())
		}
		return nil
	})
	if got := raftServerNames(t, a); !reflect.DeepEqual(got, []string{"node2"}) {
		t.Fatalf("raft configuration after recover: %v", got)
	}
	after := a.FSM().State()
	if !reflect.DeepEqual(after.History[:len(before.History)], before.History) {
		t.Fatalf("history after recover:\n%+v\nbefore:\n%+v", after.History, before.History)
	}
	// The lost members stay in the state until removed; remove works for
	// a member in the state but not in the Raft configuration.
	if got := memberNames(after); !reflect.DeepEqual(got, []string{"node1", "node2", "witness"}) {
		t.Fatalf("members after recover: %v", got)
	}
	for _, name := range []string{"node1", "witness"} {
		if err := c.client("node2").Remove(ctx, name); err != nil {
			t.Fatalf("remove %s: %v", name, err)
		}
	}
	if got := memberNames(a.FSM().State()); !reflect.DeepEqual(got, []string{"node2"}) {
		t.Fatalf("members after remove: %v", got)
	}

	tok, err := c.client("node2").CreateToken(ctx, time.Hour, fsm.RoleGPU)
	if err != nil {
		t.Fatal(err)
	}
	c.token = tok.Token
	c.join("node3", "127.0.0.4", fsm.RoleGPU, "node2")
	want := a.FSM().State().History
	waitFor(t, 20*time.Second, "node3 to be a voter with the history", func() error {
		if err := healthyStatus(a.Status(ctx), "node2", "node3"); err != nil {
			return err
		}
		if got := c.nodes["node3"].agent.FSM().State().History; !reflect.DeepEqual(got[:min(len(got), len(want))], want) || len(got) < len(want) {
			return fmt.Errorf("node3 history %d entries, node2 %d", len(got), len(want))
		}
		return nil
	})
	c.waitHolder("node2")
}

func fileSum(t *testing.T, path string) [sha256.Size]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func serverNames(s []RaftServer) []string {
	var out []string
	for _, v := range s {
		out = append(out, v.Name)
	}
	return out
}

// The backup-and-restore runbook (docs/recovery.md): save from a stopped
// node, wipe its Raft state, restore, start: history and members as
// before; a restore over existing state keeps the old one aside.
func TestSnapshot_SaveWipeRestore(t *testing.T) {
	c := newVIPCluster(t)
	c.failoverTo("node2")
	n := c.nodes["node1"]
	log := testLogger(t, "snapshot")
	file := filepath.Join(t.TempDir(), "backup.nbha")

	if _, err := SaveSnapshot(SaveOptions{DataDir: n.dataDir, File: file, Logger: log}); !errors.Is(err, ErrDataDirLocked) {
		t.Fatalf("save from a running node: %v, want ErrDataDirLocked", err)
	}
	for _, name := range []string{"witness", "node1", "node2"} {
		c.stop(name)
	}
	before, index, term := storedState(t, n.dataDir)

	info, err := SaveSnapshot(SaveOptions{DataDir: n.dataDir, File: file, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if info.Index != index || info.Term != term || info.Node != "node1" || !reflect.DeepEqual(info.Members, []string{"node1", "node2", "witness"}) ||
		info.History != len(before.History) || info.CAHash == "" || info.Active != "node2" {
		t.Fatalf("saved %+v; stores at %d/%d, history %d", info, index, term, len(before.History))
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v, %v, want mode 0600", fi.Mode(), err)
	}
	if _, err := SaveSnapshot(SaveOptions{DataDir: n.dataDir, File: file, Logger: log}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("save over an existing file: %v", err)
	}

	if err := os.RemoveAll(filepath.Join(n.dataDir, "raft")); err != nil {
		t.Fatal(err)
	}
	plan, err := RestoreSnapshot(RestoreOptions{DataDir: n.dataDir, File: file, Logger: log})
	if !errors.Is(err, ErrForceRequired) || plan.Existing || !reflect.DeepEqual(plan.Others, []string{"node2", "witness"}) {
		t.Fatalf("restore without force: %+v, %v", plan, err)
	}
	if _, err := os.Stat(filepath.Join(n.dataDir, "raft")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a dry run created the raft dir: %v", err)
	}
	if plan, err = RestoreSnapshot(RestoreOptions{DataDir: n.dataDir, File: file, Force: true, Logger: log}); err != nil || !plan.Restored {
		t.Fatalf("restore: %+v, %v", plan, err)
	}

	check := func(what string) *Agent {
		t.Helper()
		a := c.start("node1")
		waitFor(t, 10*time.Second, "node1 to lead alone "+what, func() error {
			if !a.IsLeader() {
				return fmt.Errorf("node1 is %s", a.RaftState())
			}
			return nil
		})
		if got := raftServerNames(t, a); !reflect.DeepEqual(got, []string{"node1"}) {
			t.Fatalf("raft configuration %s: %v", what, got)
		}
		// The term carries on from the snapshot's (raftKeyCurrentTerm).
		if got := raftTerm(a); got <= info.Term {
			t.Fatalf("term %s: %d, want above the snapshot's %d", what, got, info.Term)
		}
		st := a.FSM().State()
		if !reflect.DeepEqual(st.History[:len(before.History)], before.History) || !reflect.DeepEqual(memberNames(st), memberNames(before)) ||
			!reflect.DeepEqual(st.Members, before.Members) {
			t.Fatalf("state %s:\nhistory %+v\nmembers %v\nbefore:\nhistory %+v\nmembers %v", what, st.History, memberNames(st), before.History, memberNames(before))
		}
		return a
	}
	check("after a restore into a wiped raft dir")

	// Restore while the agent runs: refused.
	if _, err := RestoreSnapshot(RestoreOptions{DataDir: n.dataDir, File: file, Force: true, Logger: log}); !errors.Is(err, ErrDataDirLocked) {
		t.Fatalf("restore into a running node: %v, want ErrDataDirLocked", err)
	}
	c.stop("node1")
	// Over existing state: the old state is kept aside.
	plan, err = RestoreSnapshot(RestoreOptions{DataDir: n.dataDir, File: file, Force: true, Logger: log})
	if err != nil || !plan.Existing || plan.KeptAt == "" {
		t.Fatalf("restore over existing state: %+v, %v", plan, err)
	}
	if _, err := os.Stat(filepath.Join(plan.KeptAt, "raft.db")); err != nil {
		t.Fatalf("old state not kept: %v", err)
	}
	check("after a restore over existing state")
}

// A snapshot file that does not check is refused, naming the problem, and
// the data dir is left as it was.
func TestSnapshot_RestoreRefusesBadFiles(t *testing.T) {
	c := newTestCluster(t)
	n := c.init("node1", "127.0.0.1")
	c.stop("node1")
	log := testLogger(t, "snapshot")
	dir := t.TempDir()
	good := filepath.Join(dir, "good.nbha")
	if _, err := SaveSnapshot(SaveOptions{DataDir: n.dataDir, File: good, Logger: log}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	_, body, err := DecodeSnapshotFile(b)
	if err != nil {
		t.Fatal(err)
	}
	resum := func(b []byte) []byte {
		sum := sha256.Sum256(b[:len(b)-sha256.Size])
		return append(b[:len(b)-sha256.Size:len(b)-sha256.Size], sum[:]...)
	}
	flip := func(i int) []byte {
		out := append([]byte(nil), b...)
		out[i] ^= 0x40
		return out
	}
	version := flip(len(SnapshotFileMagic))
	version[len(SnapshotFileMagic)] = 2
	badState := append([]byte(nil), b...)
	copy(badState[len(b)-sha256.Size-len(body):], "NBHASNAP\x09")
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"flipped byte in the state", flip(len(b) - sha256.Size - 10), "checksum mismatch"},
		{"flipped byte in the header", flip(20), "checksum mismatch"},
		{"flipped byte in the checksum", flip(len(b) - 1), "checksum mismatch"},
		{"truncated", b[:len(b)-100], "checksum mismatch"},
		{"wrong version", resum(version), "format version 2, this build reads version 1"},
		{"not a snapshot file", []byte(strings.Repeat("x", 100)), "not a newbieha snapshot file"},
		{"empty", nil, "too short"},
		{"state of an unknown format", resum(badState), "state:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(p, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := RestoreSnapshot(RestoreOptions{DataDir: n.dataDir, File: p, Force: true, Logger: log})
			if !errors.Is(err, ErrBadSnapshotFile) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("restore: %v, want ErrBadSnapshotFile with %q", err, tt.want)
			}
		})
	}
	// Nothing was touched: the node starts with its own state.
	entries, err := os.ReadDir(n.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".raft-restore") || strings.HasPrefix(e.Name(), "raft.before") {
			t.Fatalf("a refused restore left %s", e.Name())
		}
	}
	a := c.start("node1")
	waitFor(t, 10*time.Second, "node1 to lead", func() error {
		if a.node.raft.State() != raft.Leader {
			return errors.New("not leader")
		}
		return nil
	})
}

// snapshot save with the agents running: the leader's file holds every
// entry committed before the call; nothing stops; the file restores into
// a wiped node with the same history. A follower saves what it applied.
func TestSnapshot_OnlineSaveRestoresWithTheSameHistory(t *testing.T) {
	c := newVIPCluster(t)
	c.failoverTo("node2")
	leader := c.leader().agent
	lname := leader.Name()
	dir := t.TempDir()

	data, info, err := c.client(lname).Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	live := leader.FSM().State()
	if info.Index < leader.node.raft.CommitIndex() || info.Node != lname || info.Active != "node2" ||
		info.History != len(live.History) || !reflect.DeepEqual(info.Members, []string{"node1", "node2", "witness"}) {
		t.Fatalf("online snapshot %+v; leader committed %d, history %d", info, leader.node.raft.CommitIndex(), len(live.History))
	}
	file := filepath.Join(dir, "online.nbha")
	if err := WriteNewFile(file, data); err != nil {
		t.Fatal(err)
	}
	if err := WriteNewFile(file, data); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("write over an existing file: %v", err)
	}
	// Nothing applied since: the newest snapshot is sent again, same index.
	_, again, err := c.client(lname).Snapshot(t.Context())
	if err != nil || again.Index < info.Index {
		t.Fatalf("second save: %+v, %v; first at %d", again, err, info.Index)
	}
	// A follower's own applied state.
	for name, n := range c.nodes {
		if name == lname {
			continue
		}
		_, finfo, err := c.client(name).Snapshot(t.Context())
		if err != nil || finfo.Node != name || finfo.Index == 0 || finfo.Index > n.agent.node.raft.AppliedIndex() {
			t.Fatalf("follower %s: %+v, %v (applied %d)", name, finfo, err, n.agent.node.raft.AppliedIndex())
		}
		break
	}

	for _, name := range []string{"witness", "node1", "node2"} {
		c.stop(name)
	}
	n := c.nodes["node1"]
	if err := os.RemoveAll(filepath.Join(n.dataDir, "raft")); err != nil {
		t.Fatal(err)
	}
	if _, err := RestoreSnapshot(RestoreOptions{DataDir: n.dataDir, File: file, Force: true, Logger: testLogger(t, "restore")}); err != nil {
		t.Fatal(err)
	}
	a := c.start("node1")
	waitFor(t, 10*time.Second, "node1 to lead alone", func() error {
		if !a.IsLeader() {
			return fmt.Errorf("node1 is %s", a.RaftState())
		}
		return nil
	})
	st := a.FSM().State()
	if len(st.History) < len(live.History) || !reflect.DeepEqual(st.History[:len(live.History)], live.History) || !reflect.DeepEqual(st.Members, live.Members) {
		t.Fatalf("restored history %+v\nwant %+v", st.History, live.History)
	}
}
