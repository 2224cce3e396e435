package main

import (
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
