package main

import (
	"bytes"
	"context"
	"errors"
	"github.com/newbieha/newbieha/internal/logging"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/newbieha/newbieha/cluster"
)

// recoverRoot is the part of the command tree these commands live in.
func recoverRoot() *cobra.Command {
	root := &cobra.Command{Use: "newbieha", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(withRecoverCmd(newRaftCmd()), newSnapshotCmd())
	return root
}

func runRecoverCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := recoverRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// squash collapses runs of white space, for output aligned by tabwriter.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

func freeTestPorts(t *testing.T) cluster.Ports {
	t.Helper()
	var ps []int
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ps = append(ps, ln.Addr().(*net.TCPAddr).Port)
	}
	return cluster.Ports{API: ps[0], Raft: ps[1], Gossip: ps[2]}
}

// The commands of docs/recovery.md as an operator types them, on a
// one-node cluster: raft recover (plan, then --force), snapshot save,
// inspect, restore (plan, a corrupt file, --force), and the refusals of a
// running agent.
func TestRecoverCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	_, err := cluster.Init(context.Background(), cluster.InitOptions{DataDir: dir, Name: "node1", Advertise: "127.0.0.1", Ports: freeTestPorts(t),
		Raft: cluster.RaftTimings{HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond, LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}

	out, err := runRecoverCLI(t, "raft", "recover", "--data-dir", dir)
	if !errors.Is(err, cluster.ErrForceRequired) || !strings.Contains(out, "Raft configuration now, read from the stores:") ||
		!strings.Contains(out, "node1") || !strings.Contains(out, "Nothing changed") {
		t.Fatalf("recover without --force: %v\n%s", err, out)
	}
	out, err = runRecoverCLI(t, "raft", "recover", "--data-dir", dir, "--force")
	if err != nil || !strings.Contains(out, "Recovered: node1 is the only voter") || !strings.Contains(out, "newbieha token create") {
		t.Fatalf("recover --force: %v\n%s", err, out)
	}

	file := filepath.Join(t.TempDir(), "backup.nbha")
	out, err = runRecoverCLI(t, "snapshot", "save", file, "--data-dir", dir)
	if err != nil || !strings.Contains(squash(out), "members: node1") {
		t.Fatalf("snapshot save: %v\n%s", err, out)
	}
	if out, err = runRecoverCLI(t, "snapshot", "inspect", file); err != nil || !strings.Contains(squash(out), "saved from: node1") {
		t.Fatalf("snapshot inspect: %v\n%s", err, out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	bad := filepath.Join(t.TempDir(), "bad.nbha")
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runRecoverCLI(t, "snapshot", "restore", bad, "--data-dir", dir, "--force"); !errors.Is(err, cluster.ErrBadSnapshotFile) || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("restore of a corrupt file: %v", err)
	}
	out, err = runRecoverCLI(t, "snapshot", "restore", file, "--data-dir", dir)
	if !errors.Is(err, cluster.ErrForceRequired) || !strings.Contains(out, "moved aside to") || !strings.Contains(out, "Nothing changed") {
		t.Fatalf("restore without --force: %v\n%s", err, out)
	}
	out, err = runRecoverCLI(t, "snapshot", "restore", file, "--data-dir", dir, "--force")
	if err != nil || !strings.Contains(out, "node1 is the only voter") || !strings.Contains(out, "previous Raft state is kept at") {
		t.Fatalf("restore --force: %v\n%s", err, out)
	}

	nc, err := cluster.LoadNodeConfig(filepath.Join(dir, cluster.ConfigFileName))
	if err != nil {
		t.Fatal(err)
	}
	a, err := cluster.Start(cluster.Config{DataDir: dir, Node: nc, Logger: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !a.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("the restored node does not lead")
		}
		time.Sleep(25 * time.Millisecond)
	}
	for _, args := range [][]string{
		{"raft", "recover", "--data-dir", dir, "--force"},
		{"snapshot", "restore", file, "--data-dir", dir, "--force"},
	} {
		if _, err := runRecoverCLI(t, args...); !errors.Is(err, cluster.ErrDataDirLocked) || !strings.Contains(err.Error(), "raft.db") {
			t.Fatalf("%s on a running agent: %v, want the lock named", strings.Join(args[:2], " "), err)
		}
	}
	// snapshot save on a running agent asks the agent for the state.
	online := filepath.Join(t.TempDir(), "online.nbha")
	if out, err := runRecoverCLI(t, "snapshot", "save", online, "--data-dir", dir); err != nil || !strings.Contains(out, "Saved "+online) {
		t.Fatalf("snapshot save on a running agent: %v\n%s", err, out)
	}
	if info, _, err := cluster.ReadSnapshotFile(online); err != nil || info.Node != "node1" || info.Index == 0 {
		t.Fatalf("online snapshot file: %+v, %v", info, err)
	}
}
