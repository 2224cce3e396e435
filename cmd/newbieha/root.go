package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"github.com/newbieha/newbieha/web"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/fsm"
	"github.com/newbieha/newbieha/internal/sdnotify"
	"github.com/newbieha/newbieha/vip"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "newbieha",
		Short:         "High availability for one GPU inference service: Raft quorum, VIP, container",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newInitCmd(), newJoinCmd(), newAgentCmd(), newStatusCmd(), newTokenCmd(), newRemoveCmd(), newVersionCmd(),
		newFailoverCmd(), newMaintenanceCmd(), newHistoryCmd(), newSettingsCmd(), newVIPCmd(), withRecoverCmd(newRaftCmd()), newDrillCmd(), newOperatorCmd(), newCertCmd(), newSnapshotCmd(), newImportCmd())
	addRemoteFlags(root)
	strictCommands(root)
	registerCompletions(root)
	root.SetFlagErrorFunc(flagError)
	return root
}

// dataDirFlag adds --data-dir to a command.
func dataDirFlag(cmd *cobra.Command, p *string) {
	def := cluster.DefaultDataDir
	if d := os.Getenv(envDataDir); d != "" {
		def = d
	}
	cmd.Flags().StringVar(p, "data-dir", def, "the node's data directory (config, TLS material, Raft data, local API socket) (env "+envDataDir+")")
}

// envDataDir is the default of --data-dir when set: a host with its data
// dir elsewhere, or a lab of several nodes on one machine.
const envDataDir = "NEWBIEHA_DATA_DIR"

// outputFlag adds --output table|json to a command.
func outputFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVarP(p, "output", "o", "table", "output format: table or json")
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return fmt.Errorf("--output %q: want table or json", o)
	}
	return nil
}

