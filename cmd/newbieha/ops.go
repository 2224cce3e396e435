package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/fsm"
)

func newFailoverCmd() *cobra.Command {
	var dataDir, output string
	var to string
	var wait time.Duration
	var force bool
	cmd := &cobra.Command{
		Use:   "failover --to NODE",
		Short: "Hand the active role (and the VIP) to another GPU node, and measure the switch",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return fmt.Errorf("--to: the node to hand over to is required")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			if err := checkOutput(output); err != nil {
				return err
			}
			c := agentClient(dataDir)
			begin := time.Now()
			resp, err := c.Failover(ctx, cluster.FailoverRequest{To: to, Force: force})
			if err != nil {
				return fmt.Errorf("failover to %s: %w", to, err)
			}
			if output == "table" {
				fmt.Fprintf(cmd.OutOrStdout(), "epoch %d (%s -> %s) committed after %.0f ms\n", resp.Epoch, resp.From, resp.To, resp.CommittedMs)
				if resp.HeldMs > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "%s holds the lease after %.0f ms\n", resp.To, resp.HeldMs)
				}
			}
			// The switch is done when the target reports holding the VIP
			// (or, with no VIP configured, leads as the active node).
			for {
				st, err := c.Status(ctx)
				if err == nil && switched(st, to) {
					ms := float64(time.Since(begin).Microseconds()) / 1000
					if output == "json" {
						return printJSON(cmd.OutOrStdout(), struct {
							cluster.FailoverResponse
							SwitchedMs float64 `json:"switched_ms"`
						}{resp, ms})
					}
					fmt.Fprintf(cmd.OutOrStdout(), "switched to %s in %.0f ms\n", to, ms)
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("failover to %s: recorded, but %s did not report the VIP within --wait %v", to, to, wait)
				case <-time.After(10 * time.Millisecond):
				}
			}
		},
	}
	dataDirFlag(cmd, &dataDir)
	cmd.Flags().StringVar(&to, "to", "", "the GPU node to make active (required)")
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for the switch to complete")
	cmd.Flags().BoolVar(&force, "force", false, "skip the target's health check (it must still be reachable)")
	outputFlag(cmd, &output)
	return cmd
}

func switched(st cluster.Status, to string) bool {
	if st.Active.Node != to {
		return false
	}
	if st.VIP.Address == "" {
		return true
	}
	return st.VIP.Holder == to && st.VIP.Conflict == ""
}

func newMaintenanceCmd() *cobra.Command {
	var dataDir, reason string
	cmd := &cobra.Command{
		Use:       "maintenance on|off",
		Short:     "Turn maintenance mode on (nothing moves on its own) or off",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"on", "off"},
		RunE: func(cmd *cobra.Command, args []string) error {
			var on bool
			switch args[0] {
			case "on":
				on = true
			case "off":
			default:
				return fmt.Errorf("maintenance %q: want on or off", args[0])
			}
			if err := agentClient(dataDir).Maintenance(cmd.Context(), on, reason); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "maintenance %s\n", args[0])
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	cmd.Flags().StringVar(&reason, "reason", "", "why (kept in the log)")
	return cmd
}

func newHistoryCmd() *cobra.Command {
	var dataDir, output string
	var events bool
	cmd := &cobra.Command{
		Use:   "history [--events]",
		Short: "List every change of the active node (epoch, from, to, reason, time); --events lists drills and VIP conflicts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c := agentClient(dataDir)
			if events {
				e, err := c.Events(cmd.Context())
				if err != nil {
					return err
				}
				if output == "json" {
					return printJSON(cmd.OutOrStdout(), e)
				}
				return printEvents(cmd.OutOrStdout(), e)
			}
			h, err := c.History(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), h)
			}
			return printHistory(cmd.OutOrStdout(), h)
		},
	}
	dataDirFlag(cmd, &dataDir)
	outputFlag(cmd, &output)
	cmd.Flags().BoolVar(&events, "events", false, "list audit events (drills, VIP conflicts) instead of transitions")
	return cmd
}

