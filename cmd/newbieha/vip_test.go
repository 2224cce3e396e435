package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/newbieha/newbieha/vip"
)

// vip release says whether it removed an address and fails when it did
// nothing: no data dir, no VIP known, the address not on the interface.
func TestVIPRelease_TellsTheTruth(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	if _, _, err := runOut(t, "vip", "release", "--data-dir", missing); err == nil || !strings.Contains(err.Error(), "--data-dir "+missing) {
		t.Fatalf("missing data dir: %v; want an error naming it", err)
	}
	dir := t.TempDir()
	if _, _, err := runOut(t, "vip", "release", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "no VIP known on this node") || !strings.Contains(err.Error(), "nothing removed") {
		t.Fatalf("no cache: %v; want no VIP known, nothing removed", err)
	}
	if err := os.WriteFile(filepath.Join(dir, vipCacheFile), []byte(`{"addr":"192.0.2.77/32","iface":"newbieha-none0"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	removed := 0
	vipCleanup = func(a vip.Assignment, _ string) (int, error) {
		if a.Iface != "newbieha-none0" || a.Addr.String() != "192.0.2.77/32" {
			t.Errorf("cleanup of %v", a)
		}
		return removed, nil
	}
	t.Cleanup(func() { vipCleanup = vip.CleanupCount })
	if _, _, err := runOut(t, "vip", "release", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "192.0.2.77/32 was not on newbieha-none0: nothing removed") {
		t.Fatalf("address not there: %v", err)
	}
	removed = 1
	out, _, err := runOut(t, "vip", "release", "--data-dir", dir)
	if err != nil || out != "removed 192.0.2.77/32 from newbieha-none0\n" {
		t.Fatalf("removed: %v, %q", err, out)
	}
}
