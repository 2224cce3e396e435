package cluster

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/newbieha/newbieha/cluster/pki"
)

func TestGossipVerifier_CertificateSpeaksOnlyForItsOwnMemberName(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *pki.CA, name string) []byte {
		key, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		c, err := ca.Issue(pki.NodeIdentity{Name: name, Role: "gpu", IP: mustAddr("127.0.0.1")}, &key.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return c.Raw
	}
	members := map[string]bool{"node1": true, "witness": true}
	v := newGossipVerifier(ca.Cert, func(n, _ string) bool { return members[n] })
	node1, witness := issue(ca, "node1"), issue(ca, "witness")
	if _, err := v.verify("node1", node1); err != nil {
		t.Fatalf("node1's own certificate: %v", err)
	}
	if _, err := v.verify("node1", witness); err == nil {
		t.Fatal("the witness's certificate spoke for node1")
	}
	if _, err := v.verify("node1", foreignBundle(t).NodeCert.Raw); err == nil {
		t.Fatal("a certificate of another CA was accepted")
	}
	if _, err := v.verify("node1", []byte("garbage")); err == nil {
		t.Fatal("garbage accepted")
	}
	delete(members, "node1") // removed: its certificate stops counting at once
	if _, err := v.verify("node1", node1); err == nil {
		t.Fatal("a removed member's certificate was accepted")
	}
}

// Gossip carries the health verdicts and checks, not the latency
// histograms kept for the node's own metrics.
func TestGossipDetail_LeavesOutLatency(t *testing.T) {
	in := map[string]any{"report": map[string]any{"checks": []any{
		map[string]any{"name": "gpu", "ok": true, "duration_ns": 12, "latency": map[string]any{"count": 3}},
	}}}
	b, _ := json.Marshal(gossipDetail(in))
	if strings.Contains(string(b), "latency") || strings.Contains(string(b), "duration_ns") || !strings.Contains(string(b), `"name":"gpu"`) {
		t.Fatalf("gossip detail %s", b)
	}
}
