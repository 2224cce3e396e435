package cluster

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// These tests are named after the attacks of issue 9 (docs/security.md,
// "Threat model"); each failed on the main branch before the fix.

func TestInternalApply_TokenValidUntilYear9999IsRefused(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	w := c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	tok, err := pki.NewToken(pki.Hash(n1.agent.bundle.CA.Cert))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for name, ft := range map[string]fsm.Token{
		"year 9999":           {ID: tok.ID, SecretHash: tok.SecretHash(), CreatedAt: now, Expires: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), Role: fsm.RoleGPU},
		"created in 9998":     {ID: tok.ID, SecretHash: tok.SecretHash(), CreatedAt: time.Date(9998, 12, 30, 0, 0, 0, 0, time.UTC), Expires: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), Role: fsm.RoleGPU},
		"eight days from now": {ID: tok.ID, SecretHash: tok.SecretHash(), CreatedAt: now, Expires: now.Add(8 * 24 * time.Hour), Role: fsm.RoleGPU},
	} {
		// A member forwards no CreateToken at all (403): tokens are made
		// by an operator on the leader. One that does not even decode (a
		// lifetime over 7 days) is a 400 first; fsm tests show Apply
		// refuses all of these too.
		if status, raw := internalApply(t, w, n1, rawCommand(t, fsm.TypeCreateToken, fsm.CreateToken{Token: ft})); (status != http.StatusForbidden && status != http.StatusBadRequest) || !bytes.Contains(raw, []byte("CreateToken")) {
			t.Fatalf("%s: status %d %s, want 403 or 400 naming CreateToken", name, status, raw)
		}
	}
	if _, ok := n1.agent.FSM().State().Tokens[tok.ID]; ok {
		t.Fatal("the token was committed")
	}
	status, _, raw := post(t, apiClient(nil), joinURL(n1), joinBody(t, tok.String(), "node9", "127.0.0.9", fsm.RoleGPU))
	if status != http.StatusForbidden || bytes.Contains(raw, []byte("PRIVATE KEY")) {
		t.Fatalf("join with the refused token: status %d %s", status, raw)
	}
}

// timingKey returns the JSON key of the first Timings field whose key
// contains part, so the test follows renames of the timings.
func timingKey(t *testing.T, part string) string {
	t.Helper()
	var found string
	walkDurations(reflect.ValueOf(DefaultSettings().Timings), "", func(key string, _ time.Duration) {
		if found == "" && strings.Contains(key, part) {
			found = key
		}
	})
	if found == "" {
		t.Fatalf("no timing with %q in its key", part)
	}
	return found
}

func TestInternalApply_SettingsWithZeroRenewNegativeHoldDownOrHugeTimingAreRefused(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	w := c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	before := n1.agent.FSM().State().Settings
	docs := map[string]string{
		"zero renew":           `{"timings":{"` + timingKey(t, "renew") + `":"0s"}}`,
		"negative hold_down":   `{"failover":{"hold_down":"-1h"}}`,
		"garp_refresh 100000h": `{"vip":{"garp_refresh":"100000h"}}`,
	}
	walkDurations(reflect.ValueOf(DefaultSettings().Timings), "", func(key string, _ time.Duration) {
		docs[key+" 100000h"] = `{"timings":{"` + key + `":"100000h"}}`
	})
	for name, doc := range docs {
		data := rawCommand(t, fsm.TypeSetSettings, fsm.SetSettings{Settings: json.RawMessage(doc)})
		if status, raw := internalApply(t, w, n1, data); status != http.StatusForbidden || !bytes.Contains(raw, []byte("SetSettings")) {
			t.Errorf("%s: status %d %s, want 403 naming SetSettings", name, status, raw)
		}
	}
	if after := n1.agent.FSM().State().Settings; !bytes.Equal(after, before) {
		t.Fatalf("settings changed to %s", after)
	}
	// Not even valid settings: a node certificate is no operator.
	ok, _ := json.Marshal(DefaultSettings())
	if status, raw := internalApply(t, w, n1, rawCommand(t, fsm.TypeSetSettings, fsm.SetSettings{Settings: ok})); status != http.StatusForbidden {
		t.Fatalf("default settings: status %d %s, want 403", status, raw)
	}
	// What a member may forward still goes through (the test could fail):
	// an event about itself.
	ev := fsm.RecordEvent{Event: fsm.Event{Kind: "drill", Node: "witness", Detail: "forwarded", Time: time.Now().UTC()}}
	if status, raw := internalApply(t, w, n1, rawCommand(t, fsm.TypeRecordEvent, ev)); status != http.StatusOK {
		t.Fatalf("own event: status %d %s", status, raw)
	}
	ev.Event.Node = "node1"
	if status, raw := internalApply(t, w, n1, rawCommand(t, fsm.TypeRecordEvent, ev)); status != http.StatusForbidden {
		t.Fatalf("event about node1 from the witness: status %d %s, want 403", status, raw)
	}
}
