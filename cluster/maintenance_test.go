package cluster

import (
	"context"
	"testing"
)

// Status carries since when, why and by whom maintenance is on, from the replicated
// state, and nothing once it is off.
func TestStatus_MaintenanceInfo(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	ctx := context.Background()
	local := NewLocalClient(n1.dataDir)
	if err := local.Maintenance(ctx, true, "driver upgrade"); err != nil {
		t.Fatal(err)
	}
	st, err := local.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Maintenance || st.MaintenanceInfo == nil || st.MaintenanceInfo.Reason != "driver upgrade" || st.MaintenanceInfo.Since.IsZero() || st.MaintenanceInfo.By != "root@node1" {
		t.Fatalf("status maintenance %v, info %+v; want on, the reason, a time and root@node1", st.Maintenance, st.MaintenanceInfo)
	}
	if err := local.Maintenance(ctx, false, "done"); err != nil {
		t.Fatal(err)
	}
	if st, err = local.Status(ctx); err != nil || st.Maintenance || st.MaintenanceInfo != nil {
		t.Fatalf("after off: %v, %v, %+v", err, st.Maintenance, st.MaintenanceInfo)
	}
}
