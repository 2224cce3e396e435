package web

import (
	"fmt"
	"html"
	"math"
	"regexp"
	"strings"

	"github.com/newbieha/newbieha/drill"
)

// The chart's geometry, in SVG user units (it scales to the page).
const (
	svgW, svgH   = 720.0, 150.0
	svgL, svgR   = 10.0, 10.0
	axisY        = 126.0
	faultY       = 20.0
	outageY      = 52.0
	barH         = 18.0
	maxChartRows = 4 // fault rows above the outage band
)

var (
	faultInRe   = regexp.MustCompile(`^steps\[(\d+)\] fault in place`)
	faultUndoRe = regexp.MustCompile(`^steps\[(\d+)\] (fault undone|undo failed)`)
	holderRe    = regexp.MustCompile(`^holder (\S+) → (\S+)`)
)

// Timeline renders a drill report as an SVG chart: each fault as a bar
// from the moment it was in place to its undo, the client outage (first
// to last failed request) as a red band, each holder change as a line,
// and a time axis in seconds from the start. Every text in it comes from
// the report and is escaped.
func Timeline(r *drill.Report) string {
	dur := r.Figures.DurationMs
	for _, e := range r.Timeline {
		dur = math.Max(dur, e.OffsetMs)
	}
	if dur <= 0 {
		dur = 1
	}
	x := func(ms float64) float64 { return svgL + (svgW-svgL-svgR)*math.Max(0, math.Min(ms, dur))/dur }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">`,
		svgW, svgH, html.EscapeString(fmt.Sprintf("timeline of drill %s: outage %.0f ms, %d failed requests", r.Runbook, r.Figures.OutageMs, r.Figures.FailedRequests)))
	fmt.Fprintf(&b, `<title>%s</title>`, html.EscapeString(r.Runbook+" "+string(r.Verdict)))

	// Faults.
	start := map[string]float64{}
	row := 0
	for _, e := range r.Timeline {
		if m := faultInRe.FindStringSubmatch(e.What); m != nil {
			start[m[1]] = e.OffsetMs
			continue
		}
		if m := faultUndoRe.FindStringSubmatch(e.What); m != nil {
			s, ok := start[m[1]]
			if !ok {
				continue
			}
			delete(start, m[1])
			y := faultY + float64(row%2)*(barH/2+2)
			fmt.Fprintf(&b, `<rect class="fault" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s</title></rect>`,
				x(s), y, math.Max(1, x(e.OffsetMs)-x(s)), barH/2, html.EscapeString(fmt.Sprintf("steps[%s] %.0f–%.0f ms", m[1], s, e.OffsetMs)))
			fmt.Fprintf(&b, `<text class="label" x="%.1f" y="%.1f">steps[%s]</text>`, x(s)+2, y-2, html.EscapeString(m[1]))
			row++
		}
	}
	for step, s := range start { // never undone within the report
		fmt.Fprintf(&b, `<rect class="fault open" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>steps[%s] from %.0f ms, not undone in the report</title></rect>`,
			x(s), faultY, math.Max(1, x(dur)-x(s)), barH/2, html.EscapeString(step), s)
	}

	// The client's outage.
	var first, last float64 = -1, -1
	for _, e := range r.Timeline {
		switch {
		case strings.HasPrefix(e.What, "first failed request"):
			first = e.OffsetMs
		case strings.HasPrefix(e.What, "last failed request"):
			last = e.OffsetMs
		}
	}
	if first >= 0 {
		if last < first {
			last = first
		}
		fmt.Fprintf(&b, `<rect class="outage" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s</title></rect>`,
			x(first), outageY, math.Max(2, x(last)-x(first)), barH, html.EscapeString(fmt.Sprintf("client outage %.0f ms, %d failed requests", r.Figures.OutageMs, r.Figures.FailedRequests)))
		fmt.Fprintf(&b, `<text class="label outage-label" x="%.1f" y="%.1f">outage %.0f ms · %d failed</text>`,
			x(first), outageY+barH+12, r.Figures.OutageMs, r.Figures.FailedRequests)
	} else {
		fmt.Fprintf(&b, `<text class="label ok-label" x="%.1f" y="%.1f">no failed request (%d requests)</text>`, svgL, outageY+barH/2+4, r.Figures.Requests)
	}

	// Holder changes.
	for _, e := range r.Timeline {
		if m := holderRe.FindStringSubmatch(e.What); m != nil {
			fmt.Fprintf(&b, `<line class="holder" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f"><title>%s</title></line>`,
				x(e.OffsetMs), x(e.OffsetMs), faultY-6, axisY, html.EscapeString(fmt.Sprintf("%.0f ms: holder %s → %s", e.OffsetMs, m[1], m[2])))
			fmt.Fprintf(&b, `<text class="label holder-label" x="%.1f" y="%.1f">→ %s</text>`, x(e.OffsetMs)+2, axisY-4, html.EscapeString(m[2]))
		}
	}

	// The axis, in seconds.
	fmt.Fprintf(&b, `<line class="axis" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f"/>`, svgL, svgW-svgR, axisY, axisY)
	step := niceStep(dur / 6)
	for t := 0.0; t <= dur+1e-9; t += step {
		fmt.Fprintf(&b, `<line class="tick" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f"/><text class="label tick-label" x="%.1f" y="%.1f">%s</text>`,
			x(t), x(t), axisY, axisY+4, x(t), axisY+16, seconds(t))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// niceStep rounds ms up to 1, 2 or 5 times a power of ten.
func niceStep(ms float64) float64 {
	if ms <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(ms)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= ms {
			return m * p
		}
	}
	return 10 * p
}

func seconds(ms float64) string {
	s := fmt.Sprintf("%.3f", ms/1000)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "s"
}
