package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/health"
)

// memberDetail is the shape of a GPU member's Health detail (services.Detail).
type memberDetail struct {
	Report *health.Report `json:"report"`
}

// printDetails prints each member's checks and one GPU line per node.
func printDetails(w io.Writer, st cluster.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := false
	for _, m := range st.Members {
		if m.Health == nil {
			continue
		}
		b, err := json.Marshal(m.Health)
		if err != nil {
			continue
		}
		var d memberDetail
		if json.Unmarshal(b, &d) != nil || d.Report == nil {
			continue
		}
		if !header {
			fmt.Fprintln(tw, "\nNODE\tCHECKS\tGPU")
			header = true
		}
		var checks []string
		for _, c := range d.Report.Checks {
			s := fmt.Sprintf("%s:%s %s", c.Kind, c.Name, c.Status)
			if c.Injected {
				s += " (drill)"
			}
			checks = append(checks, s)
		}
		line := dash(strings.Join(checks, ", "))
		if !m.Alive {
			line = "(not alive; last report) " + line
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Name, line, gpuLine(d.Report))
	}
	return tw.Flush()
}

func gpuLine(r *health.Report) string {
	if r.GPUError != "" {
		return "error: " + r.GPUError
	}
	if len(r.GPU) == 0 {
		return "-"
	}
	return health.SummarizeGPU(r.GPU)
}
