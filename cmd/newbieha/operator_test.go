package main

import (
	"context"
	"github.com/newbieha/newbieha/internal/logging"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster"
)

// runCLI runs the root command in-process and returns what it printed.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out strings.Builder
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.Execute()
	return out.String(), err
}

// `operator cert` writes a bundle (0700 dir, 0600 files) with a key made
// by the CLI, and `--server --cert-dir` runs commands with it; the
// environment variables do the same; a half-given pair is refused.
func TestOperatorCert_CLIWritesABundleThatRunsCommandsRemotely(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ports := freeTestPorts(t)
	_, err := cluster.Init(context.Background(), cluster.InitOptions{DataDir: dir, Name: "node1", Advertise: "127.0.0.1", Ports: ports,
		Raft: cluster.RaftTimings{HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond, LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
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
	for deadline := time.Now().Add(10 * time.Second); !a.IsLeader(); time.Sleep(25 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("node1 does not lead")
		}
	}
	out := filepath.Join(t.TempDir(), "alice")
	if msg, err := runCLI(t, "operator", "cert", "--name", "alice", "--ttl", "1h", "--out", out, "--data-dir", dir); err != nil || !strings.Contains(msg, "operator alice") {
		t.Fatalf("operator cert: %v\n%s", err, msg)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("bundle dir: %v %v", fi, err)
	}
	for _, f := range []string{"ca.crt", "operator.crt", "operator.key"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
	}
	if _, err := runCLI(t, "operator", "cert", "--name", "alice", "--out", out, "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "holds an operator key already") {
		t.Fatalf("second cert into the same dir: %v", err)
	}
	if _, err := runCLI(t, "operator", "cert", "--name", "Alice Smith", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "--name") {
		t.Fatalf("bad name: %v", err)
	}
	server := "127.0.0.1:" + strconv.Itoa(ports.API)
	msg, err := runCLI(t, "--server", server, "--cert-dir", out, "maintenance", "on", "--reason", "manual:remote test")
	if err != nil {
		t.Fatalf("remote maintenance: %v\n%s", err, msg)
	}
	if !a.FSM().State().Maintenance {
		t.Fatal("maintenance is not on after the remote command")
	}
	t.Setenv(envServer, server)
	t.Setenv(envCertDir, out)
	if msg, err := runCLI(t, "history", "--events"); err != nil || !strings.Contains(msg, "alice: maintenance on=true") {
		t.Fatalf("history --events through the environment: %v\n%s", err, msg)
	}
	t.Setenv(envCertDir, "")
	if _, err := runCLI(t, "history"); err == nil || !strings.Contains(err.Error(), "--cert-dir") {
		t.Fatalf("--server without --cert-dir: %v", err)
	}
}
