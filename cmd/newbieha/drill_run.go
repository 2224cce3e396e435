package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/drill"
	"github.com/newbieha/newbieha/drill/runner"
	"github.com/newbieha/newbieha/fsm"
	"github.com/newbieha/newbieha/vip"
)

// maxStoredReports is how many drill reports the data dir keeps; the
// oldest go first.
const maxStoredReports = 100

// exitError is an error with the exit code the command should end with
// (main reads it): drill run exits 1 for a failed or aborted drill and 2
// when it could not start.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode is the process's exit code for a command's error.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newDrillRunCmd() *cobra.Command {
	var dataDir, arpIface, output string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "run RUNBOOK [--dry-run]",
		Short: "Run a runbook drill against the cluster: inject its faults, probe the VIP, undo, report",
		Long: `Run a runbook drill (docs/drills.md) against the cluster this CLI talks to
(the local agent's socket, or --server with an operator certificate).

The steady-state probe and the ARP watch run here, on the machine that
runs the CLI: a runbook's "from: witness" means run it on the witness
(or on another host of the VIP's segment, off the GPU nodes).

Faults this runner injects: check-fail, gpu-fail (drill injections that
expire by themselves), partition (nftables rules on the target whose
elements the kernel expires), service-stop and service-pause (the
container through the runtime, whose reconciler is held off until the
fault's end), service-errors (the service's fault switch, bounded),
agent-crash (the target's agent exits without cleanup; its service
manager restarts it) and planned-failover. A runbook whose fault cannot
be injected on this cluster is refused before anything changes.

Exit code: 0 when every expectation and step passed, 1 when one failed or
the drill was aborted, 2 when it could not start (a precondition, a fault
not supported, the steady state not holding). The report is kept as JSON
in DATA_DIR/drills (newbieha drill list, drill report ID).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkReportOutput(output); err != nil {
				return &exitError{2, err}
			}
			rb, err := drill.ParseFile(args[0])
			if err != nil {
				return &exitError{2, err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c := agentClient(dataDir)
			cl := &drillCluster{c: c}
			faults := &drillFaults{c: c, cl: cl, runbook: rb.Name}
			if remote == nil {
				faults.socketOf = witnessSocket(ctx, c)
			}
			cfg := runner.Config{
				Cluster:  cl,
				Faults:   faults,
				Operator: operatorName(),
				Progress: cmd.ErrOrStderr(),
			}
			plan, err := runner.Prepare(ctx, cfg, rb)
			if dryRun {
				if plan != nil {
					fmt.Fprint(cmd.OutOrStdout(), plan.String())
				}
				if err != nil {
					return &exitError{2, err}
				}
				fmt.Fprintln(cmd.OutOrStdout(), "preconditions hold; dry run: nothing was changed")
				return nil
			}
			if err != nil {
				return &exitError{2, err}
			}
			cfg.Probe = newHTTPProber(rb.SteadyState.Probe, plan.ProbeURL)
			if rb.SteadyState.ARPWatch {
				w, why := newARPWatcher(arpIface, plan.View.VIP)
				if w != nil {
					cfg.ARP = w
				} else {
					cfg.ARPOff = why
				}
			}
			store := reportStore{dir: filepath.Join(dataDir, "drills")}
			id := store.newID(rb.Name, time.Now())
			res, err := runner.Run(ctx, cfg, plan, id)
			if err != nil {
				return &exitError{2, err}
			}
			rep := res.Report
			prev, _ := store.previous(rb.Name, id)
			path, serr := store.save(id, rep, prev)
			if err := printReport(cmd.OutOrStdout(), rep, prev, output); err != nil {
				return &exitError{1, err}
			}
			if serr != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: report not stored: %v\n", serr)
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "report %s stored in %s (newbieha drill report %s)\n", id, path, id)
			}
			if res.RecordErr != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: the drill's end is not in the history: %v\n", res.RecordErr)
			}
			if !rep.Passed() {
				why := string(rep.Verdict)
				if rep.AbortReason != "" {
					why += ": " + rep.AbortReason
				}
				return &exitError{1, fmt.Errorf("drill %s %s", rb.Name, why)}
			}
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan (targets resolved) and the preconditions; change nothing")
	cmd.Flags().StringVar(&arpIface, "arp-iface", "", "interface to watch ARP for the VIP on (default: the one whose subnet holds the VIP)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "report format: table, json or markdown")
	return cmd
}

func newDrillListCmd() *cobra.Command {
	var dataDir, output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the drill reports kept in this machine's data dir, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			reps, err := reportStore{dir: filepath.Join(dataDir, "drills")}.all()
			if err != nil {
				return err
			}
			sort.SliceStable(reps, func(i, j int) bool { return reps[i].rep.Start.After(reps[j].rep.Start) })
			if output == "json" {
				type row struct {
					ID      string        `json:"id"`
					Runbook string        `json:"runbook"`
					Start   time.Time     `json:"start"`
					Verdict drill.Verdict `json:"verdict"`
					Figures drill.Figures `json:"figures"`
				}
				rows := []row{}
				for _, r := range reps {
					rows = append(rows, row{r.id, r.rep.Runbook, r.rep.Start, r.rep.Verdict, r.rep.Figures})
				}
				return printJSON(cmd.OutOrStdout(), rows)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tRUNBOOK\tSTART\tVERDICT\tFAILOVER MS\tLONGEST OUTAGE MS\tFAILED REQUESTS")
			for _, r := range reps {
				f := r.rep.Figures
				fo := "-"
				if f.FailoverMs != nil {
					fo = fmt.Sprintf("%.0f", *f.FailoverMs)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%d\n", r.id, r.rep.Runbook, r.rep.Start.UTC().Format(time.RFC3339), r.rep.Verdict, fo, f.LongestOutageMs, f.FailedRequests)
			}
			return tw.Flush()
		},
	}
	dataDirFlag(cmd, &dataDir)
	outputFlag(cmd, &output)
	return cmd
}

func newDrillReportCmd() *cobra.Command {
	var dataDir, output string
	cmd := &cobra.Command{
		Use:   "report ID [-o table|json|markdown]",
		Short: "Show a stored drill report, with the previous run of the same runbook beside it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkReportOutput(output); err != nil {
				return err
			}
			store := reportStore{dir: filepath.Join(dataDir, "drills")}
			rep, err := store.load(args[0])
			if err != nil {
				return err
			}
			prev, _ := store.previous(rep.Runbook, args[0])
			return printReport(cmd.OutOrStdout(), rep, prev, output)
		},
	}
	dataDirFlag(cmd, &dataDir)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "report format: table, json or markdown")
	return cmd
}

func checkReportOutput(o string) error {
	switch o {
	case "table", "json", "markdown":
		return nil
	}
	return fmt.Errorf("--output %q: want table, json or markdown", o)
}

func printReport(w io.Writer, rep, prev *drill.Report, output string) error {
	switch output {
	case "json":
		b, err := rep.JSON(prev)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "markdown":
		_, err := io.WriteString(w, rep.Markdown(prev))
		return err
	}
	_, err := io.WriteString(w, rep.Text(prev))
	return err
}

// operatorName is who runs the CLI, for the report ("alice@host"); the
// history records the identity the operator API verified.
func operatorName() string {
	name := os.Getenv("SUDO_USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	host, _ := os.Hostname()
	if host != "" {
		return name + "@" + host
	}
	return name
}

// reportStore keeps drill reports as DIR/ID.json (0600, DIR 0700), at
// most maxStoredReports.
type reportStore struct{ dir string }

type storedReport struct {
	id  string
	rep *drill.Report
}

// newID names a run by its start and runbook: 20261201T221000Z-gpu-fails.
func (s reportStore) newID(runbook string, now time.Time) string {
	base := now.UTC().Format("20060102T150405Z") + "-" + runbook
	id := base
	for i := 2; ; i++ {
		if _, err := os.Stat(filepath.Join(s.dir, id+".json")); errors.Is(err, os.ErrNotExist) {
			return id
		}
		id = fmt.Sprintf("%s.%d", base, i)
	}
}

func (s reportStore) path(id string) (string, error) {
	if id == "" || strings.ContainsAny(id, "/\\") || strings.HasPrefix(id, ".") {
		return "", fmt.Errorf("drill report %q: not a report ID (newbieha drill list)", id)
	}
	return filepath.Join(s.dir, id+".json"), nil
}

func (s reportStore) save(id string, rep, prev *drill.Report) (string, error) {
	p, err := s.path(id)
	if err != nil {
		return "", err
	}
	b, err := rep.JSON(prev)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return "", fmt.Errorf("store drill report: %w", err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return "", fmt.Errorf("store drill report: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", fmt.Errorf("store drill report: %w", err)
	}
	s.prune()
	return p, nil
}

// prune removes the oldest reports beyond maxStoredReports.
func (s reportStore) prune() {
	reps, err := s.all()
	if err != nil || len(reps) <= maxStoredReports {
		return
	}
	sort.SliceStable(reps, func(i, j int) bool { return reps[i].rep.Start.Before(reps[j].rep.Start) })
	for _, r := range reps[:len(reps)-maxStoredReports] {
		_ = os.Remove(filepath.Join(s.dir, r.id+".json"))
	}
}

func (s reportStore) load(id string) (*drill.Report, error) {
	p, err := s.path(id)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("drill report %s: none in %s (newbieha drill list)", id, s.dir)
	}
	if err != nil {
		return nil, fmt.Errorf("drill report %s: %w", id, err)
	}
	return drill.ReadReport(b)
}

// all reads every stored report; one that does not read is skipped.
func (s reportStore) all() ([]storedReport, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("drill reports: %w", err)
	}
	var out []storedReport
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		if rep, err := s.load(id); err == nil {
			out = append(out, storedReport{id: id, rep: rep})
		}
	}
	return out, nil
}

// previous is the newest stored report of runbook that started before
// the report id (or any, when id is not stored yet).
func (s reportStore) previous(runbook, id string) (*drill.Report, error) {
	reps, err := s.all()
	if err != nil {
		return nil, err
	}
	var before time.Time
	for _, r := range reps {
		if r.id == id {
			before = r.rep.Start
		}
	}
	var best *drill.Report
	for _, r := range reps {
		if r.id == id || r.rep.Runbook != runbook {
			continue
		}
		if !before.IsZero() && !r.rep.Start.Before(before) {
			continue
		}
		if best == nil || r.rep.Start.After(best.Start) {
			best = r.rep
		}
	}
	return best, nil
}

// pollMemberTimeout bounds the wait for each member's answer in the status
// reads of a running drill (25 ms apart): a member that answers at all
// answers in a few ms on a LAN, and one that does not (cut off, crashed)
// then delays a holder change seen in status by at most this.
const pollMemberTimeout = 150 * time.Millisecond

// drillCluster reads the cluster through the operator API for the runner.
type drillCluster struct {
	c *cluster.Client
}

// View implements runner.Cluster: status always; with full, also the
// hold-down (the settings and the active node's start) and a drill still
// running (the drill-run events).
func (d *drillCluster) View(ctx context.Context, full bool) (drill.ClusterView, error) {
	if !full {
		// The poll during a run: a member cut off behind a silent network
		// must not delay the others' answers (the holder changes) by the
		// full member timeout.
		st, err := d.c.StatusWithin(ctx, pollMemberTimeout)
		if err != nil {
			return drill.ClusterView{}, err
		}
		return viewOf(st), nil
	}
	st, err := d.c.Status(ctx)
	if err != nil {
		return drill.ClusterView{}, err
	}
	v := viewOf(st)
	cfg, err := d.c.ConfigShow(ctx)
	if err != nil {
		return v, fmt.Errorf("read the settings: %w", err)
	}
	if hd := time.Duration(cfg.Settings.Failover.HoldDown); hd > 0 && !st.Active.Since.IsZero() {
		v.HoldDownRemaining = max(time.Until(st.Active.Since.Add(hd)), 0)
	}
	ev, err := d.c.Events(ctx)
	if err != nil {
		return v, fmt.Errorf("read the events: %w", err)
	}
	v.DrillRunning = runningDrill(ev, time.Now())
	return v, nil
}

// viewOf turns status into the drill package's view of the cluster.
func viewOf(st cluster.Status) drill.ClusterView {
	v := drill.ClusterView{Active: st.Active.Node, Holder: st.VIP.Holder, Leader: st.Leader, Maintenance: st.Maintenance}
	if st.VIP.Address != "" {
		v.VIP, _, _ = strings.Cut(st.VIP.Address, "/")
	}
	for _, m := range st.Members {
		dm := drill.Member{Name: m.Name, Voter: m.Voter, Reachable: m.Raft != cluster.RaftUnreachable, Why: m.HealthReason}
		if m.Role == fsm.RoleGPU {
			dm.Role, dm.Healthy = drill.RoleGPU, m.Healthy && dm.Reachable
		} else {
			dm.Role, dm.Healthy = drill.RoleWitness, dm.Reachable
		}
		v.Members = append(v.Members, dm)
	}
	return v
}

// runningDrill names a drill whose start is recorded, whose end is not,
// and whose time limit has not passed at now; "" when none.
func runningDrill(events []fsm.Event, now time.Time) string {
	type run struct {
		runbook string
		until   time.Time
	}
	open := map[string]run{}
	var order []string
	for _, e := range events {
		req, _, ok := cluster.ParseDrillEvent(e)
		if !ok {
			continue
		}
		switch req.Phase {
		case cluster.DrillPhaseStart:
			open[req.ID] = run{req.Runbook, req.Until}
			order = append(order, req.ID)
		case cluster.DrillPhaseEnd:
			delete(open, req.ID)
		}
	}
	for i := len(order) - 1; i >= 0; i-- {
		if r, ok := open[order[i]]; ok && now.Before(r.until) {
			return fmt.Sprintf("%s (%s, until %s)", r.runbook, order[i], r.until.UTC().Format(time.RFC3339))
		}
	}
	return ""
}

// History implements runner.Cluster.
func (d *drillCluster) History(ctx context.Context) ([]runner.Transition, error) {
	h, err := d.c.History(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]runner.Transition, len(h))
	for i, t := range h {
		out[i] = runner.Transition{Index: t.Index, To: t.To, Reason: t.Reason}
	}
	return out, nil
}

// Record implements runner.Cluster.
func (d *drillCluster) Record(ctx context.Context, r runner.Record) error {
	return d.c.DrillEvent(ctx, cluster.DrillEventRequest{ID: r.ID, Runbook: r.Runbook, Phase: string(r.Phase), Until: r.Until, Summary: r.Summary})
}

// drillFaults injects the faults through the operator API: check and GPU
// injections (they carry their end, so they expire by themselves),
// partitions (nftables elements with a timeout on the target), service
// faults (the reconciler's hold and the stub's fault switch end at their
// bound), agent crashes and planned failovers.
type drillFaults struct {
	c       *cluster.Client
	cl      *drillCluster
	runbook string
	// gpuCheck is the required gpu check ("gpu:NAME"), found by Check.
	gpuCheck string
	// socketOf names the witness when the CLI calls the witness's own
	// socket: root there cannot carry a change to the leader (the witness
	// holds no CA key), so every fault is refused with what to do instead.
	socketOf string
}

// witnessSocket is the witness's name when c is a local socket that a
// witness answers; "" otherwise.
func witnessSocket(ctx context.Context, c *cluster.Client) string {
	st, err := c.Status(ctx)
	if err != nil {
		return ""
	}
	for _, m := range st.Members {
		if m.Name == st.Node && m.Role == fsm.RoleWitness {
			return m.Name
		}
	}
	return ""
}

// Check implements runner.Faults.
func (f *drillFaults) Check(ctx context.Context, ps drill.PlannedStep) error {
	k := ps.Step.Fault.Kind
	if f.socketOf != "" {
		return fmt.Errorf("root on %s's socket cannot carry a change to the leader or another member (a witness holds no CA key): run on the witness with an operator certificate, --server GPU_NODE:7700 --cert-dir DIR (newbieha operator cert)", f.socketOf)
	}
	switch k {
	case drill.FaultCheckFail, drill.FaultPlannedFailover, drill.FaultPartition:
		return nil
	case drill.FaultServiceStop, drill.FaultServicePause, drill.FaultServiceErrors:
		cfg, err := f.c.ConfigShow(ctx)
		if err != nil {
			return fmt.Errorf("read the settings: %w", err)
		}
		if k == drill.FaultServiceErrors {
			if cfg.Settings.Service.HealthURL == "" {
				return errors.New("service.health_url is not set: there is no service whose fault switch to use")
			}
			return nil
		}
		if rt := cfg.Settings.Service.Runtime; rt != "docker" {
			return fmt.Errorf("needs service.runtime: docker (the settings have %q): newbieha runs no container it could stop or pause", rt)
		}
		return nil
	case drill.FaultAgentCrash:
		st, err := f.c.Status(ctx)
		if err != nil {
			return fmt.Errorf("read status: %w", err)
		}
		if ps.Target == st.Node {
			return fmt.Errorf("%s is the member this CLI talks to, and it would lose the cluster with it: talk to another member (--server OTHER:7700 with an operator certificate)", ps.Target)
		}
		return nil
	case drill.FaultGPUFail:
		if f.gpuCheck != "" {
			return nil
		}
		id, err := f.requiredGPUCheck(ctx)
		if err != nil {
			return err
		}
		f.gpuCheck = id
		return nil
	default:
		return fmt.Errorf("%w: %s", runner.ErrNotSupported, k)
	}
}

// requiredGPUCheck finds the gpu check with required: true in the
// cluster settings.
func (f *drillFaults) requiredGPUCheck(ctx context.Context) (string, error) {
	cfg, err := f.c.ConfigShow(ctx)
	if err != nil {
		return "", fmt.Errorf("read the settings: %w", err)
	}
	for _, raw := range cfg.Settings.Checks {
		b, err := json.Marshal(raw)
		if err != nil {
			continue
		}
		var c struct {
			Name     string `json:"name"`
			Kind     string `json:"kind"`
			Required bool   `json:"required"`
		}
		if json.Unmarshal(b, &c) == nil && c.Kind == "gpu" && c.Required {
			return "gpu:" + c.Name, nil
		}
	}
	return "", errors.New("the cluster settings have no gpu check with required: true, so a forced GPU failure would move nothing (docs/health.md)")
}

// Inject implements runner.Faults.
func (f *drillFaults) Inject(ctx context.Context, ps drill.PlannedStep) (runner.Undo, error) {
	flt := ps.Step.Fault
	switch flt.Kind {
	case drill.FaultCheckFail, drill.FaultGPUFail:
		check := flt.Check
		if flt.Kind == drill.FaultGPUFail {
			check = f.gpuCheck
		}
		req := cluster.DrillRequest{Node: ps.Target, Check: check, For: cluster.Duration(flt.Duration)}
		if err := f.c.Drill(ctx, req); err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			return f.c.Drill(ctx, cluster.DrillRequest{Node: ps.Target, Check: check, Clear: true})
		}, nil
	case drill.FaultPartition:
		req := cluster.DrillPartitionRequest{Node: ps.Target, From: ps.From, For: cluster.Duration(flt.Duration)}
		if err := f.c.DrillPartition(ctx, req); err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			return f.c.DrillPartition(ctx, cluster.DrillPartitionRequest{Node: ps.Target, From: ps.From, Clear: true})
		}, nil
	case drill.FaultServiceStop, drill.FaultServicePause, drill.FaultServiceErrors:
		req := cluster.DrillServiceRequest{Node: ps.Target, Fault: serviceFaultOf[flt.Kind], For: cluster.Duration(flt.Duration)}
		if flt.Kind == drill.FaultServiceErrors {
			req.Status = flt.Status
		}
		if err := f.c.DrillService(ctx, req); err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			return f.c.DrillService(ctx, cluster.DrillServiceRequest{Node: ps.Target, Fault: req.Fault, Clear: true})
		}, nil
	case drill.FaultAgentCrash:
		if err := f.c.DrillCrash(ctx, cluster.DrillCrashRequest{Node: ps.Target}); err != nil {
			return nil, err
		}
		return func(ctx context.Context) error { return f.awaitAgent(ctx, ps.Target) }, nil
	case drill.FaultPlannedFailover:
		if _, err := f.c.Failover(ctx, cluster.FailoverRequest{To: ps.To, Reason: "manual:drill:" + f.runbook}); err != nil {
			return nil, err
		}
		if flt.Duration == 0 {
			return nil, nil
		}
		return func(ctx context.Context) error {
			_, err := f.c.Failover(ctx, cluster.FailoverRequest{To: ps.Target, Reason: "manual:drill:" + f.runbook + ":hand-back"})
			return err
		}, nil
	}
	return nil, fmt.Errorf("%w: %s", runner.ErrNotSupported, flt.Kind)
}

// serviceFaultOf is the agent's name of each service fault.
var serviceFaultOf = map[drill.FaultKind]string{
	drill.FaultServiceStop:   cluster.ServiceFaultStop,
	drill.FaultServicePause:  cluster.ServiceFaultPause,
	drill.FaultServiceErrors: cluster.ServiceFaultErrors,
}

// awaitAgent is the undo of agent-crash: the runner cannot start an agent
// on another host, its service manager does; this waits (within ctx) until
// status shows node answering again, and fails naming what to do if not.
func (f *drillFaults) awaitAgent(ctx context.Context, node string) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	why := "not read yet"
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := f.c.Status(rctx)
		cancel()
		if err != nil {
			why = err.Error()
		} else {
			why = "not in status"
			for _, m := range st.Members {
				if m.Name == node {
					if m.Raft != cluster.RaftUnreachable {
						return nil
					}
					why = "unreachable"
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the agent on %s is still down (%s): its service manager has not restarted it; start it there (systemctl start newbieha)", node, why)
		case <-t.C:
		}
	}
}

// httpProber is the steady-state probe: one request at a time, a new
// connection each (as vipwatch: a kept-alive connection would hide an ARP
// move), the answering node from the stub model server's X-Served-By.
type httpProber struct {
	client *http.Client
	p      drill.Probe
	url    string
}

func newHTTPProber(p drill.Probe, url string) *httpProber {
	return &httpProber{
		client: &http.Client{Timeout: p.Timeout, Transport: &http.Transport{DisableKeepAlives: true}},
		p:      p, url: url,
	}
}

// Probe implements runner.Prober.
func (h *httpProber) Probe(ctx context.Context) drill.ProbeResult {
	pr := drill.ProbeResult{At: time.Now()}
	var body io.Reader
	if h.p.Body != "" {
		body = strings.NewReader(h.p.Body)
	}
	req, err := http.NewRequestWithContext(ctx, h.p.Method, h.url, body)
	if err != nil {
		pr.Err = err.Error()
		return pr
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.client.Do(req)
	pr.Latency = time.Since(pr.At)
	if err != nil {
		pr.Err = probeErr(err)
		return pr
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	pr.Latency = time.Since(pr.At)
	pr.Status = resp.StatusCode
	pr.Node = resp.Header.Get("X-Served-By")
	return pr
}

// probeErr shortens a client error to what failed ("timeout",
// "connection refused").
func probeErr(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	}
	return err.Error()
}

// arpWatcher sends ARP requests for the VIP (vip.Probe) and lists who
// answers.
type arpWatcher struct {
	iface string
	ip    netip.Addr
}

// newARPWatcher watches ARP on iface, or on the interface whose IPv4
// subnet holds the VIP; nil and why when it cannot.
func newARPWatcher(iface, vipAddr string) (*arpWatcher, string) {
	ip, err := netip.ParseAddr(vipAddr)
	if err != nil || !ip.Is4() {
		return nil, fmt.Sprintf("the VIP %q is not an IPv4 address", vipAddr)
	}
	if iface == "" {
		if iface = ifaceFor(ip); iface == "" {
			return nil, "no interface here is on the VIP's subnet; give --arp-iface"
		}
	}
	return &arpWatcher{iface: iface, ip: ip}, ""
}

// ifaceFor is the interface with an IPv4 subnet that holds ip and is not
// ip itself (a GPU node holding the VIP would hear itself).
func ifaceFor(ip netip.Addr) string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 || ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil || !ipn.Contains(net.IP(ip.AsSlice())) || ipn.IP.Equal(net.IP(ip.AsSlice())) {
				continue
			}
			return ifc.Name
		}
	}
	return ""
}

// Round implements runner.ARPWatcher.
func (a *arpWatcher) Round(ctx context.Context, wait time.Duration) ([]string, error) {
	macs, err := vip.Probe(ctx, a.iface, a.ip, wait)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(macs))
	for i, m := range macs {
		out[i] = m.String()
	}
	return out, nil
}
