package drill

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// figureRow is one row of the figures table.
type figureRow struct {
	name string
	get  func(Figures) string
}

var figureRows = []figureRow{
	{"failover ms (first fault to new holder)", func(f Figures) string {
		if f.FailoverMs == nil {
			return "-"
		}
		return fmtMs(*f.FailoverMs)
	}},
	{"longest outage ms", func(f Figures) string { return fmtMs(f.LongestOutageMs) }},
	{"outage ms (first to last failed request)", func(f Figures) string { return fmtMs(f.OutageMs) }},
	{"failed requests", func(f Figures) string { return strconv.Itoa(f.FailedRequests) }},
	{"requests", func(f Figures) string { return strconv.Itoa(f.Requests) }},
	{"ARP rounds with two MACs", func(f Figures) string { return strconv.Itoa(f.ARPDoubleRounds) }},
	{"ARP rounds", func(f Figures) string { return strconv.Itoa(f.ARPRounds) }},
	{"holder changes", func(f Figures) string { return strconv.Itoa(f.HolderChanges) }},
	{"duration ms", func(f Figures) string { return fmtMs(f.DurationMs) }},
}

func fmtMs(v float64) string {
	if v >= 10 || v == 0 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// previousMeasured finds the previous run's measurement of the check with
// the same key.
func previousMeasured(prev []Check, key string) string {
	for _, c := range prev {
		if c.Key == key {
			return c.Measured
		}
	}
	return ""
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func (r *Report) headline() string {
	s := fmt.Sprintf("drill %s: %s", r.Runbook, strings.ToUpper(string(r.Verdict)))
	if r.AbortReason != "" {
		s += " (" + r.AbortReason + ")"
	}
	return s
}

func (r *Report) when() string {
	s := r.Start.UTC().Format(time.RFC3339)
	if !r.End.IsZero() {
		s += fmt.Sprintf(", %s", fmtDur(r.End.Sub(r.Start)))
	}
	if r.Operator != "" {
		s += ", by " + r.Operator
	}
	return s
}

// Text renders the report as aligned plain text, what `drill run` prints
// at the end and `drill report ID` shows: verdict, timeline, figures,
// expectations and failed steps. With prev (the previous run of the same
// runbook, or nil) each figure and measurement has the previous one
// beside it.
func (r *Report) Text(prev *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", r.headline())
	fmt.Fprintf(&b, "started %s; active %s, standby %s, witness %s\n", r.when(), dash(r.Active), dash(r.Standby), dash(r.Witness))
	if prev != nil {
		fmt.Fprintf(&b, "previous run %s: %s\n", prev.Start.UTC().Format(time.RFC3339), prev.Verdict)
	}

	b.WriteString("\ntimeline\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, t := range r.Timeline {
		fmt.Fprintf(tw, "  +%s\t%s\n", fmtOffset(t.OffsetMs), t.What)
	}
	tw.Flush()

	b.WriteString("\nfigures\n")
	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	if prev != nil {
		fmt.Fprintf(tw, "  \tthis run\tprevious\n")
	}
	for _, row := range figureRows {
		if prev != nil {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", row.name, row.get(r.Figures), row.get(prev.Figures))
		} else {
			fmt.Fprintf(tw, "  %s\t%s\n", row.name, row.get(r.Figures))
		}
	}
	tw.Flush()

	b.WriteString("\nexpectations\n")
	r.checksText(&b, r.Expectations, prevChecks(prev, true), prev != nil, false)
	b.WriteString("\nsteps\n")
	r.checksText(&b, r.Steps, prevChecks(prev, false), false, true)
	return b.String()
}

func prevChecks(prev *Report, expectations bool) []Check {
	if prev == nil {
		return nil
	}
	if expectations {
		return prev.Expectations
	}
	return prev.Steps
}

func (r *Report) checksText(b *strings.Builder, checks, prev []Check, withPrev, steps bool) {
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
	for _, c := range checks {
		status := passFail(c.Passed)
		if steps && !c.Passed && strings.HasPrefix(c.Measured, "not run") {
			status = "----"
		}
		m := c.Measured
		if c.Miss != "" {
			m += ", missed " + c.Miss
		}
		label := c.What
		if steps {
			label = c.Key + " " + c.What
		}
		if withPrev {
			p := previousMeasured(prev, c.Key)
			if p == "" {
				p = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\tprevious %s\n", status, label, m, p)
		} else {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", status, label, m)
		}
	}
	tw.Flush()
}

func fmtOffset(ms float64) string {
	return strconv.FormatFloat(ms/1000, 'f', 3, 64) + "s"
}

// Markdown renders the report as Markdown (tables), for a ticket or a
// release note; prev as for Text.
func (r *Report) Markdown(prev *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n", mdEscape(r.headline()))
	fmt.Fprintf(&b, "Started %s; active %s, standby %s, witness %s.", mdEscape(r.when()), mdEscape(dash(r.Active)), mdEscape(dash(r.Standby)), mdEscape(dash(r.Witness)))
	if prev != nil {
		fmt.Fprintf(&b, " Previous run %s: %s.", prev.Start.UTC().Format(time.RFC3339), prev.Verdict)
	}
	b.WriteString("\n\n### Expectations\n\n")
	if prev != nil {
		b.WriteString("| | expectation | measured | missed by | previous |\n|---|---|---|---|---|\n")
	} else {
		b.WriteString("| | expectation | measured | missed by |\n|---|---|---|---|\n")
	}
	for _, c := range r.Expectations {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |", passFail(c.Passed), mdEscape(c.What), mdEscape(c.Measured), mdEscape(strings.TrimPrefix(c.Miss, "by ")))
		if prev != nil {
			fmt.Fprintf(&b, " %s |", mdEscape(dash(previousMeasured(prev.Expectations, c.Key))))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n### Figures\n\n")
	if prev != nil {
		b.WriteString("| figure | this run | previous |\n|---|---|---|\n")
	} else {
		b.WriteString("| figure | this run |\n|---|---|\n")
	}
	for _, row := range figureRows {
		fmt.Fprintf(&b, "| %s | %s |", row.name, row.get(r.Figures))
		if prev != nil {
			fmt.Fprintf(&b, " %s |", row.get(prev.Figures))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n### Steps\n\n| | step | outcome |\n|---|---|---|\n")
	for _, c := range r.Steps {
		fmt.Fprintf(&b, "| %s | %s %s | %s |\n", passFail(c.Passed), c.Key, mdEscape(c.What), mdEscape(c.Measured))
	}
	b.WriteString("\n### Timeline\n\n| at | what |\n|---|---|\n")
	for _, t := range r.Timeline {
		fmt.Fprintf(&b, "| +%s | %s |\n", fmtOffset(t.OffsetMs), mdEscape(t.What))
	}
	return b.String()
}

// mdEscape keeps a value inside one table cell.
func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "\\", "\\\\")
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "\n", " ")
	return s
}

// PreviousRun is the part of the previous run's report that JSON sets
// beside this one's.
type PreviousRun struct {
	Start   time.Time `json:"start"`
	Verdict Verdict   `json:"verdict"`
	Figures Figures   `json:"figures"`
	// Measured maps each check's key to what it measured.
	Measured map[string]string `json:"measured"`
}

// Summarize returns the figures and measurements another report shows
// beside its own.
func (r *Report) Summarize() *PreviousRun {
	p := &PreviousRun{Start: r.Start, Verdict: r.Verdict, Figures: r.Figures, Measured: map[string]string{}}
	for _, c := range append(append([]Check(nil), r.Expectations...), r.Steps...) {
		p.Measured[c.Key] = c.Measured
	}
	return p
}

// JSON renders the report as indented JSON, with "previous" set from prev
// when it is not nil. It is the full form kept in the data dir.
func (r *Report) JSON(prev *Report) ([]byte, error) {
	out := struct {
		*Report
		Previous *PreviousRun `json:"previous,omitempty"`
	}{Report: r}
	if prev != nil {
		out.Previous = prev.Summarize()
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	return append(b, '\n'), nil
}

// ReadReport decodes a report written by JSON (its "previous" is ignored),
// for `drill report ID` and to set a stored run beside a new one.
func ReadReport(data []byte) (*Report, error) {
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode report: %w", err)
	}
	return &r, nil
}
