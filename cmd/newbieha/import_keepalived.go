package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/migrate/keepalived"
	wruntime "github.com/newbieha/newbieha/runtime"
)

// newImportCmd is `import`: turn another tool's configuration into
// newbieha cluster settings. docs/migration.md.
func newImportCmd() *cobra.Command {
	c := &cobra.Command{Use: "import", Short: "Turn an existing HA setup's configuration into cluster settings"}
	c.AddCommand(newImportKeepalivedCmd())
	return c
}

func newImportKeepalivedCmd() *cobra.Command {
	var script, compose, composeService, output string
	var names []string
	var preempt bool
	c := &cobra.Command{
		Use:   "keepalived KEEPALIVED.CONF [--check-script FILE] [--compose FILE] [-o FILE]",
		Short: "Convert a keepalived.conf (and its check script and compose file) into a cluster settings file",
		Long: `Convert the vrrp_instance of a keepalived.conf into cluster settings for
init --cluster-config or config apply: the VIP, the vrrp_script as an exec
check (with --check-script, the usual container / HTTP / nvidia-smi checks
in it become native checks and the script stays as an informational one),
the MASTER as failover.preferred, and with --compose the compose service as
the workload, notify_master, notify_backup, notify_fault and notify scripts
as exec hooks (docs/hooks.md).

Everything that is not carried over (authentication, unicast peers,
notify_stop, other instances, track_interface, weights, unknown keywords) is
listed, numbered, on stderr and as comments at the top of the output, each
with what to do instead. Keepalived names no nodes: the MASTER is node1 and
the BACKUP node2 unless --node-name-for names them by their unicast
addresses. Includes are refused: paste the included files in first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			cfg, err := keepalived.Parse(src)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			opt := keepalived.Options{Source: args[0], Preempt: preempt, NodeNames: map[netip.Addr]string{}}
			for _, n := range names {
				ip, name, ok := strings.Cut(n, "=")
				a, perr := netip.ParseAddr(ip)
				if !ok || perr != nil {
					return fmt.Errorf("--node-name-for %q: want IP=NAME", n)
				}
				if err := cluster.ValidateName(name); err != nil {
					return fmt.Errorf("--node-name-for %q: %w", n, err)
				}
				opt.NodeNames[a] = name
			}
			var cs keepalived.CheckScript
			if script != "" {
				if opt.CheckScript, err = os.ReadFile(script); err != nil {
					return err
				}
				opt.CheckScriptName = script
				cs = keepalived.RecogniseScript(opt.CheckScript)
			}
			if compose != "" {
				if opt.ComposeFile, err = filepath.Abs(compose); err != nil {
					return fmt.Errorf("--compose %s: %w", compose, err)
				}
				if opt.ComposeService, err = composeServiceFor(opt.ComposeFile, composeService, cs.Container); err != nil {
					return err
				}
				// The existing compose import decides what is honoured;
				// what it cannot is an error naming the key.
				if _, err := wruntime.LoadCompose(cmd.Context(), opt.ComposeFile, opt.ComposeService); err != nil {
					return err
				}
			}
			r, err := keepalived.Convert(cfg, opt)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			out, err := r.YAML(args[0])
			if err != nil {
				return err
			}
			// What we print must be what init and config apply accept.
			s, err := cluster.ParseSettings(out)
			if err == nil {
				err = validateSettings(s)
			}
			if err != nil {
				return fmt.Errorf("the converted settings do not validate (a bug in import keepalived; please report it): %w\n%s", err, out)
			}
			notes := r.SortedNotes()
			fmt.Fprintf(cmd.ErrOrStderr(), "Converted vrrp_instance %s. Not carried over, or carried over differently (%d):\n", r.Instance, len(notes))
			for i, n := range notes {
				fmt.Fprintf(cmd.ErrOrStderr(), "%2d. %s\n", i+1, n)
			}
			if output == "" || output == "-" {
				_, err = cmd.OutOrStdout().Write(out)
				return err
			}
			if err := os.WriteFile(output, out, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Wrote %s; check it with `newbieha config apply %s --dry-run`.\n", output, output)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&script, "check-script", "", "the `FILE` the vrrp_script runs: its usual checks become native ones")
	f.StringVar(&compose, "compose", "", "a docker-compose `FILE`: its service becomes the workload (runtime docker)")
	f.StringVar(&composeService, "compose-service", "", "the `SERVICE` of --compose (default: its only service, or the one the check script inspects)")
	f.StringVarP(&output, "output", "o", "", "write the settings to `FILE` instead of stdout")
	f.StringArrayVar(&names, "node-name-for", nil, "name the node with unicast address IP (unicast_src_ip or unicast_peer) `IP=NAME`; repeatable")
	f.BoolVar(&preempt, "preempt", false, "turn failover.preempt on (only when the instance has no nopreempt)")
	return c
}

// composeServiceFor picks the compose service: the one named, the only
// one, or the one whose service or container name the check script
// inspects.
func composeServiceFor(file, named, container string) (string, error) {
	if named != "" {
		return named, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--compose: %w", err)
	}
	var doc struct {
		Services map[string]struct {
			ContainerName string `yaml:"container_name"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return "", fmt.Errorf("--compose %s: %w", file, err)
	}
	var all []string
	for n := range doc.Services {
		all = append(all, n)
	}
	slices.Sort(all)
	switch {
	case len(all) == 0:
		return "", fmt.Errorf("--compose %s: no services", file)
	case len(all) == 1:
		return all[0], nil
	}
	for _, n := range all {
		if container != "" && (n == container || doc.Services[n].ContainerName == container) {
			return n, nil
		}
	}
	return "", errors.New("--compose " + file + ": several services (" + strings.Join(all, ", ") + "): name one with --compose-service")
}
