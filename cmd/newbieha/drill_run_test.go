package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/drill"
	"github.com/newbieha/newbieha/fsm"
)

func TestDrillExitCodes(t *testing.T) {
	if c := exitCode(&exitError{2, errors.New("refused")}); c != 2 {
		t.Errorf("refused: %d", c)
	}
	if c := exitCode(fmt.Errorf("wrapped: %w", &exitError{1, errors.New("failed")})); c != 1 {
		t.Errorf("failed: %d", c)
	}
	if c := exitCode(errors.New("anything")); c != 1 {
		t.Errorf("plain: %d", c)
	}
}

func TestDrillRunningFromEvents(t *testing.T) {
	now := time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)
	ev := func(req cluster.DrillEventRequest) fsm.Event {
		d := "alice: drill " + req.ID + " end: x"
		if req.Phase == cluster.DrillPhaseStart {
			d = fmt.Sprintf("alice: drill %s start, runbook %s, until %s", req.ID, req.Runbook, req.Until.Format(time.RFC3339Nano))
		}
		return fsm.Event{Kind: cluster.DrillEventKind, Detail: d}
	}
	start := func(id string, until time.Time) fsm.Event {
		return ev(cluster.DrillEventRequest{ID: id, Runbook: "gpu-fails", Phase: cluster.DrillPhaseStart, Until: until})
	}
	end := func(id string) fsm.Event { return ev(cluster.DrillEventRequest{ID: id, Phase: cluster.DrillPhaseEnd}) }
	cases := []struct {
		name   string
		events []fsm.Event
		want   string
	}{
		{"none", nil, ""},
		{"ended", []fsm.Event{start("a", now.Add(time.Minute)), end("a")}, ""},
		{"running", []fsm.Event{start("a", now.Add(time.Minute))}, "gpu-fails (a, until 2026-12-01T22:01:00Z)"},
		{"runner died, limit passed", []fsm.Event{start("a", now.Add(-time.Second))}, ""},
		{"other events", []fsm.Event{{Kind: "operator", Detail: "alice: drill a start, runbook x, until 2099-01-01T00:00:00Z"}}, ""},
	}
	for _, tc := range cases {
		if got := runningDrill(tc.events, now); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestDrillViewOfStatus(t *testing.T) {
	st := cluster.Status{
		Leader: "witness", Active: fsm.Assignment{Node: "node1"}, VIP: cluster.VIPStatus{Address: "10.0.0.100/24", Holder: "node1"},
		Members: []cluster.MemberStatus{
			{Name: "node1", Role: fsm.RoleGPU, Raft: cluster.RaftFollower, Voter: true, Healthy: true},
			{Name: "node2", Role: fsm.RoleGPU, Raft: cluster.RaftUnreachable, Voter: true, Healthy: true},
			{Name: "witness", Role: fsm.RoleWitness, Raft: cluster.RaftLeader, Voter: true},
		},
	}
	v := viewOf(st)
	if v.VIP != "10.0.0.100" || v.Holder != "node1" || v.Active != "node1" || v.Leader != "witness" {
		t.Fatalf("view %+v", v)
	}
	want := []drill.Member{
		{Name: "node1", Role: drill.RoleGPU, Voter: true, Reachable: true, Healthy: true},
		{Name: "node2", Role: drill.RoleGPU, Voter: true},
		{Name: "witness", Role: drill.RoleWitness, Voter: true, Reachable: true, Healthy: true},
	}
	for i, m := range v.Members {
		if m != want[i] {
			t.Errorf("member %d: %+v, want %+v", i, m, want[i])
		}
	}
}

func TestDrillReportStore(t *testing.T) {
	s := reportStore{dir: filepath.Join(t.TempDir(), "drills")}
	t0 := time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)
	var ids []string
	for i := 0; i < maxStoredReports+3; i++ {
		rb := "planned-switchover"
		if i%2 == 1 {
			rb = "gpu-fails"
		}
		start := t0.Add(time.Duration(i) * time.Minute)
		id := s.newID(rb, start)
		rep := &drill.Report{Runbook: rb, Start: start, Verdict: drill.VerdictPassed, Figures: drill.Figures{FailedRequests: i}}
		if _, err := s.save(id, rep, nil); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if ids[0] != "20261201T220000Z-planned-switchover" {
		t.Errorf("id %q", ids[0])
	}
	all, err := s.all()
	if err != nil || len(all) != maxStoredReports {
		t.Fatalf("%d reports kept (%v), want %d", len(all), err, maxStoredReports)
	}
	if _, err := s.load(ids[0]); err == nil || !strings.Contains(err.Error(), "none in") {
		t.Errorf("the oldest was not pruned: %v", err)
	}
	fi, err := os.Stat(filepath.Join(s.dir, ids[len(ids)-1]+".json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("report file: %v %v", fi.Mode(), err)
	}
	last := ids[len(ids)-1] // planned-switchover, i = 102
	prev, err := s.previous("planned-switchover", last)
	if err != nil || prev == nil || prev.Figures.FailedRequests != maxStoredReports {
		t.Fatalf("previous of %s: %+v %v", last, prev, err)
	}
	if _, err := s.load("../x"); err == nil {
		t.Error("a path as an ID was read")
	}
	if id := s.newID("planned-switchover", t0.Add(102*time.Minute)); id != last+".2" {
		t.Errorf("a second run in the same second: %q", id)
	}
}
