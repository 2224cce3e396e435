package lease

import (
	"strings"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	const L = 500 * time.Millisecond
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ok := NodeHealth{Known: true, Healthy: true}
	bad := NodeHealth{Known: true, Reason: "http"}
	silent := func(active string, epoch uint64, d time.Duration, voters ...string) []Report {
		var rs []Report
		for _, v := range voters {
			rs = append(rs, Report{Voter: v, Active: active, Epoch: epoch, Silent: d})
		}
		return rs
	}
	base := func() Situation {
		return Situation{
			Now: now, Active: "node1", Epoch: 4, Since: now.Add(-time.Hour), Reason: "manual:failover",
			GPUNodes: []string{"node1", "node2"}, Health: map[string]NodeHealth{"node1": ok, "node2": ok},
			Voters: 3, Reports: silent("node1", 4, 0, "node1", "node2", "witness"), Lease: L, HoldDown: 30 * time.Second,
		}
	}
	for _, tc := range []struct {
		name    string
		edit    func(*Situation)
		to      string // "" for no move
		reason  string
		blocked string // part of Blocked
	}{
		{"all well", func(s *Situation) {}, "", "", ""},
		{"startup: the first healthy node", func(s *Situation) {
			s.Active, s.Epoch, s.Reason = "", 0, ""
			s.Health["node1"] = NodeHealth{}
		}, "node2", ReasonStartup, ""},
		{"startup: the preferred node first", func(s *Situation) {
			s.Active, s.Epoch, s.Reason, s.Preferred = "", 0, "", "node2"
		}, "node2", ReasonStartup, ""},
		{"startup with nobody healthy", func(s *Situation) {
			s.Active, s.Epoch, s.Reason = "", 0, ""
			s.Health = map[string]NodeHealth{"node1": bad}
		}, "", "", "no GPU node is healthy"},
		{"the active node is no GPU member any more", func(s *Situation) {
			s.Active, s.GPUNodes = "node9", []string{"node1", "node2"}
		}, "node1", "member-removed:node9", ""},
		{"maintenance freezes everything", func(s *Situation) {
			s.Maintenance = true
			s.Health["node1"] = bad
			s.Reports = silent("node1", 4, time.Minute, "node1", "node2", "witness")
		}, "", "", ""},
		{"holder lost: a majority has not heard it for L", func(s *Situation) {
			s.Reports = append(silent("node1", 4, L, "node2", "witness"), silent("node1", 4, 0, "node1")...)
		}, "node2", "holder-lost:node1", ""},
		{"holder lost, even within the hold-down", func(s *Situation) {
			s.Since = now.Add(-time.Second)
			s.Reports = silent("node1", 4, L, "node2", "witness")
		}, "node2", "holder-lost:node1", ""},
		{"one silent voter is no majority", func(s *Situation) {
			s.Reports = append(silent("node1", 4, time.Minute, "witness"), silent("node1", 4, 0, "node1")...)
		}, "", "", ""},
		{"silent for less than L", func(s *Situation) {
			s.Reports = silent("node1", 4, L-1, "node1", "node2", "witness")
		}, "", "", ""},
		{"reports of another assignment do not count", func(s *Situation) {
			s.Reports = append(silent("node1", 3, time.Minute, "node2"), silent("node2", 4, time.Minute, "witness")...)
		}, "", "", ""},
		{"holder lost and nobody to take over", func(s *Situation) {
			s.Reports = silent("node1", 4, L, "node2", "witness")
			s.Health["node2"] = NodeHealth{}
		}, "", "", "node2 has not reported"},
		{"unhealthy active, healthy standby", func(s *Situation) {
			s.Health["node1"] = bad
		}, "node2", "health:node1:http", ""},
		{"unhealthy active within the hold-down after a move", func(s *Situation) {
			s.Health["node1"] = bad
			s.Since = now.Add(-10 * time.Second)
		}, "", "", "hold-down"},
		{"no hold-down after the startup assignment", func(s *Situation) {
			s.Health["node1"] = bad
			s.Since, s.Reason = now.Add(-time.Second), ReasonStartup
		}, "node2", "health:node1:http", ""},
		{"unhealthy active, unhealthy standby", func(s *Situation) {
			s.Health["node1"], s.Health["node2"] = bad, bad
		}, "", "", "node2 unhealthy (http)"},
		{"unknown health of the active node moves nothing", func(s *Situation) {
			s.Health["node1"] = NodeHealth{}
		}, "", "", ""},
		{"preemption: the preferred node takes the role back", func(s *Situation) {
			s.Preferred, s.Preempt = "node2", true
		}, "node2", "preempt:node2", ""},
		{"no preemption within the hold-down", func(s *Situation) {
			s.Preferred, s.Preempt, s.Since = "node2", true, now.Add(-time.Second)
		}, "", "", ""},
		{"no preemption to an unhealthy node", func(s *Situation) {
			s.Preferred, s.Preempt = "node2", true
			s.Health["node2"] = bad
		}, "", "", ""},
		{"a preferred node without preemption stays away", func(s *Situation) {
			s.Preferred = "node2"
		}, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.edit(&s)
			d := Decide(s)
			switch {
			case tc.to == "" && d.Move != nil:
				t.Fatalf("moves %+v", *d.Move)
			case tc.to != "" && d.Move == nil:
				t.Fatalf("no move (blocked: %q), want one to %s", d.Blocked, tc.to)
			case tc.to != "" && (d.Move.To != tc.to || d.Move.Epoch != s.Epoch+1 || d.Move.Reason != tc.reason):
				t.Fatalf("move %+v, want to %s epoch %d reason %s", *d.Move, tc.to, s.Epoch+1, tc.reason)
			}
			if tc.blocked == "" && tc.to == "" && d.Blocked != "" && tc.name == "all well" {
				t.Fatalf("blocked %q", d.Blocked)
			}
			if !strings.Contains(d.Blocked, tc.blocked) {
				t.Fatalf("blocked %q, want %q", d.Blocked, tc.blocked)
			}
		})
	}
}
