package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/newbieha/newbieha/cluster"
)

// newSettingsCmd is `config`: show the replicated cluster settings (YAML or
// JSON) and apply a settings file, with --dry-run printing the diff and the
// warnings without applying.
func newSettingsCmd() *cobra.Command {
	cfg := &cobra.Command{Use: "config", Short: "Show or change the replicated cluster settings"}
	var showDir, output string
	show := &cobra.Command{
		Use:   "show [-o yaml|json]",
		Short: "Print the live cluster settings (YAML, or JSON with -o json)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "yaml" && output != "json" && output != "table" {
				return fmt.Errorf("--output %q: want yaml or json", output)
			}
			r, err := agentClient(showDir).ConfigShow(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), r.Settings)
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), r.YAML)
			return err
		},
	}
	dataDirFlag(show, &showDir)
	show.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	var applyDir string
	var dryRun, force bool
	apply := &cobra.Command{
		Use:   "apply FILE [--dry-run] [--force]",
		Short: "Validate a cluster settings file and commit it; --dry-run prints the diff and warnings only",
		Long: `Validate a cluster settings file and commit it. Before it does, it
checks the VIP against the members' addresses (from status): a VIP outside
the subnet of some GPU member draws a warning, one outside every GPU
member's subnet is refused without --force (no member could answer ARP for
it). --dry-run prints the diff of the settings (live against FILE, both
with defaults filled in) and the warnings, and applies nothing; it exits 1
when apply would be refused.

Each node's VIP interface is in its node config (vip_interface), not in
these settings, and status does not report interfaces: it is not checked.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			st, err := cluster.ParseSettings(b)
			if err == nil {
				err = validateSettings(st)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			c := agentClient(applyDir)
			var warnings []string
			outside := false
			if status, err := c.Status(cmd.Context()); err != nil {
				warnings = append(warnings, fmt.Sprintf("could not read the status to check the VIP against the members: %v", err))
			} else {
				warnings, outside = vipWarnings(status, st)
			}
			warn := cmd.ErrOrStderr()
			if dryRun {
				warn = cmd.OutOrStdout()
				live, err := c.ConfigShow(cmd.Context())
				if err != nil {
					return fmt.Errorf("read the live settings: %w", err)
				}
				y, err := st.YAML()
				if err != nil {
					return err
				}
				if err := printSettingsDiff(cmd.OutOrStdout(), live.YAML, string(y), file); err != nil {
					return err
				}
			}
			for _, w := range warnings {
				fmt.Fprintf(warn, "warning: %s\n", w)
			}
			refused := outside && !force
			if dryRun {
				if refused {
					return fmt.Errorf("dry run: nothing applied; config apply would refuse %s without --force", file)
				}
				fmt.Fprintln(cmd.OutOrStdout(), "dry run: nothing applied")
				return nil
			}
			if refused {
				return fmt.Errorf("%s refused: its VIP %s is outside every GPU member's subnet (--force applies it anyway; --dry-run shows the diff)", file, st.VIP.Address)
			}
			if _, err := c.ConfigApply(cmd.Context(), b); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "applied %s\n", file)
			return nil
		},
	}
	dataDirFlag(apply, &applyDir)
	apply.Flags().BoolVar(&dryRun, "dry-run", false, "print the diff and the warnings; apply nothing")
	apply.Flags().BoolVar(&force, "force", false, "apply even a VIP outside every GPU member's subnet")
	cfg.AddCommand(show, apply)
	return cfg
}

// printSettingsDiff writes the line diff of the live settings against the
// file's, or that they are equal.
func printSettingsDiff(w io.Writer, live, next, file string) error {
	d := lineDiff(live, next, 2)
	if d == "" {
		_, err := fmt.Fprintf(w, "no change: %s equals the live settings\n", file)
		return err
	}
	_, err := fmt.Fprintf(w, "--- live settings\n+++ %s\n%s", file, d)
	return err
}
