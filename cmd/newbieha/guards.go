package main

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/fsm"
)

// memberUp is whether status counts the member as alive: it answered the
// status call, or gossip sees it.

// vipWarnings checks a settings document's VIP against the members that
// status lists: each GPU member's address should lie in the VIP's prefix.
// outside is true when no GPU member's does (no member could answer for the
// VIP: `config apply` refuses that without --force). With no VIP, or no
// GPU member with a known address, there is nothing to check.
func vipWarnings(st cluster.Status, s cluster.Settings) (warnings []string, outside bool) {
	if s.VIP.Address == "" {
		return nil, false
	}
	p, err := netip.ParsePrefix(s.VIP.Address)
	if err != nil {
		return []string{fmt.Sprintf("vip.address %q: %v", s.VIP.Address, err)}, false
	}
	p = p.Masked()
	var in, out []string
	for _, m := range st.Members {
		if m.Role != fsm.RoleGPU {
			continue
		}
		a, err := netip.ParseAddr(m.Address)
		if err != nil {
			continue
		}
		if p.Contains(a.Unmap()) {
			in = append(in, m.Name)
		} else {
			out = append(out, fmt.Sprintf("%s (%s)", m.Name, a))
		}
	}
	sort.Strings(out)
	switch {
	case len(in) == 0 && len(out) > 0:
		return []string{fmt.Sprintf("VIP %s is outside every GPU member's subnet: %s; no member could answer ARP for it", s.VIP.Address, strings.Join(out, ", "))}, true
	case len(out) > 0:
		warnings = append(warnings, fmt.Sprintf("VIP %s is outside the subnet of %s: that member cannot hold it", s.VIP.Address, strings.Join(out, ", ")))
	}
	return warnings, false
}

// lineDiff is a line diff of a and b (LCS): lines only in a start with
// "-", only in b with "+", and up to context unchanged lines around each
// change with " "; "@@" separates hunks. Empty when a and b are equal.
func lineDiff(a, b string, context int) string {
	x, y := strings.Split(strings.TrimSuffix(a, "\n"), "\n"), strings.Split(strings.TrimSuffix(b, "\n"), "\n")
	if a == "" {
		x = nil
	}
	if b == "" {
		y = nil
	}
	// lcs[i][j] is the LCS length of x[i:] and y[j:].
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		kind byte
		line string
	}
	var ops []op
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			ops = append(ops, op{' ', x[i]})
			i, j = i+1, j+1
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', x[i]})
			i++
		default:
			ops = append(ops, op{'+', y[j]})
			j++
		}
	}
	show := make([]bool, len(ops))
	changed := false
	for k, o := range ops {
		if o.kind == ' ' {
			continue
		}
		changed = true
		for d := max(0, k-context); d <= min(len(ops)-1, k+context); d++ {
			show[d] = true
		}
	}
	if !changed {
		return ""
	}
	var sb strings.Builder
	for k, o := range ops {
		if !show[k] {
			continue
		}
		if k > 0 && !show[k-1] && sb.Len() > 0 {
			sb.WriteString("@@\n")
		}
		sb.WriteByte(o.kind)
		sb.WriteString(o.line)
		sb.WriteByte('\n')
	}
	return sb.String()
}