// portFlags adds --api-port, --raft-port and --gossip-port.
func portFlags(cmd *cobra.Command, p *cluster.Ports) {
	cmd.Flags().IntVar(&p.API, "api-port", cluster.DefaultAPIPort, "API port (mutual TLS)")
	cmd.Flags().IntVar(&p.Raft, "raft-port", cluster.DefaultRaftPort, "Raft port (mutual TLS)")
	cmd.Flags().IntVar(&p.Gossip, "gossip-port", cluster.DefaultGossipPort, "gossip port (encrypted)")
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newInitCmd() *cobra.Command {
	var opts cluster.InitOptions
	var role, output, clusterConfig string
	var metricsAddr metricsOpts
	cmd := &cobra.Command{
		Use:   "init --name NAME --advertise IP",
		Short: "Create a new cluster on this node and print the join command for the others",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			opts.Role = fsm.Role(role)
			if err := checkListenAddr(opts.Advertise, opts.Bind, net.InterfaceAddrs); err != nil {
				return err
			}
			if err := checkMetricsAddr(metricsAddr); err != nil {
				return err
			}
			if clusterConfig != "" {
				b, err := os.ReadFile(clusterConfig)
				if err != nil {
					return fmt.Errorf("--cluster-config: %w", err)
				}
				st, err := cluster.ParseSettings(b)
				if err == nil {
					err = validateSettings(st)
				}
				if err != nil {
					return fmt.Errorf("--cluster-config %s: %w", clusterConfig, err)
				}
				opts.ClusterConfig = b
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			opts.Logger = logging.ForCommand(cmd.ErrOrStderr())
			res, err := cluster.Init(ctx, opts)
			if err != nil {
				return err
			}
			if err := writeMetricsAddr(opts.DataDir, metricsAddr); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Cluster created; %s is its first member.\nStart it with:\n\n  newbieha agent --data-dir %s\n\nThen, on each other node (token valid until %s):\n\n  %s\n",
				opts.Name, opts.DataDir, res.Expires.Format(time.RFC3339), res.Join)
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Name, "name", "", "this node's name (required)")
	cmd.Flags().StringVar(&opts.Advertise, "advertise", "", "the IP address other nodes reach this one at (required)")
	cmd.Flags().StringVar(&opts.Bind, "bind", "", "the IP address to listen on (default: --advertise)")
	cmd.Flags().StringVar(&role, "role", "gpu", "this node's role: gpu or witness")
	cmd.Flags().DurationVar(&opts.TokenTTL, "token-ttl", cluster.DefaultTokenTTL, "validity of the first join token")
	cmd.Flags().StringVar(&clusterConfig, "cluster-config", "", "cluster settings file (YAML: vip, service, timings) to store at bootstrap")
	cmd.Flags().StringVar(&opts.Maintenance, "maintenance", "", "start the cluster in maintenance with this `REASON`: no node becomes active and nobody claims the VIP until maintenance off (a cutover from Keepalived: docs/cutover.md)")
	metricsAddrFlag(cmd, &metricsAddr)
	dataDirFlag(cmd, &opts.DataDir)
	portFlags(cmd, &opts.Ports)
	outputFlag(cmd, &output)
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("advertise")
	return cmd
}

// metricsOpts are init's and join's --metrics-addr and --web.
type metricsOpts struct {
	addr string
	web  bool
}

// metricsAddrFlag adds --metrics-addr and --web to init and join.
func metricsAddrFlag(cmd *cobra.Command, p *metricsOpts) {
	cmd.Flags().StringVar(&p.addr, "metrics-addr", "", "also serve Prometheus metrics over plain HTTP at this ip:port, e.g. 127.0.0.1:7703 (metrics_addr in the node config; docs/metrics.md)")
	cmd.Flags().BoolVar(&p.web, "web", false, "also serve the read-only status page on --metrics-addr (web: true in the node config; docs/web.md)")
}

// checkMetricsAddr checks --metrics-addr and --web before anything is
// created.
func checkMetricsAddr(o metricsOpts) error {
	if o.web && o.addr == "" {
		return errors.New("--web needs --metrics-addr: the page is served there")
	}
	if o.addr == "" {
		return nil
	}
	if _, err := netip.ParseAddrPort(o.addr); err != nil {
		return fmt.Errorf("--metrics-addr %q must be ip:port (for example 127.0.0.1:7703): %w", o.addr, err)
	}
	return nil
}

// writeMetricsAddr sets metrics_addr (and web) in the node config that
// init or join has just written ("" leaves them unset).
func writeMetricsAddr(dataDir string, o metricsOpts) error {
	if o.addr == "" {
		return nil
	}
	path := filepath.Join(dataDir, cluster.ConfigFileName)
	nc, err := cluster.LoadNodeConfig(path)
	if err == nil {
		nc.MetricsAddr, nc.Web = o.addr, o.web
		err = cluster.WriteNodeConfig(path, nc)
	}
	if err != nil {
		return fmt.Errorf("the node is set up, but --metrics-addr and --web were not saved (set metrics_addr: %s and web: %v in %s by hand): %w", o.addr, o.web, path, err)
	}
	return nil
}

func newJoinCmd() *cobra.Command {
	var opts cluster.JoinOptions
	var role, tokenFile string
	var metricsAddr metricsOpts
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "join ADDR --token-file PATH|--token TOKEN --name NAME --role gpu|witness --advertise IP",
		Short: "Join this node to a cluster through any member (ADDR is its IP or IP:API-PORT)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Addr, opts.Role = args[0], fsm.Role(role)
			if err := checkListenAddr(opts.Advertise, opts.Bind, net.InterfaceAddrs); err != nil {
				return err
			}
			if err := checkMetricsAddr(metricsAddr); err != nil {
				return err
			}
			tok, err := joinToken(cmd, opts.Token, tokenFile, os.LookupEnv)
			if err != nil {
				return err
			}
			opts.Token = tok
			ctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			cfg, err := cluster.Join(ctx, opts)
			if err != nil {
				return err
			}
			if err := writeMetricsAddr(opts.DataDir, metricsAddr); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Joined as %s (%s). Start the agent with:\n\n  newbieha agent --data-dir %s\n\nIt becomes a Raft voter when it first starts.\n", cfg.Name, cfg.Role, opts.DataDir)
			return nil
		},
	}
	joinTokenFlags(cmd, &opts.Token, &tokenFile) // or $NEWBIEHA_TOKEN; exactly one
	cmd.Flags().StringVar(&opts.Name, "name", "", "this node's name (required)")
	cmd.Flags().StringVar(&role, "role", "", "this node's role: gpu or witness (required)")
	cmd.Flags().StringVar(&opts.Advertise, "advertise", "", "the IP address other nodes reach this one at (required)")
	cmd.Flags().StringVar(&opts.Bind, "bind", "", "the IP address to listen on (default: --advertise)")
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to keep trying while the cluster has no leader")
	metricsAddrFlag(cmd, &metricsAddr)
	dataDirFlag(cmd, &opts.DataDir)
	portFlags(cmd, &opts.Ports)
	for _, f := range []string{"name", "role", "advertise"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newAgentCmd() *cobra.Command {
	var dataDir, configFile string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run this node's agent (foreground; stops on SIGINT or SIGTERM)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile == "" {
				configFile = dataDir + "/" + cluster.ConfigFileName
			}
			nc, err := cluster.LoadNodeConfig(configFile)
			if err != nil {
				return err
			}
			logger := nc.NewLogger(cmd.ErrOrStderr())
			cfg := cluster.Config{DataDir: dataDir, Node: nc, Logger: logger, ValidateSettings: validateSettings, Version: version, Revision: readBuildInfo().Revision}
			// Once the agent holds its data dir (a second agent on a live
			// one fails before this), whatever VIP and fence this node had
			// before go, address first: a restarted agent never serves on
			// a stale lease.
			cfg.BeforeStart = func() error {
				a, ok, err := releaseCachedVIP(dataDir)
				if err == nil && ok {
					logger.Info("removed any VIP and fence left from before", "vip", a.String())
				}
				return err
			}
			cfg.Partition = nftPartition
			cfg.Crash = crashNow
			if nc.Role == fsm.RoleGPU {
				svcCtx, stopSvcs := context.WithCancel(cmd.Context())
				svcs := newServices(svcCtx, dataDir, nc.Name, logger)
				defer func() { svcs.Close(); stopSvcs() }()
				cfg.Health, cfg.Workload, cfg.OnSettings, cfg.Drill = svcs, svcs, svcs.OnSettings, svcs.Drill
				cfg.ServiceFault = svcs.ServiceFault
				if cfg.Node.VIPInterface == "" {
					if cfg.Node.VIPInterface, err = ifaceOf(nc.Advertise); err != nil {
						return err
					}
				}
				cfg.NewVIP = vipFactory(dataDir, logger)
			}
			if nc.Role != fsm.RoleGPU && cfg.Node.VIPInterface == "" {
				// The witness only watches for VIP conflicts, where it
				// shares the segment.
				if ifc, ierr := ifaceOf(nc.Advertise); ierr == nil {
					cfg.Node.VIPInterface = ifc
				}
			}
			cfg.ProbeVIP = vip.Probe
			var page *webSource
			if nc.Web {
				page = newWebSource(dataDir)
				cfg.Web = web.Handler(page.get)
			}
			a, err := cluster.Start(cfg)
			if err != nil {
				return err
			}
			if page != nil {
				page.agent.Store(a)
			}
			// systemd (deploy/systemd): ready once serving; the watchdog
			// is pinged only while the agent's loops tick (systemd.go).
			notifyState(logger, sdnotify.StateReady)
			stopWatchdog := startWatchdog(logger, a.Alive)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			<-ctx.Done()
			logger.Info("signal received, stopping")
			notifyState(logger, sdnotify.StateStopping)
			stopWatchdog()
			// An active agent hands over to a healthy standby first.
			err = a.Shutdown()
			if _, _, rerr := releaseCachedVIP(dataDir); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return err
		},
	}
	dataDirFlag(cmd, &dataDir)
	cmd.Flags().StringVar(&configFile, "config", "", "node config file (default: DATA-DIR/newbieha.yaml)")
	return cmd
}

