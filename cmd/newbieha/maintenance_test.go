package main

import (
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/fsm"
)

// status shows since when, why and by whom maintenance is on.
func TestStatus_ShowsMaintenanceReason(t *testing.T) {
	st := threeNodes()
	st.Maintenance = true
	st.MaintenanceInfo = &fsm.MaintenanceInfo{Since: time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC), Reason: "driver upgrade", By: "alice"}
	_, dir := newOpsAgent(t, st)
	out, _, _ := runOut(t, "status", "--data-dir", dir)
	if !strings.Contains(out, "ON since 2026-12-01T22:00:00Z by alice: driver upgrade") {
		t.Fatalf("status:\n%s", out)
	}
	st.MaintenanceInfo = nil // an agent from before it was kept
	_, dir = newOpsAgent(t, st)
	if out, _, _ := runOut(t, "status", "--data-dir", dir); !strings.Contains(out, "maintenance:  ON\n") {
		t.Fatalf("status without info:\n%s", out)
	}
}
