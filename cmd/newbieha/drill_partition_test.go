package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestNFTScript(t *testing.T) {
	now := time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)
	s, err := nftScript([]string{"10.0.0.2", "10.0.0.3"}, now.Add(29500*time.Millisecond), now)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"set cut { type ipv4_addr; flags timeout; }", "flush chain inet newbieha_drill input", "add rule inet newbieha_drill output ip daddr @cut drop",
		"add element inet newbieha_drill cut { 10.0.0.2 timeout 30s, 10.0.0.3 timeout 30s }"} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	s, err = nftScript([]string{"10.0.0.2"}, time.Time{}, now)
	if err != nil || !strings.Contains(s, "flush set inet newbieha_drill cut") || strings.Contains(s, "add element") {
		t.Errorf("clear: %v\n%s", err, s)
	}
	if _, err := nftScript([]string{"10.0.0.2; flush ruleset"}, now.Add(time.Second), now); err == nil {
		t.Error("a peer that is not an address went into the script")
	}
	if _, err := nftScript([]string{"10.0.0.2"}, now, now); err == nil {
		t.Error("an end in the past was accepted")
	}
}

// The script checks (nft -c) and loads into nft, in a network namespace of
// its own, twice (a second drill), its element carries the timeout, and
// clear empties it.
func TestNFTPartition_LoadsInANamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft")
	}
	ns := "nbhanft" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	load := func(until time.Time) {
		t.Helper()
		s, err := nftScript([]string{"10.9.9.9"}, until, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(s)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft -f: %v %s\n%s", err, out, s)
		}
	}
	list := func() string {
		out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "newbieha_drill").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list: %v %s", err, out)
		}
		return string(out)
	}
	s, err := nftScript([]string{"10.9.9.9"}, time.Now().Add(30*time.Second), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	check := exec.Command("ip", "netns", "exec", ns, "nft", "-c", "-f", "-")
	check.Stdin = strings.NewReader(s)
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("nft -c on a fresh host: %v %s", err, out)
	}
	load(time.Now().Add(30 * time.Second))
	load(time.Now().Add(30 * time.Second))
	l := list()
	if !strings.Contains(l, "10.9.9.9 timeout 30s") || strings.Count(l, "@cut drop") != 2 {
		t.Fatalf("after two loads:\n%s", l)
	}
	load(time.Time{})
	if l := list(); strings.Contains(l, "10.9.9.9") {
		t.Fatalf("after clear:\n%s", l)
	}
}
