package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// These tests are named after the attacks of issue 9 (docs/security.md,
// "Threat model"); each failed on the main branch before the fix.

func TestJoin_WitnessCertificateWithVouchHeaderAndEmptyTokenGetsNoCAKey(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	w := c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	client := apiClient(w.agent.bundle)
	for _, token := range []string{"", "nbha1.zzzzzz." + strings.Repeat("0", 32) + "." + pki.Hash(n1.agent.bundle.CA.Cert)} {
		status, eb, raw := post(t, client, joinURL(n1), joinBody(t, token, "intruder", "127.0.0.66", fsm.RoleGPU),
			"X-Newbieha-Token-Verified", "1", forwardedHeader, "witness")
		if status != http.StatusForbidden || eb.Code != "token_invalid" {
			t.Fatalf("token %q: status %d %s, want 403 token_invalid", token, status, raw)
		}
		if bytes.Contains(raw, []byte("PRIVATE KEY")) {
			t.Fatal("the CA key came back")
		}
	}
	if _, ok := n1.agent.FSM().Member("intruder"); ok {
		t.Fatal("intruder became a member")
	}
}

func TestJoin_GarbageTokensWriteNoRaftEntry(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	// Quiet first: the startup assignment and the barrier that follows it
	// are written, everything is applied.
	waitFor(t, 10*time.Second, "the startup move, its barrier, everything applied", func() error {
		r := n1.agent.node.raft
		if act, _ := n1.agent.FSM().ActiveView(); act.Node == "" {
			return errors.New("no active node yet")
		}
		var l raft.Log
		if err := n1.agent.node.store.GetLog(r.LastIndex(), &l); err != nil || l.Type != raft.LogBarrier {
			return fmt.Errorf("last entry %v (%v), want the barrier after the move", l.Type, err)
		}
		if r.AppliedIndex() < r.LastIndex() {
			return errors.New("not applied yet")
		}
		return nil
	})
	before := n1.agent.node.raft.LastIndex()
	hash := pki.Hash(n1.agent.bundle.CA.Cert)
	tokens := []string{"", "garbage", "nbha1.abc.def.ghi", "nbha1.abcdef." + strings.Repeat("0", 32) + "." + strings.Repeat("0", 64)}
	for i := 0; i < 50; i++ {
		tok, err := pki.NewToken(hash) // well formed, right cluster, unknown
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok.String())
	}
	for i, tok := range tokens {
		// Five joins a source address, under the per-source rate limit
		// (limits.go), so that every one reaches the token check.
		client := apiClientFrom(nil, fmt.Sprintf("127.0.1.%d", 10+i/5))
		if status, _, raw := post(t, client, joinURL(n1), joinBody(t, tok, "intruder", "127.0.0.66", fsm.RoleGPU)); status != http.StatusForbidden {
			t.Fatalf("garbage token %q: status %d %s, want 403", tok, status, raw)
		}
	}
	// The controller may commit its own entries meanwhile (the startup
	// assignment, followed by the barrier that spreads every move); none
	// may be another barrier or a member record.
	after := n1.agent.node.raft.LastIndex()
	prevMove := false
	// Start at the last entry before the joins: the move that a barrier
	// follows may have been written just before them.
	for i := before; i <= after; i++ {
		var l raft.Log
		if err := n1.agent.node.store.GetLog(i, &l); err != nil {
			t.Fatalf("read log %d: %v", i, err)
		}
		if i > before && l.Type == raft.LogBarrier && !prevMove {
			t.Fatalf("garbage joins wrote a barrier at index %d (last index %d -> %d)", i, before, after)
		}
		prevMove = false
		if l.Type == raft.LogCommand {
			c, err := fsm.Decode(l.Data)
			if err == nil && c.Type() == fsm.TypeUpsertMember {
				t.Fatalf("garbage joins wrote a member record at index %d: %+v", i, c)
			}
			prevMove = err == nil && c.Type() == fsm.TypeSetActive
		}
	}
}

