package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// writeOperatorDir asks node's socket for an operator certificate, as
// `newbieha operator cert` does, and writes the directory --cert-dir reads.
func writeOperatorDir(t *testing.T, c *testCluster, node, name string, ttl time.Duration) string {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := pki.EncodePublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.client(node).OperatorCert(t.Context(), OperatorCertRequest{Name: name, TTL: Duration(ttl), PublicKey: string(pub)})
	if err != nil {
		t.Fatalf("operator cert from %s: %v", node, err)
	}
	kb, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for f, data := range map[string][]byte{pki.CACertFile: []byte(resp.CACert), pki.OperatorCertFile: []byte(resp.Cert), pki.OperatorKeyFile: kb} {
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// An operator certificate runs operator commands remotely: a follower
// redirects a change to the leader, which records the operator's name.
func TestOperatorCert_RemoteFailoverThroughAFollowerIsAuditedUnderTheOperatorsName(t *testing.T) {
	c := newVIPCluster(t)
	n2 := c.nodes["node2"]
	dir := writeOperatorDir(t, c, "node1", "alice", time.Hour)
	if !c.nodes["node1"].agent.IsLeader() || n2.agent.IsLeader() {
		t.Fatal("want node1 leading and node2 following")
	}
	cl, err := NewRemoteClient(n2.agent.cfg.Node.APIAddr(), dir)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.Failover(t.Context(), FailoverRequest{To: "node2"})
	if err != nil {
		t.Fatalf("failover through node2 as alice: %v", err)
	}
	if resp.To != "node2" {
		t.Fatalf("failover response %+v", resp)
	}
	st, err := cl.Status(t.Context())
	if err != nil || st.Node != "node2" {
		t.Fatalf("status from node2: %+v %v", st.Node, err)
	}
	waitFor(t, 10*time.Second, "alice's failover in the events", func() error {
		ev, err := cl.Events(t.Context())
		if err != nil {
			return err
		}
		for _, e := range ev {
			if e.Kind == "operator" && strings.HasPrefix(e.Detail, "alice: failover node1 -> node2") {
				return nil
			}
		}
		return errors.New("not yet")
	})
	// The operator certificate signs no other: only root on a socket can.
	if _, err := cl.OperatorCert(t.Context(), OperatorCertRequest{Name: "mallory", PublicKey: "x"}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("operator cert with an operator certificate: %v, want forbidden", err)
	}
}

// Root on the witness's socket acts only where the witness can: it holds
// no CA key to carry the request to the leader, and says so.
func TestOperatorCert_WitnessSocketCannotActForRootOnAnotherLeader(t *testing.T) {
	c := newTestCluster(t)
	c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	w := c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	if w.agent.IsLeader() {
		t.Skip("the witness leads; this test needs it following") // init makes node1 lead
	}
	err := c.client("witness").Maintenance(t.Context(), true, "manual:test")
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "no CA key") {
		t.Fatalf("maintenance on the witness's socket: %v, want forbidden naming the CA key", err)
	}
	if _, err := c.client("witness").OperatorCert(t.Context(), OperatorCertRequest{Name: "bob", PublicKey: "x"}); err == nil {
		t.Fatal("the witness signed an operator certificate")
	}
	// Reading works on any member.
	if _, err := c.client("witness").Status(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := c.nodes["node1"].agent.FSM().State(); st.Maintenance {
		t.Fatal("maintenance was switched on")
	}
}

// A remote client names what is wrong with --server and --cert-dir before
// it calls anyone.
func TestOperatorCert_RemoteClientNamesABadServerOrCertDir(t *testing.T) {
	c := newTestCluster(t)
	c.init("node1", "127.0.0.1")
	dir := writeOperatorDir(t, c, "node1", "alice", time.Minute)
	if _, err := NewRemoteClient("127.0.0.1:1", filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "newbieha operator cert") {
		t.Fatalf("missing dir: %v", err)
	}
	if _, err := NewRemoteClient("no-port", dir); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Fatalf("bad server: %v", err)
	}
	if _, err := NewRemoteClient("127.0.0.1:1", dir); err != nil {
		t.Fatalf("good dir: %v", err)
	}
}
