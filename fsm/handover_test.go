package fsm

import "testing"

func TestSetActive_HandoverIsKeptAndOptional(t *testing.T) {
	f := newTestFSM(t)
	mustApply(t, f, 1, UpsertMember{Member: gpuMember("node1", "10.0.0.1")})
	mustApply(t, f, 2, UpsertMember{Member: gpuMember("node2", "10.0.0.2")})
	mustApply(t, f, 3, SetActive{Node: "node1", Epoch: 1, Time: at(0), Reason: "startup"})
	if f.State().Active.Handover {
		t.Fatal("handover set without being asked")
	}
	mustApply(t, f, 4, SetActive{Node: "node2", Epoch: 2, Time: at(1), Reason: "manual:failover", Handover: true})
	if a := f.State().Active; !a.Handover || a.Node != "node2" {
		t.Fatalf("active = %+v, want node2 with handover", a)
	}
	// An entry written before the field existed decodes with Handover false.
	c, err := Decode(append([]byte{byte(TypeSetActive), 1}, []byte(`{"node":"node1","epoch":3,"time":"2026-01-01T00:00:00Z","reason":"leader-lost"}`)...))
	if err != nil {
		t.Fatal(err)
	}
	if c.(SetActive).Handover {
		t.Fatal("old entry decoded with handover")
	}
}
