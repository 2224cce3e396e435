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
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "status [--watch [--interval 1s]]",
		Short: "Show the cluster: leader, active node, VIP, members; exit 1 when degraded",
		Long: `Show the cluster as the member asked sees it: the leader, the active node
and who holds the VIP, and per member its Raft state, term, applied and
commit index, last contact with the leader, version, lease and health.
Members that do not answer within 750 ms are named.

Exit codes: 0 healthy; 1 degraded (no leader, no active node or nobody
holding the VIP, a member that did not answer, a VIP conflict, a blocked
move); 2 the agent could not be asked. With --watch the view is redrawn in
place every --interval until Ctrl-C.`,
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
			st, err := client.Status(cmd.Context())
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
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often --watch asks")
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
