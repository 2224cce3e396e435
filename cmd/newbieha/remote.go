package main

import (
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/cluster/pki"
)

// Environment variables that stand for --server and --cert-dir.
const (
	envServer  = "NEWBIEHA_SERVER"
	envCertDir = "NEWBIEHA_CERT_DIR"
)

// remote is the operator API the commands call: nil means the local
// agent's socket (--data-dir), else a member over mTLS with an operator
// certificate. Set by addRemoteFlags' PersistentPreRunE for each run.
var remote *cluster.Client

// addRemoteFlags adds --server and --cert-dir to every command.
func addRemoteFlags(root *cobra.Command) {
	var server, certDir string
	root.PersistentFlags().StringVar(&server, "server", "", "call this member's API (host:port) with an operator certificate instead of the local agent's socket (env "+envServer+")")
	root.PersistentFlags().StringVar(&certDir, "cert-dir", "", "`DIR` with the operator certificate for --server, as newbieha operator cert writes it (env "+envCertDir+")")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		remote = nil
		if !cmd.Flags().Changed("server") {
			server = os.Getenv(envServer)
		}
		if !cmd.Flags().Changed("cert-dir") {
			certDir = os.Getenv(envCertDir)
		}
		switch {
		case server == "" && certDir == "":
			return nil
		case server == "":
			return fmt.Errorf("--cert-dir %s is given but --server is not: name the member to call (host:port of its API)", certDir)
		case certDir == "":
			return fmt.Errorf("--server %s needs --cert-dir: the directory of an operator certificate (newbieha operator cert)", server)
		}
		c, err := cluster.NewRemoteClient(server, certDir)
		if err != nil {
			return err
		}
		remote = c
		return nil
	}
}

// agentClient is the client of the operator API: the remote member when
// --server is given, else the local agent whose data dir is dataDir.
func agentClient(dataDir string) *cluster.Client {
	if remote != nil {
		return remote
	}
	return cluster.NewLocalClient(dataDir)
}

func newOperatorCmd() *cobra.Command {
	op := &cobra.Command{Use: "operator", Short: "Operator identities for running commands remotely"}
	var dataDir, name, out string
	var ttl time.Duration
	cert := &cobra.Command{
		Use:   "cert --name NAME [--ttl 8h] [--out DIR]",
		Short: "Sign a short-lived operator certificate (run as root on a GPU node)",
		Long: `Sign a short-lived operator certificate for NAME and write it, its key
and the cluster CA into DIR (0700; files 0600). With it, any operator
command runs from another machine:

  newbieha --server 10.0.0.11:7700 --cert-dir DIR status

The key is made here and never leaves this machine; the agent signs the
public key. Only root on a member that holds the CA key (a GPU node) can
sign. The certificate cannot sign another and is refused as a node.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := pki.ValidateOperatorName(name); err != nil {
				return fmt.Errorf("--name: %w", err)
			}
			if ttl < time.Minute || ttl > pki.MaxOperatorTTL {
				return fmt.Errorf("--ttl %v: want between 1m and %v", ttl, pki.MaxOperatorTTL)
			}
			if out == "" {
				out = "newbieha-operator-" + name
			}
			if remote != nil {
				return fmt.Errorf("operator cert runs as root on a GPU node's local socket, not with --server")
			}
			key, err := pki.NewKey()
			if err != nil {
				return err
			}
			pub, err := pki.EncodePublicKey(&key.PublicKey)
			if err != nil {
				return err
			}
			resp, err := cluster.NewLocalClient(dataDir).OperatorCert(cmd.Context(), cluster.OperatorCertRequest{Name: name, TTL: cluster.Duration(ttl), PublicKey: string(pub)})
			if err != nil {
				return err
			}
			if err := writeOperatorBundle(out, resp, key); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (operator %s, serial %s, expires %s)\n", out, name, resp.Serial, resp.Expires.UTC().Format(time.RFC3339))
			for _, m := range resp.Members {
				fmt.Fprintf(cmd.OutOrStdout(), "  newbieha --server %s --cert-dir %s status\n", m, out)
				break
			}
			return nil
		},
	}
	dataDirFlag(cert, &dataDir)
	cert.Flags().StringVar(&name, "name", "", "the operator's name, recorded in the history with every action (required)")
	cert.Flags().DurationVar(&ttl, "ttl", pki.DefaultOperatorTTL, "how long the certificate is valid (at most 168h)")
	cert.Flags().StringVar(&out, "out", "", "directory to write ca.crt, operator.crt and operator.key to (default ./newbieha-operator-NAME)")
	_ = cert.MarkFlagRequired("name")
	op.AddCommand(cert)
	return op
}

// writeOperatorBundle writes what --cert-dir reads, refusing to overwrite
// a directory that holds a bundle already.
func writeOperatorBundle(dir string, resp cluster.OperatorCertResponse, key crypto.Signer) error {
	if _, err := os.Stat(filepath.Join(dir, pki.OperatorKeyFile)); err == nil {
		return fmt.Errorf("--out %s holds an operator key already; remove it or choose another directory", dir)
	}
	for _, p := range []string{resp.Cert, resp.CACert} {
		if _, err := pki.ParseCert([]byte(p)); err != nil {
			return fmt.Errorf("agent answered a bad certificate: %w", err)
		}
	}
	kb, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--out %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("--out %s: %w", dir, err)
	}
	for name, data := range map[string][]byte{
		pki.CACertFile:       []byte(resp.CACert),
		pki.OperatorCertFile: []byte(resp.Cert),
		pki.OperatorKeyFile:  kb,
	} {
		if err := pki.WriteFileAtomic(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
