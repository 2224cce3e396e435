//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A host outside the cluster's control answers for the VIP (the address
// added by hand on the client, as a leftover Keepalived would): the cluster
// sees it by ARP, says so in status and the event history, and the holder
// keeps the VIP.
func TestConflict_ForeignHolderIsReported(t *testing.T) {
	f := newFailoverLabWith(t, "  conflict_probe_interval: 500ms\n", "")
	run(t, "ip", "-n", f.client.ns, "addr", "add", f.vip+"/24", "dev", f.client.hostIf)
	var conflict string
	waitFor(t, 20*time.Second, "the conflict in status", func() error {
		out, err := f.cli(f.w, "status", "--data-dir", f.w.dataDir, "-o", "json")
		if err != nil {
			return err
		}
		var s struct {
			VIP struct{ Holder, Conflict string } `json:"vip"`
		}
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			return err
		}
		if !strings.Contains(s.VIP.Conflict, "node1 holds the VIP and") {
			return fmt.Errorf("vip %+v", s.VIP)
		}
		conflict = s.VIP.Conflict
		return nil
	})
	t.Logf("status: %s", conflict)
	if !f.holds(f.n1) {
		t.Fatal("node1 lost the VIP over the conflict")
	}
	// The event is committed after the holder re-announces, and reaches
	// node2 by replication: wait for it.
	waitFor(t, 20*time.Second, "a vip-conflict event in node2's history", func() error {
		out, err := f.cli(f.n2, "history", "--events", "--data-dir", f.n2.dataDir)
		if err != nil {
			return err
		}
		if !strings.Contains(out, "vip-conflict") {
			return fmt.Errorf("events:\n%s", out)
		}
		return nil
	})
	run(t, "ip", "-n", f.client.ns, "addr", "del", f.vip+"/24", "dev", f.client.hostIf)
	waitFor(t, 20*time.Second, "the conflict to clear", func() error {
		out, err := f.cli(f.w, "status", "--data-dir", f.w.dataDir, "-o", "json")
		if err != nil {
			return err
		}
		if strings.Contains(out, "also answer") {
			return fmt.Errorf("still reported")
		}
		return nil
	})
}
