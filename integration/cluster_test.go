//go:build integration

package integration

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCluster_OperatorFlow sets a cluster up exactly as an operator would,
// on three hosts (network namespaces on one bridge), then kills an agent
// with SIGKILL and restarts it, and wipes a node and joins it again.
func TestCluster_OperatorFlow(t *testing.T) {
	l := newLab(t, "10.77.0")
	n1, n2, w := l.addHost("node1", 1), l.addHost("node2", 2), l.addHost("witness", 3)
	all := []string{"node1", "node2", "witness"}

	out := l.mustCLI(n1, "init", "--name", "node1", "--advertise", n1.ip, "--data-dir", n1.dataDir, "--output", "json")
	var res struct{ Token, Join string }
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Token == "" || !strings.Contains(res.Join, "newbieha join "+n1.ip+":7700 --token "+res.Token) {
		t.Fatalf("init output %q: %v", out, err)
	}
	l.startAgent(n1)
	l.mustCLI(n2, "join", n1.ip, "--token", res.Token, "--name", "node2", "--role", "gpu", "--advertise", n2.ip, "--data-dir", n2.dataDir)
	l.startAgent(n2)
	l.mustCLI(w, "join", n1.ip+":7700", "--token", res.Token, "--name", "witness", "--role", "witness", "--advertise", w.ip, "--data-dir", w.dataDir)
	l.startAgent(w)

	for _, h := range []*host{n1, n2, w} {
		waitFor(t, 30*time.Second, "healthy status from "+h.name, func() error {
			s, err := l.status(h)
			if err != nil {
				return err
			}
			return healthy(s, all...)
		})
	}
	for _, p := range []string{n2.dataDir, n2.dataDir + "/tls/node.key", n2.dataDir + "/newbieha.yaml"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}

	// SIGKILL the leader's agent and restart it: a new leader is elected
	// meanwhile, and the restarted agent rejoins as follower by itself.
	s, _ := l.status(n2)
	leader := l.hosts[s.Leader]
	l.kill(leader, syscall.SIGKILL)
	other := n2
	if leader == n2 {
		other = n1
	}
	waitFor(t, 30*time.Second, "a new leader after SIGKILL of "+leader.name, func() error {
		s, err := l.status(other)
		if err != nil {
			return err
		}
		if s.Leader == "" || s.Leader == leader.name {
			return errStr("leader is " + s.Leader)
		}
		return nil
	})
	l.startAgent(leader)
	waitFor(t, 30*time.Second, "restarted "+leader.name+" healthy", func() error {
		s, err := l.status(leader)
		if err != nil {
			return err
		}
		return healthy(s, all...)
	})

	// Wipe the witness and join it again under its old name with a fresh token.
	l.kill(w, syscall.SIGKILL)
	if err := os.RemoveAll(w.dataDir); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(l.mustCLI(n2, "token", "create", "--data-dir", n2.dataDir, "--ttl", "10m"))
	if strings.Contains(tok, "\n") || !strings.HasPrefix(tok, "nbha1.") {
		t.Fatalf("token create printed %q, want the token alone", tok)
	}
	// The name is a current member's until it is removed.
	if _, err := l.cli(w, "join", n2.ip, "--token", tok, "--name", "witness", "--role", "witness", "--advertise", w.ip, "--data-dir", w.dataDir); err == nil || !strings.Contains(err.Error(), "current member") {
		t.Fatalf("join under a current member's name: %v, want a refusal", err)
	}
	if err := os.RemoveAll(w.dataDir); err != nil {
		t.Fatal(err)
	}
	l.mustCLI(n2, "remove", "witness", "--data-dir", n2.dataDir)
	l.mustCLI(w, "join", n2.ip, "--token", tok, "--name", "witness", "--role", "witness", "--advertise", w.ip, "--data-dir", w.dataDir)
	l.startAgent(w)
	for _, h := range []*host{n1, n2, w} {
		waitFor(t, 30*time.Second, "healthy after wiped witness rejoined, from "+h.name, func() error {
			s, err := l.status(h)
			if err != nil {
				return err
			}
			return healthy(s, all...)
		})
	}

	// A wrong token changes nothing.
	bad := l.addHost("intruder", 9)
	wrong := tok[:len(tok)-1] + map[bool]string{true: "1", false: "0"}[strings.HasSuffix(tok, "0")]
	if _, err := l.cli(bad, "join", n1.ip, "--token", wrong, "--name", "intruder", "--role", "gpu", "--advertise", bad.ip, "--data-dir", bad.dataDir); err == nil {
		t.Fatal("join with a wrong token succeeded")
	}
	s, err := l.status(n1)
	if err != nil {
		t.Fatal(err)
	}
	if err := healthy(s, all...); err != nil {
		t.Fatalf("after refused join: %v", err)
	}
}

type errStr string

func (e errStr) Error() string { return string(e) }