func printStatus(w io.Writer, st cluster.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	fmt.Fprintf(tw, "leader:\t%s\n", dash(st.Leader))
	if st.Active.Node == "" {
		fmt.Fprintf(tw, "active:\t-\n")
	} else {
		fmt.Fprintf(tw, "active:\t%s (epoch %d, since %s, %s)\n", st.Active.Node, st.Active.Epoch, st.Active.Since.Format(time.RFC3339), st.Active.Reason)
	}
	m := "off"
	if st.Maintenance {
		m = "ON"
		if i := st.MaintenanceInfo; i != nil {
			m += " since " + i.Since.UTC().Format(time.RFC3339)
			if i.By != "" {
				m += " by " + i.By
			}
			m += ": " + i.Reason
		}
	}
	fmt.Fprintf(tw, "maintenance:\t%s\n", m)
	if st.VIP.Address != "" {
		fmt.Fprintf(tw, "vip:\t%s held by %s\n", st.VIP.Address, dash(st.VIP.Holder))
	}
	if st.VIP.Conflict != "" {
		fmt.Fprintf(tw, "VIP CONFLICT:\t%s\n", st.VIP.Conflict)
	}
	fmt.Fprintln(tw)
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	fmt.Fprintln(tw, "NAME\tROLE\tADDRESS\tRAFT\tTERM\tAPPLIED\tCOMMIT\tCONTACT\tVERSION\tVOTER\tALIVE\tVIP\tLEASE\tHEALTHY")
	for _, mb := range st.Members {
		health := yes(mb.Healthy)
		if mb.Raft == cluster.RaftUnreachable && !mb.Alive {
			health = "?"
		} else if mb.HealthReason != "" {
			health += " (" + mb.HealthReason + ")"
		}
		lease := "-"
		if mb.Lease.Left > 0 {
			lease = time.Duration(mb.Lease.Left).Round(time.Millisecond).String()
		}
		term, applied, commit, contact := "-", "-", "-", "-"
		if mb.Answered {
			term, applied, commit = fmt.Sprint(mb.Term), fmt.Sprint(mb.AppliedIndex), fmt.Sprint(mb.CommitIndex)
			switch {
			case mb.LastContact < 0:
				contact = "never"
			case mb.Raft == cluster.RaftLeader:
				contact = "leader"
			default:
				contact = time.Duration(mb.LastContact).Round(time.Millisecond).String()
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", mb.Name, dash(string(mb.Role)), dash(mb.Address), mb.Raft,
			term, applied, commit, contact, dash(mb.Version), yes(mb.Voter), yes(mb.Alive), yes(mb.HoldsVIP), lease, health)
	}
	if st.Blocked != "" {
		fmt.Fprintf(tw, "\nactive stays:\t%s\n", st.Blocked)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printDetails(w, st)
}

func newTokenCmd() *cobra.Command {
	token := &cobra.Command{Use: "token", Short: "Manage join tokens"}
	var dataDir string
	var ttl time.Duration
	var role string
	var uses int
	var output, out string
	create := &cobra.Command{
		Use:   "create [--out FILE]",
		Short: "Create a join token (printed alone on stdout, or written to a new 0600 file with --out)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl <= 0 {
				return fmt.Errorf("--ttl %v: must be positive", ttl)
			}
			if r := fsm.Role(role); !r.Valid() {
				return fmt.Errorf("--role %q: want gpu or witness", role)
			}
			if uses < 1 || uses > fsm.MaxTokenUses {
				return fmt.Errorf("--uses %d: want 1..%d", uses, fsm.MaxTokenUses)
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			if out != "" {
				if _, err := os.Lstat(out); err == nil {
					return fmt.Errorf("--out %s: the file exists; a token file is never overwritten", out)
				}
			}
			t, err := agentClient(dataDir).CreateTokenUses(cmd.Context(), ttl, fsm.Role(role), uses)
			if err != nil {
				return err
			}
			if out != "" {
				// For join --token-file: mode 0600 from the first byte, a
				// new file only, synced.
				if err := cluster.WriteNewFile(out, []byte(t.Token+"\n")); err != nil {
					return fmt.Errorf("--out %s: %w", out, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "token written to %s (mode 0600; admits %d node(s) as %s until %s)\n", out, uses, role, t.Expires.Format(time.RFC3339))
				return nil
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), t)
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	dataDirFlag(create, &dataDir)
	outputFlag(create, &output)
	create.Flags().DurationVar(&ttl, "ttl", cluster.DefaultTokenTTL, "how long the token is valid (at most 168h)")
	create.Flags().StringVar(&role, "role", "gpu", "the role the token admits: gpu (a GPU node, which gets the CA key, or a witness) or witness (a witness only)")
	create.Flags().StringVar(&out, "out", "", "write the token to this new `FILE` (mode 0600) for join --token-file, instead of printing it")
	create.Flags().IntVar(&uses, "uses", cluster.DefaultTokenUses, fmt.Sprintf("how many nodes the token admits (at most %d)", fsm.MaxTokenUses))
	token.AddCommand(create, newTokenListCmd(agentClient), newTokenRevokeCmd(agentClient))
	return token
}

func newRemoveCmd() *cobra.Command {
	var dataDir string
	var force bool
	cmd := &cobra.Command{
		Use:   "remove NODE [--force]",
		Short: "Remove a member from the cluster (the active node, or a voter the quorum needs, only with --force)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := agentClient(dataDir)
			if !force {
				st, err := c.Status(cmd.Context())
				if err != nil {
					return fmt.Errorf("remove %s: read the status to check what the removal costs: %w (--force skips the check)", args[0], err)
				}
				if why := cluster.RemoveRefusal(st, args[0]); why != "" {
					return fmt.Errorf("remove %s refused without --force: %s", args[0], why)
				}
			}
			if err := c.RemoveWith(cmd.Context(), cluster.RemoveRequest{Name: args[0], Force: force}); err != nil {
				if errors.Is(err, cluster.ErrNeedsForce) {
					return fmt.Errorf("%w (--force removes it anyway)", err)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	cmd.Flags().BoolVar(&force, "force", false, "remove even the active node, or a voter without which the remaining voters alive are no majority")
	return cmd
}

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, the revision (git commit) and the build date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), readBuildInfo())
			}
			printVersion(cmd.OutOrStdout(), readBuildInfo())
			return nil
		},
	}
	outputFlag(cmd, &output)
	return cmd
}
