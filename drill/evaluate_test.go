package drill

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

const crashRunbook = `version: 1
name: crash
description: crash the holder
steady_state:
  probe: {url: "http://${vip}:8080/health"}
steps:
  - {fault: agent-crash, target: active, duration: 5s}
  - wait: {until: {holder: standby}, timeout: 5s}
expectations:
  - holder-becomes: standby
    within: 1s
  - outage-max: 1s
  - failed-requests-max: 40
  - never-two-holders: true
  - history-reason: '^holder-lost:${active}$'
  - steady-state-within: 2s
time_limit: 1m
`

var t0 = time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

const msec = time.Millisecond

// timeline builds the observations of a holder crash as the benchmarks saw
// it: the fault at +1s, the fence closing at +1.45s, node2 holding at
// +1.569s; requests every 20 ms from +0 to +10s, those sent in
// [failFrom, failTo) refused; one MAC in every ARP round; the fault undone
// at +6s.
func timeline(failFrom, failTo time.Duration) *Observations {
	o := &Observations{Start: t0, End: at(10 * time.Second), Operator: "alice"}
	o.Events = []Event{
		{At: at(time.Second), Kind: EventStepStart, Step: 0},
		{At: at(time.Second + msec), Kind: EventStepEnd, Step: 0, OK: true},
		{At: at(time.Second + msec), Kind: EventStepStart, Step: 1},
		{At: at(1450 * msec), Kind: EventHolder, Node: ""},
		{At: at(1560 * msec), Kind: EventHistory, Node: "node2", Reason: "holder-lost:node1"},
		{At: at(1569 * msec), Kind: EventHolder, Node: "node2"},
		{At: at(1570 * msec), Kind: EventStepEnd, Step: 1, OK: true, Detail: "holder is node2"},
		{At: at(6 * time.Second), Kind: EventFaultUndone, Step: 0, OK: true},
	}
	for d := time.Duration(0); d < 10*time.Second; d += 20 * msec {
		pr := ProbeResult{At: at(d), Latency: 2 * msec, Status: 200, Node: "node1"}
		if d >= 1580*msec {
			pr.Node = "node2"
		}
		if d >= failFrom && d < failTo {
			pr = ProbeResult{At: at(d), Latency: msec, Err: "connection refused"}
		}
		o.Probes = append(o.Probes, pr)
	}
	for d := time.Duration(0); d < 10*time.Second; d += 50 * msec {
		mac := "02:00:00:00:00:01"
		if d >= 1600*msec {
			mac = "02:00:00:00:00:02"
		}
		o.ARP = append(o.ARP, ARPRound{At: at(d), MACs: []string{mac}})
	}
	return o
}

func crashPlan(t *testing.T, src string) *Plan {
	t.Helper()
	return mustPlan(t, mustParse(t, src), sampleView())
}

