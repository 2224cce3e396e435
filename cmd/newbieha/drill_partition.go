package main

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"os/exec"
	"strings"
	"time"
)

// The nftables objects a drilled partition uses: one table, a set of cut
// peers whose elements carry a timeout, and a drop rule each way. The
// kernel removes an element when its timeout runs out, so a cut ends by
// itself even if every agent dies; the empty table is harmless and is
// reused by the next drill.
const (
	nftTable = "newbieha_drill"
	nftSet   = "cut"
)

// nftScript is the nft -f input that cuts peers off until until (now is
// the time it is made), or, with a zero until, removes every cut.
func nftScript(peers []string, until, now time.Time) (string, error) {
	for _, p := range peers {
		if ip := net.ParseIP(p); ip == nil || ip.To4() == nil {
			return "", fmt.Errorf("partition: %q is not an IPv4 address", p)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", nftTable)
	fmt.Fprintf(&b, "  set %s { type ipv4_addr; flags timeout; }\n", nftSet)
	b.WriteString("  chain input { type filter hook input priority -10; policy accept; }\n")
	b.WriteString("  chain output { type filter hook output priority -10; policy accept; }\n")
	b.WriteString("}\n")
	// Declaring a table or chain that exists adds nothing; the rules are
	// flushed and added again so that a second drill does not add them twice.
	fmt.Fprintf(&b, "flush chain inet %s input\nflush chain inet %s output\n", nftTable, nftTable)
	fmt.Fprintf(&b, "add rule inet %s input ip saddr @%s drop\nadd rule inet %s output ip daddr @%s drop\n", nftTable, nftSet, nftTable, nftSet)
	if until.IsZero() {
		fmt.Fprintf(&b, "flush set inet %s %s\n", nftTable, nftSet)
		return b.String(), nil
	}
	secs := int(math.Ceil(until.Sub(now).Seconds()))
	if secs < 1 {
		return "", fmt.Errorf("partition: until %s is not in the future", until.Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "add element inet %s %s { %s }\n", nftTable, nftSet, elements(peers, secs))
	return b.String(), nil
}

func elements(peers []string, secs int) string {
	s := make([]string, len(peers))
	for i, p := range peers {
		s[i] = fmt.Sprintf("%s timeout %ds", p, secs)
	}
	return strings.Join(s, ", ")
}

// nftPartition implements cluster.Config.Partition with nft; check runs
// nft -c (the rules are checked by the kernel, not loaded).
func nftPartition(peers []string, until time.Time, check bool) error {
	script, err := nftScript(peers, until, time.Now())
	if err != nil {
		return err
	}
	args := []string{"-f", "-"}
	if check {
		args = []string{"-c", "-f", "-"}
	}
	cmd := exec.Command("nft", args...)
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}
