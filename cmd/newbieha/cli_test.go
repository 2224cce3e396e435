package main

import (
	"net"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// runOut runs the root command in-process and returns what it printed.
func runOut(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCmd()
	root.SetArgs(args)
	var o, e strings.Builder
	root.SetOut(&o)
	root.SetErr(&e)
	err = root.Execute()
	return o.String(), e.String(), err
}

// Unknown subcommands and flags fail with a suggestion instead of printing
// help and exiting 0; a group command alone still prints its help.
func TestCLI_UnknownSubcommandsAndFlagsFail(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"token", "lsit"}, []string{`unknown command "lsit" for "newbieha token"`, "Did you mean this?", "list"}},
		{[]string{"raft", "list-peers"}, []string{`unknown command "list-peers" for "newbieha raft"`, "newbieha raft --help"}},
		{[]string{"config", "shwo"}, []string{"Did you mean this?", "show"}},
		{[]string{"stauts"}, []string{`unknown command "stauts"`, "status"}},
		{[]string{"status", "--wacth"}, []string{"unknown flag: --wacth", "Did you mean this?", "--watch"}},
		{[]string{"token", "list", "--outptu", "json"}, []string{"unknown flag: --outptu", "--output"}},
		{[]string{"history", "--bogus-flag"}, []string{"unknown flag: --bogus-flag", "newbieha history --help"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := runOut(t, tt.args...)
			if err == nil {
				t.Fatal("exit 0; want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	out, _, err := runOut(t, "token")
	if err != nil || !strings.Contains(out, "Available Commands") {
		t.Fatalf("token alone: %v, %q; want its help", err, out)
	}
}

// No flag's usage takes a back-quoted word for its value name by mistake
// (pflag reads `X` in a usage string as the value's name: `join --help`
// showed "--token newbieha init").
func TestCLI_FlagValueNames(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		check := func(f *pflag.Flag) {
			if name, _ := pflag.UnquoteUsage(f); strings.ContainsAny(name, " .") {
				t.Errorf("%s --%s: value name %q", c.CommandPath(), f.Name, name)
			}
		}
		c.LocalFlags().VisitAll(check)
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(newRootCmd())
	out, _, err := runOut(t, "join", "--help")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "--token TOKEN") || strings.Contains(out, "--token newbieha") {
		t.Fatalf("join --help:\n%s", out)
	}
}

// join (and init) refuse, before contacting anyone, an --advertise address
// this host lacks, naming the flag; with --bind, the bind address is the
// one that must be local.
func TestJoin_AdvertiseMustBeOnThisHost(t *testing.T) {
	dir := t.TempDir()
	_, _, err := runOut(t, "join", "127.0.0.1:1", "--token", "nbha1.x", "--name", "n2", "--role", "gpu", "--advertise", "192.0.2.200", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "--advertise 192.0.2.200: this host has no such address") || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("join: %v; want --advertise refused, naming this host's addresses", err)
	}
	_, _, err = runOut(t, "init", "--name", "n1", "--advertise", "192.0.2.200", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "--advertise 192.0.2.200") {
		t.Fatalf("init: %v", err)
	}
	host := func() ([]net.Addr, error) {
		return []net.Addr{&net.IPNet{IP: net.ParseIP("10.0.0.5"), Mask: net.CIDRMask(24, 32)}}, nil
	}
	for _, tt := range []struct{ advertise, bind, want string }{
		{"10.0.0.5", "", ""},
		{"203.0.113.9", "10.0.0.5", ""}, // behind NAT
		{"203.0.113.9", "10.0.0.6", "--bind 10.0.0.6: this host has no such address (it has 10.0.0.5)"},
		{"0.0.0.0", "", "--advertise 0.0.0.0: give the address other nodes reach"},
		{"10.0.0.5", "0.0.0.0", ""},
		{"node1", "", `--advertise "node1": not an IP address`},
	} {
		err := checkListenAddr(tt.advertise, tt.bind, host)
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("advertise %s bind %s: %v; want %q", tt.advertise, tt.bind, err, tt.want)
		}
	}
	// A local address passes the check: join then fails contacting ADDR.
	_, _, err = runOut(t, "join", "127.0.0.1:1", "--token", "nbha1.x", "--name", "n2", "--role", "gpu", "--advertise", "127.0.0.1", "--data-dir", dir, "--wait", "1s")
	if err == nil || strings.Contains(err.Error(), "--advertise") {
		t.Fatalf("join with a local address: %v; want a later error", err)
	}
}

// Node names complete from the local agent's status: GPU standbys for
// failover --to, voters for raft transfer-leader --to, members for remove.
func TestCompletion_NodeNames(t *testing.T) {
	_, dir := newOpsAgent(t, threeNodes())
	complete := func(args ...string) string {
		out, _, err := runOut(t, append([]string{"__complete"}, args...)...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out
	}
	if out := complete("failover", "--data-dir", dir, "--to", ""); !strings.Contains(out, "node2\tgpu") || strings.Contains(out, "node1") || strings.Contains(out, "witness") {
		t.Errorf("failover --to:\n%s", out)
	}
	if out := complete("raft", "transfer-leader", "--data-dir", dir, "--to", ""); !strings.Contains(out, "node1") || !strings.Contains(out, "witness") {
		t.Errorf("raft transfer-leader --to:\n%s", out)
	}
	if out := complete("remove", "--data-dir", dir, ""); !strings.Contains(out, "node1") || !strings.Contains(out, "node2") || !strings.Contains(out, "witness") {
		t.Errorf("remove:\n%s", out)
	}
	if out := complete("remove", "--data-dir", t.TempDir(), ""); strings.Contains(out, "node") {
		t.Errorf("remove without an agent:\n%s", out)
	}
}
