package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/newbieha/newbieha/cluster/pki"
)

func newCertCmd() *cobra.Command {
	c := &cobra.Command{Use: "cert", Short: "Node certificates: expiry and renewal"}
	var dataDir, output string
	status := &cobra.Command{
		Use:   "status",
		Short: "Show each member's node certificates and when they expire",
		Long: `Show the node certificates each member record honours (the newest
first, and the one before it after a renewal) and when they expire. Agents
renew their own certificate through a GPU member 10 days before it expires
(certificates live 30 days); a member whose newest certificate has less
than that left is not renewing: read its log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			st, err := agentClient(dataDir).Status(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				type row struct {
					Name  string `json:"name"`
					Certs any    `json:"certs"`
				}
				var rows []row
				for _, m := range st.Members {
					rows = append(rows, row{m.Name, m.Certs})
				}
				return printJSON(cmd.OutOrStdout(), rows)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MEMBER\tSERIAL\tEXPIRES\tLEFT\tNOTE")
			now := time.Now()
			for _, m := range st.Members {
				if len(m.Certs) == 0 {
					fmt.Fprintf(tw, "%s\t-\t-\t-\trecord from before serials were kept: any certificate for it is honoured\n", m.Name)
					continue
				}
				for i, c := range m.Certs {
					note := "current"
					if i > 0 {
						note = "previous (still honoured)"
					}
					left := c.Expires.Sub(now)
					if i == 0 && left < pki.NodeValidity/3 {
						note += "; due for renewal"
					}
					if left < 0 {
						note = "expired"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, c.Serial, c.Expires.UTC().Format(time.RFC3339), left.Round(time.Hour), note)
				}
			}
			return tw.Flush()
		},
	}
	dataDirFlag(status, &dataDir)
	outputFlag(status, &output)
	c.AddCommand(status)
	return c
}