func TestJoin_UnknownTokenIDAndWrongSecretGetTheSameAnswer(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	good, err := pki.ParseToken(c.token)
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret := good
	wrongSecret.Secret = strings.Repeat("0", 32)
	if wrongSecret.Secret == good.Secret {
		wrongSecret.Secret = strings.Repeat("1", 32)
	}
	unknownID := good
	unknownID.ID = "zzzzzz"
	otherCA := good
	otherCA.CAHash = strings.Repeat("0", 64)
	bad := map[string]string{
		"wrong secret":  wrongSecret.String(),
		"unknown id":    unknownID.String(),
		"other cluster": otherCA.String(),
		"malformed":     "nbha1.x",
	}
	// Through the leader and through a follower (which must not answer a
	// known id differently from an unknown one either).
	for _, via := range []string{"node1", "node2"} {
		var first []byte
		for what, tok := range bad {
			status, eb, raw := post(t, apiClient(nil), joinURL(c.nodes[via]), joinBody(t, tok, "intruder", "127.0.0.66", fsm.RoleGPU))
			if status != http.StatusForbidden || eb.Code != "token_invalid" {
				t.Fatalf("via %s, %s: status %d %s", via, what, status, raw)
			}
			if first == nil {
				first = raw
			} else if !bytes.Equal(raw, first) {
				t.Fatalf("via %s: answers differ:\n%s\n%s", via, first, raw)
			}
		}
	}
	_ = n1
}

func TestJoin_UnderTheNameOrAddressOfALiveMemberIsRefused(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	n2 := c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	before, _ := n1.agent.FSM().Member("node2")
	for _, req := range []JoinRequest{
		joinBody(t, c.token, "node2", "127.0.0.66", fsm.RoleGPU),    // a live member's name
		joinBody(t, c.token, "intruder", "127.0.0.2", fsm.RoleGPU),  // a live member's address
		joinBody(t, c.token, "node1", "127.0.0.1", fsm.RoleWitness), // both
	} {
		for _, via := range []*testNode{n1, n2} {
			status, eb, raw := post(t, apiClient(nil), joinURL(via), req)
			if status != http.StatusConflict || eb.Code != "member_exists" {
				t.Fatalf("join as %s at %s via %s: status %d %s, want 409 member_exists", req.Name, req.Advertise, via.name, status, raw)
			}
		}
	}
	if after, _ := n1.agent.FSM().Member("node2"); !reflect.DeepEqual(after, before) {
		t.Fatalf("node2's member record changed: %+v -> %+v", before, after)
	}
	if _, ok := n1.agent.FSM().Member("intruder"); ok {
		t.Fatal("intruder became a member")
	}
}

func TestJoin_OnlyAGPUTokenBringsTheCAKey(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	ctx := context.Background()
	witnessTok, _, err := n1.agent.CreateToken(ctx, time.Hour, fsm.RoleWitness)
	if err != nil {
		t.Fatal(err)
	}
	// A witness token does not admit a GPU node.
	status, eb, raw := post(t, apiClient(nil), joinURL(n1), joinBody(t, witnessTok, "node2", "127.0.0.2", fsm.RoleGPU))
	if status != http.StatusForbidden || eb.Code != "token_invalid" || bytes.Contains(raw, []byte("PRIVATE KEY")) {
		t.Fatalf("gpu join with a witness token: status %d %s", status, raw)
	}
	// It admits a witness, without the CA key.
	var resp JoinResponse
	status, _, raw = post(t, apiClient(nil), joinURL(n1), joinBody(t, witnessTok, "witness", "127.0.0.3", fsm.RoleWitness))
	if status != http.StatusOK || json.Unmarshal(raw, &resp) != nil || resp.CAKey != "" || resp.NodeCert == "" {
		t.Fatalf("witness join with a witness token: status %d, ca key %v", status, resp.CAKey != "")
	}
	// A token from before roles (no role) admits a GPU node, without the
	// CA key.
	legacy, err := pki.NewToken(pki.Hash(n1.agent.bundle.CA.Cert))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := n1.agent.apply(ctx, fsm.CreateToken{Token: fsm.Token{ID: legacy.ID, SecretHash: legacy.SecretHash(), CreatedAt: now, Expires: now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	status, _, raw = post(t, apiClient(nil), joinURL(n1), joinBody(t, legacy.String(), "node4", "127.0.0.4", fsm.RoleGPU))
	if status != http.StatusOK || json.Unmarshal(raw, &resp) != nil || resp.CAKey != "" {
		t.Fatalf("gpu join with a roleless token: status %d, ca key %v", status, resp.CAKey != "")
	}
	// A gpu token brings it to a GPU node (the test could fail).
	status, _, raw = post(t, apiClient(nil), joinURL(n1), joinBody(t, c.token, "node2", "127.0.0.2", fsm.RoleGPU))
	if status != http.StatusOK || json.Unmarshal(raw, &resp) != nil || resp.CAKey == "" {
		t.Fatalf("gpu join with the gpu token: status %d, ca key %v", status, resp.CAKey != "")
	}
}
