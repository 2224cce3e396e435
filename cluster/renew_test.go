package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// selfWith calls GET /v1/self on to with the TLS identity of b.
func selfWith(t *testing.T, b *pki.Bundle, to *testNode) (int, string) {
	t.Helper()
	resp, err := apiClient(b).Get("https://" + to.agent.cfg.Node.APIAddr() + "/v1/self")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var eb ErrorBody
	_ = decodeResponse(resp, &eb)
	return resp.StatusCode, eb.Error
}

// raftOpen reports whether node to's Raft port keeps a connection made
// with cfg open (a refused peer is closed after the handshake).
func raftOpen(to *testNode, cfg *tls.Config) bool {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", to.agent.cfg.Node.RaftAddr(), cfg)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// The holder renews its node certificate twice while it holds the VIP: the
// VIP never moves, the member record honours the newest two, and the
// first certificate is refused on the API and the Raft port (issue 9,
// item 3).
func TestRenew_HolderRenewsTwiceTheVIPStaysAndTheFirstCertificateIsWithdrawn(t *testing.T) {
	c := newVIPCluster(t)
	n1, n2 := c.nodes["node1"], c.nodes["node2"]
	first := &pki.Bundle{CA: n1.agent.bundle.CA, NodeCert: n1.agent.bundle.Leaf(), NodeKey: n1.agent.bundle.NodeKey}
	stop := make(chan struct{})
	bad := c.watchHolders("node1", stop)
	for i := 0; i < 2; i++ {
		if err := n1.agent.renewCert(t.Context()); err != nil {
			t.Fatalf("renewal %d: %v", i+1, err)
		}
	}
	time.Sleep(time.Second) // lease rounds with the newest certificate
	close(stop)
	if b := <-bad; len(b) > 0 {
		t.Fatalf("the VIP was not held by node1 alone in %d samples during renewals: %v", len(b), b[:min(len(b), 5)])
	}
	leaf := n1.agent.bundle.Leaf()
	if pki.Serial(leaf) == pki.Serial(first.NodeCert) {
		t.Fatal("node1 still presents its first certificate")
	}
	waitFor(t, 5*time.Second, "node2 to apply node1's record", func() error {
		m, _ := n2.agent.FSM().Member("node1")
		if len(m.Certs) != 2 || m.Certs[0].Serial != pki.Serial(leaf) {
			return fmt.Errorf("node1's certs on node2: %+v", m.Certs)
		}
		return nil
	})
	if m, _ := n2.agent.FSM().Member("node1"); m.Honours(pki.Serial(first.NodeCert)) {
		t.Fatal("the first certificate is still honoured after two renewals")
	}
	if status, msg := selfWith(t, first, n2); status != http.StatusForbidden {
		t.Fatalf("the first certificate on node2's API: %d %s, want 403", status, msg)
	}
	if status, msg := selfWith(t, n1.agent.bundle, n2); status != http.StatusOK {
		t.Fatalf("the current certificate on node2's API: %d %s", status, msg)
	}
	if raftOpen(n2, first.ClientConfig()) {
		t.Fatal("the first certificate kept a Raft connection to node2 open")
	}
	if !raftOpen(n2, n1.agent.bundle.ClientConfig()) {
		t.Fatal("the current certificate was refused on node2's Raft port")
	}
	// Status (`newbieha cert status`) shows both, newest first.
	st, err := c.client("node2").Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Members {
		if m.Name == "node1" && (len(m.Certs) != 2 || m.Certs[0].Serial != pki.Serial(leaf)) {
			t.Fatalf("status shows node1's certs %+v", m.Certs)
		}
	}
	// The renewed certificate is on disk: a restart presents it.
	disk, err := pki.LoadBundle(n1.dataDir + "/" + tlsDirName)
	if err != nil || pki.Serial(disk.NodeCert) != pki.Serial(leaf) {
		t.Fatalf("node.crt on disk: %v, %v", err, disk)
	}
}

// The agent renews on its own once its certificate is within RenewBefore
// of expiry, the witness too (through a GPU member).
func TestRenew_LoopRenewsACertificateCloseToExpiry(t *testing.T) {
	c := newTestCluster(t)
	c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	w := c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	before := pki.Serial(w.agent.bundle.Leaf())
	c.stop("witness")
	c.configure = func(name string, cfg *Config) {
		if name == "witness" {
			cfg.RenewBefore, cfg.RenewCheck = pki.NodeValidity+time.Hour, 200*time.Millisecond
		}
	}
	c.start("witness")
	waitFor(t, 20*time.Second, "the witness to renew", func() error {
		m, _ := c.nodes["node1"].agent.FSM().Member("witness")
		if len(m.Certs) == 0 || m.Certs[0].Serial == before || pki.Serial(c.nodes["witness"].agent.bundle.Leaf()) == before {
			return fmt.Errorf("record %+v, presenting %s", m.Certs, pki.Serial(c.nodes["witness"].agent.bundle.Leaf()))
		}
		return nil
	})
}

// A node removed and joined again under its old name gets a new
// certificate; the old one, still valid, is refused (the member record
// honours only the new serial).
func TestRemove_OldCertificateOfANodeThatJoinedAgainIsRefused(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	// A third voter, so that node1 keeps its quorum with node2 stopped
	// however slowly the removal's request follows the stop.
	c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	old := c.nodes["node2"].agent.bundle
	c.stop("node2")
	if err := c.client("node1").Remove(t.Context(), "node2"); err != nil {
		t.Fatal(err)
	}
	tr, err := c.client("node1").CreateTokenUses(t.Context(), time.Hour, fsm.RoleGPU, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.token = tr.Token
	delete(c.nodes, "node2")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	if status, msg := selfWith(t, old, n1); status != http.StatusForbidden {
		t.Fatalf("the old certificate of node2: %d %s, want 403", status, msg)
	}
	if status, msg := selfWith(t, c.nodes["node2"].agent.bundle, n1); status != http.StatusOK {
		t.Fatalf("the new certificate of node2: %d %s", status, msg)
	}
}
