package drill

import (
	"fmt"
	"strings"
	"time"
)

// The pure decisions a runner takes while a drill runs: whether a probe
// failed, whether a wait's or an expect's condition holds, whether to
// abort. The runner supplies the readings; these say what they mean, so
// that the run and the report judge alike.

// ProbeFailed reports whether a probe result counts as a failed request:
// no answer, or a status other than steady_state.probe.expect_status.
func (p *Plan) ProbeFailed(pr ProbeResult) bool {
	return pr.Err != "" || pr.Status != p.Runbook.SteadyState.Probe.ExpectStatus
}

// Holds reports whether the condition holds in v, with steady saying
// whether the last probe passed; when it does not, why says which part
// failed ("holder is nobody, want node2").
func (c *ResolvedCondition) Holds(v ClusterView, steady bool) (ok bool, why string) {
	var miss []string
	if c.Holder != "" && v.Holder != c.Holder {
		miss = append(miss, fmt.Sprintf("holder is %s, want %s", nobody(v.Holder), c.Holder))
	}
	if c.Healthy != "" {
		m, found := v.Member(c.Healthy)
		switch {
		case !found:
			miss = append(miss, c.Healthy+" is not a member")
		case !m.Reachable:
			miss = append(miss, c.Healthy+" is unreachable")
		case !m.Healthy:
			miss = append(miss, fmt.Sprintf("%s is unhealthy%s", c.Healthy, paren(m.Why)))
		}
	}
	if c.SteadyState != nil && *c.SteadyState != steady {
		if steady {
			miss = append(miss, "steady state passes, want it failing")
		} else {
			miss = append(miss, "steady state fails")
		}
	}
	if len(miss) > 0 {
		return false, strings.Join(miss, "; ")
	}
	return true, ""
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// AbortReason says why the run must stop now, or "" when it may go on. v
// is the cluster as read now; lostFor is how long the steady state has
// been failing without a passing probe (0 while it passes). The node
// checked for standby_unhealthy is the plan's Standby, the node that was
// standby at the start, even after it has taken over.
func (p *Plan) AbortReason(v ClusterView, lostFor time.Duration) string {
	ab := p.Runbook.Abort
	if ab.SteadyStateLostFor > 0 && lostFor > ab.SteadyStateLostFor {
		return fmt.Sprintf("steady state lost for %s (abort after %s)", fmtDur(lostFor), ab.SteadyStateLostFor)
	}
	if ab.StandbyUnhealthy && p.Standby != "" {
		m, found := v.Member(p.Standby)
		switch {
		case !found:
			return fmt.Sprintf("standby %s is no longer a member", p.Standby)
		case !m.Reachable:
			return fmt.Sprintf("standby %s unreachable", p.Standby)
		case !m.Healthy:
			return fmt.Sprintf("standby %s unhealthy%s", p.Standby, paren(m.Why))
		}
	}
	if ab.QuorumLost {
		voters, up := 0, 0
		for _, m := range v.Members {
			if m.Voter {
				voters++
				if m.Reachable {
					up++
				}
			}
		}
		switch {
		case v.Leader == "":
			return "quorum lost: no Raft leader"
		case up <= voters/2:
			return fmt.Sprintf("quorum lost: %d of %d voters reachable", up, voters)
		}
	}
	return ""
}

// LostFor is how long the steady state has been failing at now: from the
// start of the first of the failed probes at the end of probes (sorted by
// time) to now; 0 when the last probe passed or there is none.
func (p *Plan) LostFor(probes []ProbeResult, now time.Time) time.Duration {
	i := len(probes)
	for i > 0 && p.ProbeFailed(probes[i-1]) {
		i--
	}
	if i == len(probes) {
		return 0
	}
	return max(now.Sub(probes[i].At), 0)
}

// Summary is the report in one line of at most max bytes, for the
// replicated history (fsm.MaxReasonLen bounds an event's detail):
// "holder-crashes failed: 5 of 6 expectations passed (failed: outage-max
// 10ms: 120ms, missed by 110ms); outage 120ms, 6 failed requests, 0 ARP
// double rounds".
func (r *Report) Summary(max int) string {
	passed := 0
	var failed []string
	for _, c := range r.Expectations {
		if c.Passed {
			passed++
			continue
		}
		s := strings.TrimPrefix(c.Key, c.Key[:strings.Index(c.Key, " ")+1]) + ": " + c.Measured
		if c.Miss != "" {
			s += ", missed " + c.Miss
		}
		failed = append(failed, s)
	}
	for _, c := range r.Steps {
		if !c.Passed && !strings.HasPrefix(c.Measured, "not run") {
			failed = append(failed, c.Key+": "+c.Measured)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Runbook, r.Verdict)
	if r.AbortReason != "" {
		fmt.Fprintf(&b, " (%s)", r.AbortReason)
	}
	fmt.Fprintf(&b, ": %d of %d expectations passed", passed, len(r.Expectations))
	if len(failed) > 0 {
		fmt.Fprintf(&b, " (failed: %s)", strings.Join(failed, "; "))
	}
	fmt.Fprintf(&b, "; longest outage %sms, %d failed requests, %d ARP double rounds", fmtMs(r.Figures.LongestOutageMs), r.Figures.FailedRequests, r.Figures.ARPDoubleRounds)
	s := strings.ReplaceAll(b.String(), "\n", " ")
	if max > 0 && len(s) > max {
		cut := max - len("…")
		if cut < 0 {
			cut = 0
		}
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
		if len(s) > max {
			s = s[:0]
		}
	}
	return s
}

// utf8Start reports whether b starts a UTF-8 sequence.
func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
