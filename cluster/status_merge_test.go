package cluster

import (
	"testing"
	"time"
)

// Status prefers what a member says of itself over mutual TLS to what
// gossip relays; gossip fills in only for a member whose API does not
// answer, and a dead member's last report is not taken for now.
func TestMergeGossip_OwnReportWinsGossipFillsIn(t *testing.T) {
	now := time.Now()
	gossiped := gossipMember{Alive: true, HasState: true, UpdatedAt: now.Add(-time.Second),
		State: gossipState{Healthy: false, HealthReason: "http:service", HoldsVIP: true}}
	cases := []struct {
		name        string
		self        MemberStatus
		g           gossipMember
		wantHealthy bool
		wantReason  string
		wantVIP     bool
		wantAlive   bool
	}{
		{"answered: its own report stands", MemberStatus{Raft: RaftFollower, Healthy: true}, gossiped, true, "", false, true},
		{"answered although gossip calls it dead", MemberStatus{Raft: RaftFollower, Healthy: true}, gossipMember{HasState: true, UpdatedAt: now, State: gossipState{Healthy: false}}, true, "", false, true},
		{"unreachable: gossip fills in", MemberStatus{Raft: RaftUnreachable}, gossiped, false, "http:service", true, true},
		{"unreachable and dead: not healthy, says why", MemberStatus{Raft: RaftUnreachable}, gossipMember{HasState: true, UpdatedAt: now.Add(-3 * time.Second), State: gossipState{Healthy: true, HoldsVIP: true}}, false, "not alive (last report 3s ago)", false, false},
		{"no gossiped state: only liveness", MemberStatus{Raft: RaftUnreachable}, gossipMember{Alive: true}, false, "", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.self
			mergeGossip(&m, tc.g, now)
			if m.Healthy != tc.wantHealthy || m.HealthReason != tc.wantReason || m.HoldsVIP != tc.wantVIP || m.Alive != tc.wantAlive {
				t.Fatalf("merged %+v; want healthy=%v reason=%q vip=%v alive=%v", m, tc.wantHealthy, tc.wantReason, tc.wantVIP, tc.wantAlive)
			}
		})
	}
}
