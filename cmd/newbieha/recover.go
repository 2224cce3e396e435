package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/newbieha/newbieha/cluster"
)

// Offline commands on a stopped node's data dir: raft recover (lost
// quorum), snapshot save/restore/inspect (backup). docs/recovery.md.

// withRecoverCmd adds `raft recover` to the raft command.
func withRecoverCmd(r *cobra.Command) *cobra.Command {
	r.AddCommand(newRaftRecoverCmd())
	return r
}

func offlineLogger(cmd *cobra.Command) *slog.Logger {
	return logging.ForCommand(cmd.ErrOrStderr())
}

func newRaftRecoverCmd() *cobra.Command {
	var opts cluster.RecoverOptions
	var output string
	cmd := &cobra.Command{
		Use:   "recover --data-dir DIR [--force]",
		Short: "Lost quorum: make this stopped node the only voter, keeping its state (prints the plan unless --force)",
		Long: `Recover a cluster that lost its quorum for good (two of three hosts gone).
Run it on the survivor with the newest state, its agent stopped. Without
--force it prints the current Raft configuration, the last index and term,
and what will change, and exits non-zero without changing anything. With
--force it rewrites the Raft state (raft.RecoverCluster) so that this node is
the only voter. Then start the agent, remove the lost members, and join
replacements with wiped data dirs and a new token. See docs/recovery.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			opts.Logger = offlineLogger(cmd)
			plan, err := cluster.Recover(opts)
			return showPlan(cmd, output, plan, plan.Node != "", err, printRecoverPlan)
		},
	}
	dataDirFlag(cmd, &opts.DataDir)
	cmd.Flags().BoolVar(&opts.Force, "force", false, "rewrite the Raft state (without it: print the plan, change nothing, exit 1)")
	cmd.Flags().BoolVar(&opts.SkipPeerCheck, "skip-peer-check", false, "recover even though a dropped member's Raft address accepts connections")
	outputFlag(cmd, &output)
	return cmd
}

// showPlan prints what a recover or restore found (made is false when it
// got no plan at all: then only err is returned) as text or JSON, and
// returns err: ErrForceRequired (exit 1) for a plan without --force.
func showPlan[P any](cmd *cobra.Command, output string, plan P, made bool, err error, text func(io.Writer, P)) error {
	if err != nil && !errors.Is(err, cluster.ErrForceRequired) && !made {
		return err
	}
	if output == "json" {
		if perr := printJSON(cmd.OutOrStdout(), plan); perr != nil {
			return perr
		}
	} else {
		text(cmd.OutOrStdout(), plan)
	}
	return err
}

func printServers(w io.Writer, servers []cluster.RaftServer, self string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range servers {
		role := "nonvoter"
		if s.Voter {
			role = "voter"
		}
		note := ""
		if s.Name == self {
			note = "(this node)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.Name, s.Address, role, note)
	}
	_ = tw.Flush()
}

func printRecoverPlan(w io.Writer, p cluster.RecoverPlan) {
	if p.Recovered {
		fmt.Fprintf(w, "Recovered: %s is the only voter of its Raft cluster (last index %d, term %d).\n", p.Node, p.LastIndex, p.LastTerm)
	} else {
		fmt.Fprintf(w, "Lost-quorum recovery of %s (data dir %s).\n", p.Node, p.DataDir)
		fmt.Fprintf(w, "\nRaft configuration now, read from the stores:\n")
		printServers(w, p.Current, p.Node)
		if p.NotInConfiguration {
			fmt.Fprintf(w, "  (%s is not in it: it was removed; it becomes the only voter anyway)\n", p.Node)
		}
		fmt.Fprintf(w, "Last entry: index %d, term %d (the state is kept as this node has it, including\n"+
			"entries at the end of its log that the lost members may never have confirmed).\n", p.LastIndex, p.LastTerm)
		fmt.Fprintf(w, "\nWith --force, the configuration becomes:\n  %s  %s  voter (alone)\n", p.Node, p.RaftAddr)
	}
	if len(p.Dropped) > 0 {
		fmt.Fprintf(w, "\n%s leave the Raft configuration. Their member records stay in the replicated\n"+
			"state until you remove them; they must never start again with their old data dirs\n"+
			"(wipe them) and join again with a new token.\n", strings.Join(p.Dropped, ", "))
	}
	if p.NoCAKey {
		fmt.Fprintf(w, "\nWARNING: %s holds no cluster CA key (a witness): alone it cannot admit any new member.\n"+
			"If no GPU node survives, recover from a GPU node's data dir backup instead (docs/recovery.md).\n", p.Node)
	}
	if len(p.Answering) > 0 {
		fmt.Fprintf(w, "\nWARNING: %s still accept connections on their Raft address. If their agents run,\n"+
			"they may still be a majority: do not recover; stop them first.\n", strings.Join(p.Answering, ", "))
	}
	if !p.Recovered {
		fmt.Fprintf(w, "\nNothing changed. Run again with --force to recover.\n")
		return
	}
	fmt.Fprintf(w, "\nNext:\n  1. start the agent: systemctl start newbieha (or newbieha agent --data-dir %s)\n", p.DataDir)
	step := 2
	if len(p.Dropped) > 0 {
		fmt.Fprintf(w, "  %d. remove the lost members:", step)
		for _, d := range p.Dropped {
			fmt.Fprintf(w, " newbieha remove %s;", d)
		}
		fmt.Fprintln(w)
		step++
	}
	fmt.Fprintf(w, "  %d. newbieha token create (add --role witness for a witness)\n", step)
	fmt.Fprintf(w, "  %d. on each replacement host, with a wiped data dir: newbieha join %s --token-file TOKEN --name NAME --role gpu|witness --advertise IP, then start its agent\n", step+1, "ADDR")
}

func newSnapshotCmd() *cobra.Command {
	s := &cobra.Command{Use: "snapshot", Short: "Back up (online or offline) and restore (offline) the replicated state"}
	s.AddCommand(newSnapshotSaveCmd(), newSnapshotRestoreCmd(), newSnapshotInspectCmd())
	return s
}

func newSnapshotSaveCmd() *cobra.Command {
	var opts cluster.SaveOptions
	var output string
	cmd := &cobra.Command{
		Use:   "save FILE [--data-dir DIR]",
		Short: "Write the replicated state to a new snapshot file (mode 0600), from the running agent or a stopped node's data dir",
		Long: `Write the replicated state to a new snapshot file (mode 0600, never over an
existing file). With an agent running (on --data-dir's socket, or --server),
the agent takes a Raft snapshot now and sends it: nothing stops, and on the
leader every committed entry is in it. With the agent stopped, the state is
read from the data dir (the newest Raft snapshot and the log after it).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			opts.File, opts.Logger = args[0], offlineLogger(cmd)
			var info cluster.SnapshotInfo
			var err error
			if remote != nil || cluster.AgentAnswers(opts.DataDir) {
				var data []byte
				ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
				defer cancel()
				if data, info, err = agentClient(opts.DataDir).Snapshot(ctx); err != nil {
					return err
				}
				if err = cluster.WriteNewFile(opts.File, data); err != nil {
					return err
				}
			} else if info, err = cluster.SaveSnapshot(opts); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), info)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Saved %s:\n", opts.File)
			printSnapshotInfo(cmd.OutOrStdout(), info)
			return nil
		},
	}
	dataDirFlag(cmd, &opts.DataDir)
	outputFlag(cmd, &output)
	return cmd
}

func newSnapshotInspectCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Check a snapshot file (version, checksum, state) and print its header",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			info, _, err := cluster.ReadSnapshotFile(args[0])
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), info)
			}
			printSnapshotInfo(cmd.OutOrStdout(), info)
			return nil
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

func printSnapshotInfo(w io.Writer, info cluster.SnapshotInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  format:\t%d\n", info.Format)
	fmt.Fprintf(tw, "  cluster:\t%s (CA %s)\n", info.Cluster, info.CAHash)
	fmt.Fprintf(tw, "  saved from:\t%s at %s\n", info.Node, info.Created.Format(time.RFC3339))
	fmt.Fprintf(tw, "  raft:\tindex %d, term %d\n", info.Index, info.Term)
	fmt.Fprintf(tw, "  members:\t%s\n", strings.Join(info.Members, ", "))
	active := info.Active
	if active == "" {
		active = "-"
	}
	fmt.Fprintf(tw, "  active:\t%s\n", active)
	fmt.Fprintf(tw, "  history:\t%d transitions\n", info.History)
	fmt.Fprintf(tw, "  state:\t%d bytes, sha256 %s\n", info.Size, info.SHA256)
	_ = tw.Flush()
}

func newSnapshotRestoreCmd() *cobra.Command {
	var opts cluster.RestoreOptions
	var output string
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR --force",
		Short: "Install a snapshot file as this stopped node's whole Raft state, as the only voter (prints the plan unless --force)",
		Long: `Install a snapshot file into a stopped node of the same cluster (its TLS
material and node config stay): the node then starts as a one-voter cluster
with the file's state, and the other members are removed and join again with
wiped data dirs. The old Raft state is kept beside it in raft.before-restore-TIME.
Only for a cluster that is down: the other members must be stopped. Without
--force it prints the plan and exits non-zero without changing anything.
See docs/recovery.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			opts.File, opts.Logger = args[0], offlineLogger(cmd)
			plan, err := cluster.RestoreSnapshot(opts)
			return showPlan(cmd, output, plan, plan.Node != "", err, printRestorePlan)
		},
	}
	dataDirFlag(cmd, &opts.DataDir)
	cmd.Flags().BoolVar(&opts.Force, "force", false, "install the state (without it: print the plan, change nothing, exit 1)")
	cmd.Flags().BoolVar(&opts.SkipPeerCheck, "skip-peer-check", false, "restore even though another member's Raft address accepts connections")
	outputFlag(cmd, &output)
	return cmd
}

func printRestorePlan(w io.Writer, p cluster.RestorePlan) {
	if p.Restored {
		fmt.Fprintf(w, "Restored %s (index %d, term %d) into %s: %s is the only voter.\n", p.Snapshot.Cluster, p.Snapshot.Index, p.Snapshot.Term, p.DataDir, p.Node)
	} else {
		fmt.Fprintf(w, "Restore into %s (data dir %s) from:\n", p.Node, p.DataDir)
		printSnapshotInfo(w, p.Snapshot)
		fmt.Fprintf(w, "\nWith --force, %s starts as the only voter (%s) with this state.\n", p.Node, p.RaftAddr)
	}
	if p.Existing {
		if p.Restored {
			fmt.Fprintf(w, "The previous Raft state is kept at %s (delete it once the node runs well).\n", p.KeptAt)
		} else {
			fmt.Fprintf(w, "The Raft state in the data dir (last index %d) is moved aside to %s.\n", p.LastIndex, p.KeptAt)
		}
	}
	if len(p.Others) > 0 {
		fmt.Fprintf(w, "%s are members in the state but not voters: remove them, wipe their data dirs, join them again.\n", strings.Join(p.Others, ", "))
	}
	if len(p.Answering) > 0 {
		fmt.Fprintf(w, "\nWARNING: %s still accept connections on their Raft address. Restore only into a cluster\n"+
			"that is down: stop them first.\n", strings.Join(p.Answering, ", "))
	}
	if !p.Restored {
		fmt.Fprintf(w, "\nNothing changed. Run again with --force to restore.\n")
		return
	}
	fmt.Fprintf(w, "\nNext:\n  1. start the agent: systemctl start newbieha (or newbieha agent --data-dir %s)\n", p.DataDir)
	if len(p.Others) > 0 {
		fmt.Fprintf(w, "  2. remove the others:")
		for _, o := range p.Others {
			fmt.Fprintf(w, " newbieha remove %s;", o)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  3. newbieha token create, then join each of them again from a wiped data dir\n")
	}
}
