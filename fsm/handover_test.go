package fsm

import (
	"strings"
	"testing"
)

// COMPAT(v1): the previous release wrote planned failovers with
// "handover": true. Such an entry still decodes and applies; the flag is
// dropped, since nothing trusts it any more.
func TestSetActive_OldHandoverFlagStillLoadsAndIsIgnored(t *testing.T) {
	f := newTestFSM(t)
	mustApply(t, f, 1, UpsertMember{Member: gpuMember("node1", "10.0.0.1")})
	mustApply(t, f, 2, UpsertMember{Member: gpuMember("node2", "10.0.0.2")})
	mustApply(t, f, 3, SetActive{Node: "node1", Epoch: 1, Time: at(0), Reason: "startup"})
	old := append([]byte{byte(TypeSetActive), 1}, []byte(`{"node":"node2","epoch":2,"time":"2026-01-01T00:00:00Z","reason":"manual:failover","handover":true}`)...)
	c, err := Decode(old)
	if err != nil {
		t.Fatalf("decode an entry of the previous release: %v", err)
	}
	mustApply(t, f, 4, c)
	if a := f.State().Active; a.Node != "node2" || a.Epoch != 2 || a.Reason != "manual:failover" {
		t.Fatalf("active = %+v", a)
	}
	enc, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(enc), "handover") {
		t.Fatalf("re-encoded %q still carries the flag", enc)
	}
}
