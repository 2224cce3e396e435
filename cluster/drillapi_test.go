package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/fsm"
)

func TestDrillEvent_DetailReadsBack(t *testing.T) {
	until := time.Date(2026, 12, 1, 22, 0, 0, 5e6, time.UTC)
	for _, req := range []DrillEventRequest{
		{ID: "20261201T220000Z-planned-switchover", Runbook: "planned-switchover", Phase: DrillPhaseStart, Until: until},
		{ID: "x.1", Runbook: "gpu-fails", Phase: DrillPhaseEnd, Summary: "gpu-fails failed: 5 of 6 expectations passed (failed: outage-max 10ms: 120ms, missed by 110ms)"},
	} {
		if err := req.validate(); err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		ev := fsm.Event{Kind: DrillEventKind, Detail: "alice: " + req.detail()}
		got, caller, ok := ParseDrillEvent(ev)
		if !ok || caller != "alice" || got.ID != req.ID || got.Phase != req.Phase || !got.Until.Equal(req.Until) || got.Summary != req.Summary {
			t.Errorf("%q read back as %+v by %q (%v)", ev.Detail, got, caller, ok)
		}
		if req.Phase == DrillPhaseStart && got.Runbook != req.Runbook {
			t.Errorf("runbook %q", got.Runbook)
		}
	}
	if _, _, ok := ParseDrillEvent(fsm.Event{Kind: "operator", Detail: "alice: drill x end: y"}); ok {
		t.Error("an operator event read as a drill event")
	}
}

func TestDrillEvent_Validate(t *testing.T) {
	for _, tc := range []struct {
		req  DrillEventRequest
		want string
	}{
		{DrillEventRequest{ID: "", Runbook: "a", Phase: DrillPhaseEnd}, "id"},
		{DrillEventRequest{ID: "a b", Runbook: "a", Phase: DrillPhaseEnd}, "id"},
		{DrillEventRequest{ID: "a", Runbook: "A", Phase: DrillPhaseEnd}, "runbook"},
		{DrillEventRequest{ID: "a", Runbook: "a", Phase: "middle"}, "phase"},
		{DrillEventRequest{ID: "a", Runbook: "a", Phase: DrillPhaseStart}, "until"},
		{DrillEventRequest{ID: "a", Runbook: "a", Phase: DrillPhaseEnd, Summary: "\xff"}, "UTF-8"},
	} {
		if err := tc.req.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.req, err, tc.want)
		}
	}
}
