package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/newbieha/newbieha/cluster"
)

// tokenEnv is the environment variable `join` reads the token from when
// neither --token nor --token-file is given.
const tokenEnv = "NEWBIEHA_TOKEN"

// maxTokenFile bounds what --token-file reads; a token is about 120 bytes.
const maxTokenFile = 4 << 10

// clientFor returns the client a command talks to for a data dir.
type clientFor func(dataDir string) *cluster.Client

// joinTokenFlags adds --token and --token-file to join.
func joinTokenFlags(cmd *cobra.Command, token, file *string) {
	cmd.Flags().StringVar(token, "token", "", "the join `TOKEN` that newbieha init or newbieha token create printed (visible to other users in the process list: prefer --token-file or $"+tokenEnv+")")
	cmd.Flags().StringVar(file, "token-file", "", "read the join token from the file at `PATH` (mode 0600 or stricter; white space trimmed)")
}

// joinToken returns the join token from exactly one of --token,
// --token-file and the environment variable NEWBIEHA_TOKEN, and an error
// naming them when none or more than one is given. lookupEnv is
// os.LookupEnv outside tests.
func joinToken(cmd *cobra.Command, token, file string, lookupEnv func(string) (string, bool)) (string, error) {
	var sources []string
	if cmd.Flags().Changed("token") {
		sources = append(sources, "--token")
	}
	if cmd.Flags().Changed("token-file") {
		sources = append(sources, "--token-file")
	}
	env, envSet := lookupEnv(tokenEnv)
	if envSet {
		sources = append(sources, "$"+tokenEnv)
	}
	switch len(sources) {
	case 0:
		return "", fmt.Errorf("no join token: give --token-file PATH, set $%s, or give --token TOKEN", tokenEnv)
	case 1:
	default:
		return "", fmt.Errorf("join token given %d ways (%s): give exactly one of --token, --token-file and $%s", len(sources), strings.Join(sources, ", "), tokenEnv)
	}
	var tok, from string
	switch sources[0] {
	case "--token":
		tok, from = token, "--token"
	case "--token-file":
		t, err := readTokenFile(file)
		if err != nil {
			return "", err
		}
		tok, from = t, "--token-file "+file
	default:
		tok, from = strings.TrimSpace(env), "$"+tokenEnv
	}
	if tok == "" {
		return "", fmt.Errorf("%s: the join token is empty", from)
	}
	return tok, nil
}

// readTokenFile reads a join token from path, trimmed of white space. Like
// the agent with its keys, it refuses a file that group or other users may
// read or write, naming the chmod that fixes it.
func readTokenFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("--token-file: empty path")
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("--token-file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("--token-file %s has mode %04o, open to group or other users; fix with: chmod %04o %s", path, perm, perm&0o700, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("--token-file %s: %w", path, err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("--token-file %s: larger than %d bytes, not a join token", path, maxTokenFile)
	}
	return strings.TrimSpace(string(b)), nil
}

// newTokenListCmd is `token list`.
func newTokenListCmd(client clientFor) *cobra.Command {
	var dataDir, output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the join tokens (id, role, created, expires, uses, state; never the secret)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			ts, err := client(dataDir).ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				if ts == nil {
					ts = []cluster.TokenInfo{}
				}
				return printJSON(cmd.OutOrStdout(), ts)
			}
			return printTokens(cmd.OutOrStdout(), ts)
		},
	}
	dataDirFlag(cmd, &dataDir)
	outputFlag(cmd, &output)
	return cmd
}

// printTokens writes the token table.
func printTokens(w io.Writer, ts []cluster.TokenInfo) error {
	if len(ts) == 0 {
		_, err := fmt.Fprintln(w, "no join tokens")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tCREATED\tEXPIRES\tUSES\tSTATE")
	for _, t := range ts {
		role := string(t.Role)
		if role == "" {
			role = "any" // a token from before roles
		}
		uses := strconv.Itoa(t.UsesSpent) + "/" + strconv.Itoa(t.UsesAllowed)
		if t.UsesAllowed == 0 {
			uses = strconv.Itoa(t.UsesSpent) + "/-" // a token from before use counts
		}
		state := t.State
		if t.Revoked {
			state += " by " + t.RevokedBy + " at " + t.RevokedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, role, t.Created.UTC().Format(time.RFC3339), t.Expires.UTC().Format(time.RFC3339), uses, state)
	}
	return tw.Flush()
}

// newTokenRevokeCmd is `token revoke ID`.
func newTokenRevokeCmd(client clientFor) *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token: it admits no node from then on (ID as `token list` shows it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			// A whole token names its id in its second field.
			if parts := strings.Split(id, "."); len(parts) == 4 && parts[0] == "nbha1" {
				id = parts[1]
			}
			if err := client(dataDir).RevokeToken(cmd.Context(), id); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked token %s\n", id)
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	return cmd
}
