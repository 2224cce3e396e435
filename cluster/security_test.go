package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// foreignBundle is a certificate from another CA, valid in every other way.
func foreignBundle(t *testing.T) *pki.Bundle {
	t.Helper()
	ca, err := pki.NewCA("evil")
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(pki.NodeIdentity{Name: "node9", Role: "gpu", IP: mustAddr("127.0.0.9")}, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.Bundle{CA: ca, NodeCert: cert, NodeKey: key}
}

func TestRaftPort_RefusesClientsWithoutClusterCertificate(t *testing.T) {
	c := newTestCluster(t)
	n := c.init("node1", "127.0.0.1")
	addr := n.agent.cfg.Node.RaftAddr()

	clients := map[string]*tls.Config{
		"no certificate":      {InsecureSkipVerify: true, MinVersion: tls.VersionTLS13},
		"foreign certificate": func() *tls.Config { cfg := foreignBundle(t).ClientConfig(); cfg.InsecureSkipVerify = true; return cfg }(),
	}
	for name, cfg := range clients {
		t.Run(name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", addr, cfg)
			if err != nil {
				return // refused during the handshake
			}
			defer conn.Close()
			// TLS 1.3: the server's verdict on the client certificate
			// arrives after the client's handshake completes.
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = conn.Write([]byte{0, 1, 2, 3})
			_, err = io.ReadAll(conn)
			if err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("raft port accepted a client with %s (read err %v)", name, err)
			}
		})
	}
	// The cluster's own certificate is accepted (the test could fail).
	conn, err := tls.Dial("tcp", addr, n.agent.bundle.ClientConfig())
	if err != nil {
		t.Fatalf("cluster certificate refused: %v", err)
	}
	conn.Close()
}