func printEvents(w io.Writer, ev []fsm.Event) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tKIND\tNODE\tDETAIL\tINDEX")
	for _, e := range ev {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", e.Time.Format(time.RFC3339Nano), e.Kind, dash(e.Node), e.Detail, e.Index)
	}
	return tw.Flush()
}

func printHistory(w io.Writer, h []fsm.Transition) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EPOCH\tTIME\tFROM\tTO\tREASON\tINDEX")
	for _, t := range h {
		from, to := t.From, t.To
		if from == "" {
			from = "-"
		}
		if to == "" {
			to = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\n", t.Epoch, t.Time.Format(time.RFC3339Nano), from, to, t.Reason, t.Index)
	}
	return tw.Flush()
}

func newVIPCmd() *cobra.Command {
	v := &cobra.Command{Use: "vip", Short: "Act on this host's VIP directly"}
	var dataDir string
	release := &cobra.Command{
		Use:   "release",
		Short: "Remove the VIP from this host, without the agent (for systemd ExecStopPost)",
		Args:  cobra.NoArgs,
		Long: `Remove the VIP this node last knew about (DATA-DIR/vip.json) from its
interface, without the agent, and detach newbieha's fences there. It says
whether it removed an address, and exits 1 when it removed none: the data
dir is missing, no VIP was ever set up here, or the address was not on the
interface. systemd's ExecStopPost=- ignores that exit.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			msg, err := releaseVIPCmd(dataDir)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), msg)
			return nil
		},
	}
	dataDirFlag(release, &dataDir)
	v.AddCommand(release)
	return v
}

func newRaftCmd() *cobra.Command {
	r := &cobra.Command{Use: "raft", Short: "Raft operator tools"}
	var dataDir, to string
	transfer := &cobra.Command{
		Use:   "transfer-leader --to NODE",
		Short: "Hand Raft leadership to a member (a witness hands it on to a GPU node at once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return fmt.Errorf("--to: the member to hand leadership to is required")
			}
			if err := agentClient(dataDir).TransferLeader(cmd.Context(), to); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "leadership handed to %s\n", to)
			return nil
		},
	}
	dataDirFlag(transfer, &dataDir)
	transfer.Flags().StringVar(&to, "to", "", "the member to hand leadership to (required)")
	r.AddCommand(transfer)
	return r
}

func newDrillCmd() *cobra.Command {
	d := &cobra.Command{Use: "drill", Short: "Drills: run a runbook (docs/drills.md), list and show reports, force check results"}
	var dataDir, node, check string
	var pass, clearInj bool
	var dur time.Duration
	inject := &cobra.Command{
		Use:   "inject --node NODE --check CHECK [--pass] --for 30s | --clear",
		Short: "Force a health check's result on a node for a while (failing unless --pass), or end that at once (--clear)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if check == "" {
				return fmt.Errorf("--check: the check's name or kind:name is required")
			}
			req := cluster.DrillRequest{Node: node, Check: check, Passing: pass, For: cluster.Duration(dur), Clear: clearInj}
			if err := agentClient(dataDir).Drill(cmd.Context(), req); err != nil {
				return err
			}
			if clearInj {
				fmt.Fprintf(cmd.OutOrStdout(), "check %s on %s: injection cleared\n", check, dash(node))
				return nil
			}
			verdict := "failing"
			if pass {
				verdict = "passing"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "check %s on %s forced %s for %v\n", check, dash(node), verdict, dur)
			return nil
		},
	}
	dataDirFlag(inject, &dataDir)
	inject.Flags().StringVar(&node, "node", "", "the node (default: this one)")
	inject.Flags().StringVar(&check, "check", "", "the check, by name or kind:name (e.g. http:service)")
	inject.Flags().BoolVar(&pass, "pass", false, "force passing instead of failing")
	inject.Flags().BoolVar(&clearInj, "clear", false, "end an earlier injection of the check at once (it is probed again at once)")
	inject.Flags().DurationVar(&dur, "for", 30*time.Second, "how long")
	d.AddCommand(inject, newDrillRunCmd(), newDrillListCmd(), newDrillReportCmd())
	return d
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
