package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/fsm"
)

// suggestDistance is how many edits away a mistyped subcommand or flag may
// be for a suggestion (cobra's default; `lsit` is 2 from `list`).
const suggestDistance = 2

// strictCommands walks the command tree: each command suggests the nearest
// subcommand, and a command that only groups subcommands (token, config,
// raft, ...) refuses an unknown one with an error and suggestions. Cobra
// would otherwise print the group's help and exit 0 on `token lsit`, since
// it checks arguments only of runnable commands and only the root's
// subcommand names. Unknown flags get the nearest flag names.
func strictCommands(c *cobra.Command) {
	c.SuggestionsMinimumDistance = suggestDistance
	if c.HasSubCommands() && !c.Runnable() {
		c.Args = unknownSubcommand
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	for _, sub := range c.Commands() {
		strictCommands(sub)
	}
}

// unknownSubcommand is the Args of a group command: no argument, or an
// error naming the unknown subcommand with suggestions.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return fmt.Errorf("%s\n\nRun '%s --help' for its commands", msg, cmd.CommandPath())
}

// flagError adds the nearest flag names to pflag's "unknown flag" error.
func flagError(cmd *cobra.Command, err error) error {
	const prefix = "unknown flag: --"
	m := err.Error()
	if !strings.HasPrefix(m, prefix) {
		return fmt.Errorf("%w\n\nRun '%s --help' for its flags", err, cmd.CommandPath())
	}
	typed := strings.SplitN(strings.TrimPrefix(m, prefix), "=", 2)[0]
	seen := map[string]bool{}
	var near []string
	add := func(f *pflag.Flag) {
		if f.Hidden || seen[f.Name] {
			return
		}
		if levenshtein(typed, f.Name) <= suggestDistance || (len(typed) > 2 && strings.HasPrefix(f.Name, typed)) {
			seen[f.Name] = true
			near = append(near, "--"+f.Name)
		}
	}
	cmd.LocalFlags().VisitAll(add)
	cmd.InheritedFlags().VisitAll(add)
	sort.Strings(near)
	if len(near) > 0 {
		return fmt.Errorf("%w\n\nDid you mean this?\n\t%s\n\nRun '%s --help' for its flags", err, strings.Join(near, "\n\t"), cmd.CommandPath())
	}
	return fmt.Errorf("%w\n\nRun '%s --help' for its flags", err, cmd.CommandPath())
}

// levenshtein is the edit distance between a and b (ASCII, case-insensitive).
func levenshtein(a, b string) int {
	a, b = strings.ToLower(a), strings.ToLower(b)
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// checkListenAddr checks, before anyone is contacted, that the node can
// listen where it says: the --bind address, or without one the --advertise
// address, must be one of this host's (net.InterfaceAddrs). An advertised
// address this host lacks is allowed only with --bind (behind NAT).
// hostAddrs is net.InterfaceAddrs outside tests.
func checkListenAddr(advertise, bind string, hostAddrs func() ([]net.Addr, error)) error {
	flag, ip := "--advertise", advertise
	if bind != "" {
		flag, ip = "--bind", bind
	}
	want, err := netip.ParseAddr(ip)
	if err != nil {
		return fmt.Errorf("%s %q: not an IP address", flag, ip)
	}
	if want.IsUnspecified() {
		if flag == "--advertise" {
			return fmt.Errorf("--advertise %s: give the address other nodes reach this one at, not an unspecified one", ip)
		}
		return nil
	}
	addrs, err := hostAddrs()
	if err != nil {
		return fmt.Errorf("%s %s: list this host's addresses: %w", flag, ip, err)
	}
	var have []string
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		got, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		if got.Unmap() == want.Unmap() {
			return nil
		}
		if !got.IsLinkLocalUnicast() {
			have = append(have, got.Unmap().String())
		}
	}
	hint := "give one of this host's addresses"
	if flag == "--advertise" {
		hint += " (behind NAT, give the local one as --bind)"
	}
	return fmt.Errorf("%s %s: this host has no such address (it has %s); %s", flag, ip, strings.Join(have, ", "), hint)
}

// nodeCompletion completes node names from the local agent's status (the
// command's --data-dir): keep says which members to offer. Without an
// agent it offers nothing, and no file names.
func nodeCompletion(keep func(st cluster.Status, m cluster.MemberStatus) bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		dataDir := cluster.DefaultDataDir
		if f := cmd.Flags().Lookup("data-dir"); f != nil {
			dataDir = f.Value.String()
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
		defer cancel()
		st, err := cluster.NewLocalClient(dataDir).Status(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []cobra.Completion
		for _, m := range st.Members {
			if keep(st, m) {
				names = append(names, cobra.CompletionWithDesc(m.Name, string(m.Role)))
			}
		}
		sort.Strings(names)
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// registerCompletions completes node names for `failover --to` (GPU
// members other than the active one), `raft transfer-leader --to` (voters)
// and `remove` (any member, once).
func registerCompletions(root *cobra.Command) {
	if c, _, err := root.Find([]string{"failover"}); err == nil && c != root {
		_ = c.RegisterFlagCompletionFunc("to", nodeCompletion(func(st cluster.Status, m cluster.MemberStatus) bool {
			return m.Role == fsm.RoleGPU && m.Name != st.Active.Node
		}))
	}
	if c, _, err := root.Find([]string{"raft", "transfer-leader"}); err == nil && c != root {
		_ = c.RegisterFlagCompletionFunc("to", nodeCompletion(func(_ cluster.Status, m cluster.MemberStatus) bool { return m.Voter }))
	}
	if c, _, err := root.Find([]string{"remove"}); err == nil && c != root {
		all := nodeCompletion(func(cluster.Status, cluster.MemberStatus) bool { return true })
		c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return all(cmd, args, toComplete)
		}
	}
}
