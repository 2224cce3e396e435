package cluster

import (
	"net/http"
	"testing"
	"time"

	"github.com/newbieha/newbieha/fsm"
)

// These tests are named after the attacks of issue 9's table (item 1 and
// item 3); each got 200 on the main branch before the operator/peer split.

// The witness's certificate takes no operator action: failover,
// maintenance, remove, token create, raft transfer-leader, config apply,
// drill inject are all 403, and nothing changes.
func TestAPI_WitnessCertificateTakesNoOperatorAction(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	w := c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	before := n1.agent.FSM().State()
	client := apiClient(w.agent.bundle)
	base := "https://" + n1.agent.cfg.Node.APIAddr()
	for path, body := range map[string]any{
		"/v1/failover":             FailoverRequest{To: "node2", Force: true},
		"/v1/maintenance":          MaintenanceRequest{On: true, Reason: "manual:attack"},
		"/v1/remove":               RemoveRequest{Name: "node2"},
		"/v1/tokens":               TokenCreateRequest{TTL: Duration(168 * time.Hour)},
		"/v1/raft/transfer-leader": TransferLeaderRequest{To: "witness"},
		"/v1/config":               ConfigRequest{YAML: "failover:\n  hold_down: 1s\n"},
		"/v1/drill/inject":         DrillRequest{Node: "node1", Check: "model", For: Duration(time.Minute)},
	} {
		if status, eb, raw := post(t, client, base+path, body); status != http.StatusForbidden || eb.Code != "forbidden" {
			t.Errorf("%s with the witness's certificate: %d %s, want 403", path, status, raw)
		}
	}
	after := n1.agent.FSM().State()
	if len(after.Members) != len(before.Members) || after.Maintenance || after.Active != before.Active || len(after.Tokens) != len(before.Tokens) || string(after.Settings) != string(before.Settings) {
		t.Fatalf("the state changed: %+v -> %+v", before, after)
	}
	if !n1.agent.IsLeader() {
		t.Fatal("leadership moved")
	}
}

// A removed node's certificate, still valid, cannot apply a config with an
// exec health check (which would run as root on both GPU nodes).
func TestAPI_RemovedNodeCertificateCannotApplyAnExecCheck(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	c.join("node3", "127.0.0.4", fsm.RoleGPU, "node1")
	removed := c.nodes["node3"].agent.bundle
	c.stop("node3")
	if err := c.client("node1").Remove(t.Context(), "node3"); err != nil {
		t.Fatal(err)
	}
	before := string(n1.agent.FSM().State().Settings)
	doc := "health:\n  checks:\n    - name: pwn\n      kind: exec\n      command: [\"/bin/sh\", \"-c\", \"touch /tmp/pwned\"]\n"
	status, eb, raw := post(t, apiClient(removed), "https://"+n1.agent.cfg.Node.APIAddr()+"/v1/config", ConfigRequest{YAML: doc})
	if status != http.StatusForbidden || eb.Code != "forbidden" {
		t.Fatalf("config apply with the removed node's certificate: %d %s, want 403", status, raw)
	}
	if after := string(n1.agent.FSM().State().Settings); after != before {
		t.Fatalf("settings changed to %s", after)
	}
}