func find(t *testing.T, checks []Check, prefix string) Check {
	t.Helper()
	for _, c := range checks {
		if strings.HasPrefix(c.Key, prefix) {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", prefix, checks)
	return Check{}
}

func TestEvaluate_CrashPasses(t *testing.T) {
	rep := Evaluate(crashPlan(t, crashRunbook), timeline(1460*msec, 1580*msec))
	if rep.Verdict != VerdictPassed {
		t.Fatalf("verdict %s:\n%s", rep.Verdict, rep.Text(nil))
	}
	f := rep.Figures
	if f.Requests != 500 || f.FailedRequests != 6 || f.LongestOutageMs != 120 || f.OutageMs != 101 || f.ARPRounds != 200 || f.ARPDoubleRounds != 0 || f.HolderChanges != 2 {
		t.Errorf("figures %+v", f)
	}
	if f.FailoverMs == nil || *f.FailoverMs != 569 {
		t.Errorf("failover %v, want 569", f.FailoverMs)
	}
	for key, want := range map[string]string{
		"expectations[0]": "569ms",
		"expectations[1]": "120ms",
		"expectations[2]": "6 requests",
		"expectations[3]": "0 of 200 ARP rounds with two MACs",
		"expectations[4]": "holder-lost:node1",
		"expectations[5]": "0s",
	} {
		if c := find(t, rep.Expectations, key); !c.Passed || c.Measured != want || c.Miss != "" {
			t.Errorf("%s: %+v, want passed with %q", key, c, want)
		}
	}
	if c := find(t, rep.Steps, "steps[0]"); !c.Passed || c.Measured != "undone after 4.999s" {
		t.Errorf("steps[0]: %+v", c)
	}
	text := rep.Text(nil)
	for _, want := range []string{
		"drill crash: PASSED\n",
		"started 2026-12-01T22:00:00Z, 10s, by alice; active node1, standby node2, witness witness\n",
		"+1.000s  steps[0] agent-crash on node1 (active) for 5s\n",
		"+1.450s  holder node1 → nobody\n",
		"+1.460s  first failed request (connection refused)\n",
		"+1.560s  last failed request (connection refused)\n",
		"+1.569s  holder nobody → node2\n",
		"+1.580s  first answer from node2\n",
		"+6.000s  steps[0] fault undone\n",
		"PASS  holder becomes node2 (standby) within 1s of the first fault",
	} {
		if !strings.Contains(squash(text), squash(want)) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
}

// TestEvaluate_OutageOf10msFailsOnACrash is the acceptance case: an
// expectation a crash cannot meet fails, saying by how much.
func TestEvaluate_OutageOf10msFailsOnACrash(t *testing.T) {
	src := strings.Replace(crashRunbook, "outage-max: 1s", "outage-max: 10ms", 1)
	rep := Evaluate(crashPlan(t, src), timeline(1460*msec, 1580*msec))
	if rep.Verdict != VerdictFailed || rep.Passed() {
		t.Fatalf("verdict %s", rep.Verdict)
	}
	c := find(t, rep.Expectations, "expectations[1]")
	if c.Passed || c.Measured != "120ms" || c.Miss != "by 110ms" || c.Value == nil || *c.Value != 120 {
		t.Fatalf("outage-max 10ms: %+v", c)
	}
	for i, c := range rep.Expectations {
		if i != 1 && !c.Passed {
			t.Errorf("%s failed too: %+v", c.Key, c)
		}
	}
	if text := rep.Text(nil); !strings.Contains(squash(text), "FAIL longest outage ≤ 10ms 120ms, missed by 110ms") {
		t.Errorf("text:\n%s", text)
	}
	if md := rep.Markdown(nil); !strings.Contains(md, "| FAIL | longest outage ≤ 10ms | 120ms | 110ms |") {
		t.Errorf("markdown:\n%s", md)
	}
}

func TestEvaluate_ExpectationsFail(t *testing.T) {
	cases := []struct {
		name     string
		src      func(string) string
		obs      func(o *Observations)
		key      string
		measured string
		miss     string
	}{
		{"holder too late", func(s string) string { return strings.Replace(s, "within: 1s", "within: 500ms", 1) }, nil,
			"expectations[0]", "569ms", "by 69ms"},
		{"holder never moves", nil, func(o *Observations) { o.Events = dropKind(o.Events, EventHolder) },
			"expectations[0]", "never", "not within the 9s the run lasted after the fault"},
		{"too many failed requests", func(s string) string {
			return strings.Replace(s, "failed-requests-max: 40", "failed-requests-max: 2", 1)
		}, nil,
			"expectations[2]", "6 requests", "by 4 requests"},
		{"two MACs", nil, func(o *Observations) { o.ARP[31].MACs = []string{"02:00:00:00:00:01", "02:00:00:00:00:02"} },
			"expectations[3]", "1 of 200 ARP rounds with two MACs", "by 1 round"},
		{"no ARP rounds", nil, func(o *Observations) { o.ARP = nil }, "expectations[3]", "no ARP round observed", ""},
		{"history reason", nil, func(o *Observations) { o.Events[4].Reason = "health:node1:http:service" },
			"expectations[4]", "reasons health:node1:http:service", ""},
		{"no history", nil, func(o *Observations) { o.Events = dropKind(o.Events, EventHistory) },
			"expectations[4]", "no change of active node", ""},
		{"steady state late", nil, func(o *Observations) { failBetween(o, 6*time.Second, 9*time.Second) },
			"expectations[5]", "3s", "by 1s"},
		{"steady state never back", nil, func(o *Observations) { failBetween(o, 6*time.Second, 10*time.Second) },
			"expectations[5]", "never: the last request failed", ""},
		{"no probes", nil, func(o *Observations) { o.Probes = nil }, "expectations[1]", "no requests observed", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := crashRunbook
			if tc.src != nil {
				src = tc.src(src)
			}
			o := timeline(1460*msec, 1580*msec)
			if tc.obs != nil {
				tc.obs(o)
			}
			rep := Evaluate(crashPlan(t, src), o)
			if rep.Verdict != VerdictFailed {
				t.Errorf("verdict %s", rep.Verdict)
			}
			c := find(t, rep.Expectations, tc.key)
			if c.Passed || c.Measured != tc.measured || c.Miss != tc.miss {
				t.Errorf("got %+v, want failed, measured %q, miss %q", c, tc.measured, tc.miss)
			}
		})
	}
}

func TestEvaluate_SteadyStateBackInTime(t *testing.T) {
	o := timeline(1460*msec, 1580*msec)
	failBetween(o, 6*time.Second, 7500*msec)
	rep := Evaluate(crashPlan(t, crashRunbook), o)
	if c := find(t, rep.Expectations, "expectations[5]"); !c.Passed || c.Measured != "1.5s" {
		t.Errorf("%+v", c)
	}
}

func dropKind(evs []Event, k EventKind) []Event {
	var out []Event
	for _, e := range evs {
		if e.Kind != k {
			out = append(out, e)
		}
	}
	return out
}

func failBetween(o *Observations, from, to time.Duration) {
	for i, pr := range o.Probes {
		if d := pr.At.Sub(t0); d >= from && d < to {
			o.Probes[i] = ProbeResult{At: pr.At, Latency: 200 * msec, Err: "timeout"}
		}
	}
}

func TestEvaluate_HolderStays(t *testing.T) {
	src := strings.Replace(crashRunbook, "  - holder-becomes: standby\n    within: 1s\n", "  - holder-stays: active\n", 1)
	o := timeline(0, 0)
	o.Events = dropKind(dropKind(o.Events, EventHolder), EventHistory)
	rep := Evaluate(crashPlan(t, src), o)
	if c := find(t, rep.Expectations, "expectations[0]"); !c.Passed || c.Measured != "stayed" {
		t.Errorf("stays: %+v", c)
	}
	rep = Evaluate(crashPlan(t, src), timeline(1460*msec, 1580*msec))
	if c := find(t, rep.Expectations, "expectations[0]"); c.Passed || c.Measured != "moved to nobody at +1.45s" {
		t.Errorf("moved: %+v", c)
	}
}

func TestEvaluate_StepsFail(t *testing.T) {
	cases := []struct {
		name     string
		obs      func(o *Observations)
		key      string
		measured string
	}{
		{"wait timed out", func(o *Observations) {
			o.Events[6].OK, o.Events[6].Detail = false, "timed out after 5s: holder is nobody"
		},
			"steps[1]", "timed out after 5s: holder is nobody"},
		{"injection failed", func(o *Observations) { o.Events[1].OK, o.Events[1].Detail = false, "agent on node1 did not exit" },
			"steps[0]", "agent on node1 did not exit"},
		{"undo failed", func(o *Observations) { o.Events[7].OK, o.Events[7].Detail = false, "agent did not come back" },
			"steps[0]", "undo failed: agent did not come back"},
		{"undo missing", func(o *Observations) { o.Events = dropKind(o.Events, EventFaultUndone) }, "steps[0]", "no undo recorded"},
		{"step not run", func(o *Observations) { o.Events = o.Events[:2] }, "steps[1]", "not run"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := timeline(1460*msec, 1580*msec)
			tc.obs(o)
			rep := Evaluate(crashPlan(t, crashRunbook), o)
			if rep.Verdict != VerdictFailed {
				t.Errorf("verdict %s", rep.Verdict)
			}
			if c := find(t, rep.Steps, tc.key); c.Passed || c.Measured != tc.measured {
				t.Errorf("got %+v, want failed with %q", c, tc.measured)
			}
		})
	}
}

func TestEvaluate_Aborted(t *testing.T) {
	o := timeline(1460*msec, 1580*msec)
	o.Events = append(o.Events[:2], Event{At: at(1200 * msec), Kind: EventAbort, Detail: "standby node2 unhealthy"},
		Event{At: at(1201 * msec), Kind: EventFaultUndone, Step: 0, OK: true})
	o.End = at(1300 * msec)
	o.Aborted = "standby node2 unhealthy"
	rep := Evaluate(crashPlan(t, crashRunbook), o)
	if rep.Verdict != VerdictAborted || rep.AbortReason != "standby node2 unhealthy" {
		t.Fatalf("verdict %s (%s)", rep.Verdict, rep.AbortReason)
	}
	if c := find(t, rep.Steps, "steps[1]"); c.Passed || c.Measured != "not run (aborted)" {
		t.Errorf("steps[1]: %+v", c)
	}
	text := rep.Text(nil)
	for _, want := range []string{"drill crash: ABORTED (standby node2 unhealthy)\n", "+1.200s  abort: standby node2 unhealthy\n", "----  steps[1]"} {
		if !strings.Contains(squash(text), squash(want)) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
}

func TestEvaluate_Planned(t *testing.T) {
	src := `version: 1
name: planned
description: planned switchover
steady_state:
  probe: {url: "http://${vip}:8080/health"}
steps:
  - {fault: planned-failover, to: standby}
expectations:
  - holder-becomes: standby
    within: 200ms
  - failed-requests-max: 1
  - steady-state-within: 1s
  - history-reason: '^manual:'
time_limit: 1m
`
	o := &Observations{Start: t0, End: at(3 * time.Second),
		Events: []Event{
			{At: at(time.Second), Kind: EventStepStart, Step: 0},
			{At: at(1010 * msec), Kind: EventHistory, Node: "node2", Reason: "manual:drill planned"},
			{At: at(1025 * msec), Kind: EventHolder, Node: "node2"},
			{At: at(1030 * msec), Kind: EventStepEnd, Step: 0, OK: true},
		}}
	for d := time.Duration(0); d < 3*time.Second; d += 20 * msec {
		o.Probes = append(o.Probes, ProbeResult{At: at(d), Latency: msec, Status: 200})
	}
	rep := Evaluate(crashPlan(t, src), o)
	if rep.Verdict != VerdictPassed {
		t.Fatalf("%s", rep.Text(nil))
	}
	if c := find(t, rep.Expectations, "expectations[0]"); c.Measured != "25ms" {
		t.Errorf("%+v", c)
	}
	if c := find(t, rep.Steps, "steps[0]"); !c.Passed {
		t.Errorf("a planned failover without a duration needs no undo: %+v", c)
	}
}

func TestReport_BesideThePreviousRun(t *testing.T) {
	p := crashPlan(t, crashRunbook)
	prev := Evaluate(p, timeline(1460*msec, 1560*msec))
	cur := Evaluate(p, timeline(1460*msec, 1600*msec))
	text := cur.Text(prev)
	for _, want := range []string{
		"previous run 2026-12-01T22:00:00Z: passed\n",
		"this run  previous",
		"longest outage ms                         140       100",
		"failed requests                           7         5",
		"previous 100ms",
	} {
		if !strings.Contains(squash(text), squash(want)) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	md := cur.Markdown(prev)
	for _, want := range []string{"| figure | this run | previous |", "| longest outage ms | 140 | 100 |", "| PASS | longest outage ≤ 1s | 140ms |  | 100ms |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	b, err := cur.JSON(prev)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Runbook  string
		Verdict  Verdict
		Figures  Figures
		Previous *PreviousRun
		Timeline []TimelineEntry
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Runbook != "crash" || got.Verdict != VerdictPassed || got.Figures.LongestOutageMs != 140 || len(got.Timeline) == 0 {
		t.Errorf("json: %+v", got)
	}
	if got.Previous == nil || got.Previous.Figures.LongestOutageMs != 100 || got.Previous.Measured["expectations[1] outage-max 1s"] != "100ms" {
		t.Errorf("previous: %+v", got.Previous)
	}
	if b, _ := cur.JSON(nil); strings.Contains(string(b), `"previous"`) {
		t.Error("previous without a previous run")
	}
}

func TestEvaluate_UnsortedInputIsSorted(t *testing.T) {
	p := crashPlan(t, crashRunbook)
	o := timeline(1460*msec, 1580*msec)
	want := Evaluate(p, o)
	r := timeline(1460*msec, 1580*msec)
	for i, j := 0, len(r.Probes)-1; i < j; i, j = i+1, j-1 {
		r.Probes[i], r.Probes[j] = r.Probes[j], r.Probes[i]
	}
	// Move the last event first; events at the same instant keep their
	// order, as the runner records them.
	r.Events = append(r.Events[len(r.Events)-1:], r.Events[:len(r.Events)-1]...)
	got := Evaluate(p, r)
	if got.Text(nil) != want.Text(nil) {
		t.Errorf("order changed the report:\n%s\nwant\n%s", got.Text(nil), want.Text(nil))
	}
}

var spaces = regexp.MustCompile(` {2,}`)

// squash folds runs of spaces, so that tests do not depend on how wide
// tabwriter makes a column.
func squash(s string) string { return spaces.ReplaceAllString(s, " ") }

// TestEvaluate_FailoverAndBack checks a runbook that moves the role and
// moves it back: after names the fault a holder-becomes counts from, and
// outage-max judges each outage, not the time between them.
func TestEvaluate_FailoverAndBack(t *testing.T) {
	src := `version: 1
name: there-and-back
description: planned failover and back
steady_state:
  probe: {url: "http://${vip}:8080/health"}
steps:
  - {fault: planned-failover, to: standby}
  - wait: 10s
  - {fault: planned-failover, to: node1}
expectations:
  - holder-becomes: standby
    within: 100ms
  - holder-becomes: node1
    within: 100ms
    after: 2
  - outage-max: 100ms
time_limit: 1m
`
	v := sampleView()
	p := mustPlan(t, mustParse(t, src), v)
	o := &Observations{Start: t0, End: at(15 * time.Second),
		Events: []Event{
			{At: at(time.Second), Kind: EventStepStart, Step: 0},
			{At: at(1025 * msec), Kind: EventHolder, Node: "node2"},
			{At: at(1030 * msec), Kind: EventStepEnd, Step: 0, OK: true},
			{At: at(1030 * msec), Kind: EventStepStart, Step: 1},
			{At: at(11030 * msec), Kind: EventStepEnd, Step: 1, OK: true},
			{At: at(11030 * msec), Kind: EventStepStart, Step: 2},
			{At: at(11070 * msec), Kind: EventHolder, Node: "node1"},
			{At: at(11075 * msec), Kind: EventStepEnd, Step: 2, OK: true},
		}}
	for d := time.Duration(0); d < 15*time.Second; d += 20 * msec {
		pr := ProbeResult{At: at(d), Latency: msec, Status: 200}
		if d == 1020*msec || d == 11060*msec {
			pr = ProbeResult{At: at(d), Latency: msec, Err: "refused"}
		}
		o.Probes = append(o.Probes, pr)
	}
	rep := Evaluate(p, o)
	if rep.Verdict != VerdictPassed {
		t.Fatalf("%s", rep.Text(nil))
	}
	if c := find(t, rep.Expectations, "expectations[1]"); c.Measured != "40ms" || c.What != "holder becomes node1 within 100ms of steps[2]" {
		t.Errorf("%+v", c)
	}
	if c := find(t, rep.Expectations, "expectations[2]"); c.Measured != "20ms" {
		t.Errorf("%+v", c)
	}
	if rep.Figures.OutageMs != 10041 {
		t.Errorf("outage (first to last) = %v", rep.Figures.OutageMs)
	}
}

func TestReport_JSONRoundTrip(t *testing.T) {
	p := crashPlan(t, crashRunbook)
	prev := Evaluate(p, timeline(1460*msec, 1560*msec))
	rep := Evaluate(p, timeline(1460*msec, 1600*msec))
	b, err := rep.JSON(prev)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.Text(prev) != rep.Text(prev) || back.Markdown(nil) != rep.Markdown(nil) {
		t.Errorf("round trip changed the report:\n%s\nwant\n%s", back.Text(prev), rep.Text(prev))
	}
	if _, err := ReadReport([]byte("{")); err == nil {
		t.Error("bad JSON read")
	}
}