func TestAPI_RequiresClusterCertificateExceptJoin(t *testing.T) {
	c := newTestCluster(t)
	n := c.init("node1", "127.0.0.1")
	base := "https://" + n.agent.cfg.Node.APIAddr()
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	foreignCfg := foreignBundle(t).ClientConfig()
	foreignCfg.InsecureSkipVerify = true
	foreign := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: foreignCfg}}

	calls := []struct{ method, path, body string }{
		{"GET", "/v1/status", ""},
		{"GET", "/v1/self", ""},
		{"POST", "/v1/tokens", `{"ttl":"1h"}`},
		{"POST", "/v1/remove", `{"name":"node1"}`},
		{"POST", "/v1/internal/apply", `{"command":"AQE="}`},
		{"POST", "/v1/internal/voter", `{"name":"x","raft_addr":"127.0.0.9:1"}`},
	}
	for _, cl := range []struct {
		name   string
		client *http.Client
	}{{"anonymous", anon}, {"foreign", foreign}} {
		for _, call := range calls {
			req, _ := http.NewRequest(call.method, base+call.path, strings.NewReader(call.body))
			resp, err := cl.client.Do(req)
			if err != nil {
				// the foreign certificate may be refused during the handshake
				if cl.name == "foreign" {
					continue
				}
				t.Fatalf("%s %s: %v", call.method, call.path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s client: %s %s = %d, want 401", cl.name, call.method, call.path, resp.StatusCode)
			}
		}
	}
	// Join is reachable without a certificate but needs a valid token.
	resp, err := anon.Post(base+"/v1/join", "application/json", strings.NewReader(`{"token":"nbha1.abcdef.00000000000000000000000000000000.`+strings.Repeat("0", 64)+`","name":"x","role":"gpu","advertise":"127.0.0.9","ports":{"api":1,"raft":2,"gossip":3},"public_key":""}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusForbidden {
		t.Errorf("join without valid token = %d, want 400 or 403", resp.StatusCode)
	}
	// A member's certificate reaches the API (so the 401s above mean something).
	var self SelfReport
	if err := n.agent.peerCall(context.Background(), n.agent.cfg.Node.APIAddr(), "GET", "/v1/self", nil, &self, false); err != nil || self.Name != "node1" {
		t.Fatalf("member call: %v %+v", err, self)
	}
}

func TestJoin_AnyGPUMemberAdmitsWhileFirstNodeIsDown(t *testing.T) {
	c := newTestCluster(t)
	c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	ctx := context.Background()
	waitFor(t, 15*time.Second, "three voters", func() error {
		return healthyStatus(c.nodes["node1"].agent.Status(ctx), "node1", "node2", "witness")
	})
	if c.nodes["node2"].agent.bundle.CA.Key == nil {
		t.Fatal("GPU member node2 did not receive the CA key")
	}
	if c.nodes["witness"].agent.bundle.CA.Key != nil {
		t.Fatal("witness received the CA key")
	}
	c.stop("node1")
	waitFor(t, 15*time.Second, "a leader without node1", func() error {
		if l := c.nodes["node2"].agent.Leader(); l == "" || l == "node1" {
			return errors.New("leader " + l)
		}
		return nil
	})
	tr, err := c.client("node2").CreateToken(ctx, time.Hour, fsm.RoleGPU)
	if err != nil {
		t.Fatalf("token from node2: %v", err)
	}
	c.token = tr.Token
	// Through the witness, which holds no CA key and passes the join on.
	c.join("node4", "127.0.0.4", fsm.RoleGPU, "witness")
	waitFor(t, 15*time.Second, "node4 a voter", func() error {
		s := c.nodes["node2"].agent.Status(ctx)
		for _, m := range s.Members {
			if m.Name == "node4" && m.Voter && m.Raft == RaftFollower {
				return nil
			}
		}
		return errors.New("node4 not a follower voter yet")
	})
}

func TestRemove_AndWipedNodeJoinsAgainUnderItsOldName(t *testing.T) {
	c := newTestCluster(t)
	c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	ctx := context.Background()
	all := []string{"node1", "node2", "witness"}
	waitFor(t, 15*time.Second, "three voters", func() error { return healthyStatus(c.nodes["node1"].agent.Status(ctx), all...) })

	// Wipe node2 and join it again under the same name, new ports. A
	// join under the name of a current member is refused until it is
	// removed.
	c.stop("node2")
	n := c.nodes["node2"]
	n.dataDir = t.TempDir()
	n.ports = freePorts(t, n.ip)
	if err := c.tryJoin(n, "witness", c.token); !errors.Is(err, ErrMemberExists) {
		t.Fatalf("rejoin of wiped node2 before remove: err = %v, want ErrMemberExists", err)
	}
	if err := NewLocalClient(c.nodes["node1"].dataDir).Remove(ctx, "node2"); err != nil {
		t.Fatalf("remove node2: %v", err)
	}
	n.dataDir = t.TempDir()
	n.ports = freePorts(t, n.ip)
	if err := c.tryJoin(n, "witness", c.token); err != nil {
		t.Fatalf("rejoin of wiped node2: %v", err)
	}
	c.start("node2")
	waitFor(t, 15*time.Second, "wiped node2 back as voter", func() error {
		s := c.nodes["node1"].agent.Status(ctx)
		if err := healthyStatus(s, all...); err != nil {
			return err
		}
		for _, m := range s.Members {
			if m.Name == "node2" && m.RaftAddr != n.agent.cfg.Node.RaftAddr() {
				return errors.New("node2 still at old address " + m.RaftAddr)
			}
		}
		return nil
	})

	// Remove the witness through a follower's local API.
	var follower *testNode
	for _, name := range all {
		if !c.nodes[name].agent.IsLeader() && name != "witness" {
			follower = c.nodes[name]
		}
	}
	if err := NewLocalClient(follower.dataDir).Remove(ctx, "witness"); err != nil {
		t.Fatalf("remove witness: %v", err)
	}
	waitFor(t, 15*time.Second, "two members", func() error {
		return healthyStatus(c.nodes["node1"].agent.Status(ctx), "node1", "node2")
	})
	if err := NewLocalClient(follower.dataDir).Remove(ctx, "ghost"); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("remove ghost: err = %v, want ErrUnknownMember", err)
	}
}
