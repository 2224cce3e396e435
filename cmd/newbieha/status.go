package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/newbieha/newbieha/cluster"
)

// Exit codes of `newbieha status` (docs/operations.md).
const (
	statusHealthy  = 0
	statusDegraded = 1
	statusNoAnswer = 2
)

func newStatusCmd() *cobra.Command {
	var dataDir, output string
	var watch bool
	var interval, wait time.Duration
	cmd := &cobra.Command{
		Use:   "status [--watch [--interval 1s]]",
		Short: "Show the cluster: leader, active node, VIP, members; exit 1 when degraded",
		Long: `Show the cluster as the member asked sees it: the leader, the active node
and who holds the VIP, and per member its Raft state, term, applied and
commit index, last contact with the leader, version, lease and health.
Members that do not answer within 750 ms are named.

Exit codes: 0 healthy; 1 degraded (no leader, no active node or nobody
holding the VIP, a member that did not answer, a VIP conflict, a blocked
move, a voter in its start-up quarantine, an unhealthy GPU node); 2 the
agent could not be asked. With --watch the view is redrawn in
place every --interval until Ctrl-C. With --wait the command asks every
--interval until the cluster is healthy (exit 0) or the time is up (exit 1,
or 2 when the agent never answered), and prints the last answer: between
the steps of a rolling restart, "status --wait 2m" holds the next step
until every member is back.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if interval < 100*time.Millisecond {
				return fmt.Errorf("--interval %v: want at least 100ms", interval)
			}
			client := agentClient(dataDir)
			if watch {
				return watchStatus(cmd.Context(), cmd.OutOrStdout(), client.Status, interval)
			}
			if wait < 0 {
				return fmt.Errorf("--wait %v: want a duration of 0 or more", wait)
			}
			st, err := waitHealthy(cmd.Context(), client.Status, wait, interval)
			if err != nil {
				return &exitError{statusNoAnswer, err}
			}
			if output == "json" {
				if err := printJSON(cmd.OutOrStdout(), st); err != nil {
					return err
				}
			} else if err := printStatus(cmd.OutOrStdout(), st); err != nil {
				return err
			}
			if p := st.Problems(); len(p) > 0 {
				return &exitError{statusDegraded, fmt.Errorf("degraded: %s", strings.Join(p, "; "))}
			}
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	outputFlag(cmd, &output)
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw the status in place every --interval until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often --watch and --wait ask")
	cmd.Flags().DurationVar(&wait, "wait", 0, "ask again until the cluster is healthy, for at most this long")
	return cmd
}

// watchStatus redraws the status in place until ctx ends: each frame is
// built whole, then written at once after moving the cursor home, each line
// clearing what is left of the one before and the screen below it, so the
// view changes without flicker (as watch(1) does).
func watchStatus(ctx context.Context, w io.Writer, get func(context.Context) (cluster.Status, error), interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	if _, err := io.WriteString(w, "\x1b[H\x1b[2J"); err != nil { // once: a clean screen
		return err
	}
	for {
		var frame bytes.Buffer
		fmt.Fprintf(&frame, "every %v, %s (Ctrl-C to stop)\n\n", interval, time.Now().Format("15:04:05"))
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := get(cctx)
		cancel()
		switch {
		case err != nil:
			fmt.Fprintf(&frame, "could not ask: %v\n", err)
		default:
			_ = printStatus(&frame, st)
			if p := st.Problems(); len(p) > 0 {
				fmt.Fprintf(&frame, "\nDEGRADED: %s\n", strings.Join(p, "; "))
			}
		}
		out := "\x1b[H" + strings.ReplaceAll(frame.String(), "\n", "\x1b[K\n") + "\x1b[J"
		if _, err := io.WriteString(w, out); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// waitHealthy asks until the status has no problems or wait has passed,
// and returns the last answer; the error is the last one when no answer
// came at all. wait 0 asks once.
func waitHealthy(ctx context.Context, get func(context.Context) (cluster.Status, error), wait, interval time.Duration) (cluster.Status, error) {
	deadline := time.Now().Add(wait)
	var last cluster.Status
	answered := false
	for {
		st, err := get(ctx)
		if err == nil {
			last, answered = st, true
			if len(st.Problems()) == 0 {
				return st, nil
			}
		}
		if !time.Now().Add(interval).Before(deadline) {
			if !answered {
				return last, err
			}
			return last, nil
		}
		select {
		case <-ctx.Done():
			if !answered {
				return last, ctx.Err()
			}
			return last, nil
		case <-time.After(interval):
		}
	}
}
