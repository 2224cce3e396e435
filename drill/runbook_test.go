package drill

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// minimal is a valid runbook; bad ones below are it with one thing
// changed, so that each case has exactly one error to find.
const minimal = `version: 1
name: t
description: a test drill
steady_state:
  probe:
    url: http://${vip}:8080/health
steps:
  - fault: agent-crash
    target: active
    duration: 10s
  - wait:
      until: {holder: standby}
      timeout: 5s
expectations:
  - holder-becomes: standby
    within: 1s
  - outage-max: 1s
time_limit: 1m
`

func TestParse_MinimalGetsDefaults(t *testing.T) {
	rb, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	p := rb.SteadyState.Probe
	if p.Method != "GET" || p.Interval != 20*time.Millisecond || p.Timeout != 200*time.Millisecond || p.ExpectStatus != 200 || p.From != TargetWitness {
		t.Errorf("probe defaults: %+v", p)
	}
	if !rb.SteadyState.ARPWatch || rb.SteadyState.ARPInterval != DefaultARPInterval {
		t.Errorf("arp defaults: %+v", rb.SteadyState)
	}
	if fmt.Sprint(rb.Preconditions) != fmt.Sprint(AllPreconditions) {
		t.Errorf("preconditions = %v, want all", rb.Preconditions)
	}
	if rb.Abort != (Abort{SteadyStateLostFor: DefaultAbortLostFor, StandbyUnhealthy: true, QuorumLost: true}) {
		t.Errorf("abort defaults: %+v", rb.Abort)
	}
	if len(rb.Steps) != 2 || rb.Steps[0].Kind != StepFault || rb.Steps[0].Fault.Duration != 10*time.Second || rb.Steps[0].Line != 8 {
		t.Errorf("steps[0] = %+v", rb.Steps[0])
	}
	if w := rb.Steps[1].Wait; w == nil || w.Until == nil || w.Until.Holder != TargetStandby || w.Timeout != 5*time.Second {
		t.Errorf("steps[1].wait = %+v", w)
	}
	if rb.Expectations[0].Within != time.Second || rb.Expectations[1].Max != time.Second {
		t.Errorf("expectations = %+v", rb.Expectations)
	}
}

func TestParse_EmptyPreconditionsMeansNone(t *testing.T) {
	rb, err := Parse([]byte(minimal + "preconditions: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rb.Preconditions) != 0 {
		t.Errorf("preconditions = %v, want none", rb.Preconditions)
	}
}

func TestParse_WaitForms(t *testing.T) {
	for _, w := range []string{"wait: 5s", "wait: {for: 5s}"} {
		src := strings.Replace(minimal, "  - wait:\n      until: {holder: standby}\n      timeout: 5s\n", "  - "+w+"\n", 1)
		rb, err := Parse([]byte(src))
		if err != nil {
			t.Fatalf("%s: %v", w, err)
		}
		if got := rb.Steps[1].Wait; got.For != 5*time.Second || got.Until != nil {
			t.Errorf("%s: %+v", w, got)
		}
	}
}

// replace returns minimal with old replaced by new, failing if old is not
// in it (so a case never silently tests the valid runbook).
func replace(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(minimal, old) {
		t.Fatalf("%q not in the minimal runbook", old)
	}
	return strings.Replace(minimal, old, new, 1)
}

func TestParse_BadRunbooks(t *testing.T) {
	cases := []struct {
		name     string
		src      func(t *testing.T) string
		line     int
		path     string
		contains string
	}{
		{"bad duration", func(t *testing.T) string { return replace(t, "duration: 10s", "duration: 5x") }, 10, "steps[0].duration", `"5x" is not a duration`},
		{"duration without unit", func(t *testing.T) string { return replace(t, "duration: 10s", "duration: 30") }, 10, "steps[0].duration", "give a unit"},
		{"duration too long", func(t *testing.T) string { return replace(t, "duration: 10s", "duration: 11m") }, 10, "steps[0].duration", "longer than the most allowed, 10m0s"},
		{"duration zero", func(t *testing.T) string { return replace(t, "duration: 10s", "duration: 0s") }, 10, "steps[0].duration", "must be > 0"},
		{"duration missing", func(t *testing.T) string { return replace(t, "    duration: 10s\n", "") }, 8, "steps[0].duration", "required"},
		{"unknown top key", func(t *testing.T) string { return minimal + "colour: red\n" }, 19, "colour", "unknown key"},
		{"unknown probe key", func(t *testing.T) string {
			return replace(t, "    url: http://${vip}:8080/health\n", "    url: http://${vip}:8080/health\n    retries: 3\n")
		}, 7, "steady_state.probe.retries", "unknown key"},
		{"unknown step key", func(t *testing.T) string {
			return replace(t, "    target: active\n", "    target: active\n    force: true\n")
		}, 10, "steps[0].force", "unknown key"},
		{"repeated key", func(t *testing.T) string { return replace(t, "name: t\n", "name: t\nname: u\n") }, 3, "name", "repeated key (first on line 2)"},
		{"version missing", func(t *testing.T) string { return replace(t, "version: 1\n", "") }, 1, "version", "required"},
		{"version 2", func(t *testing.T) string { return replace(t, "version: 1", "version: 2") }, 1, "version", "2 is not supported"},
		{"version a string", func(t *testing.T) string { return replace(t, "version: 1", "version: one") }, 1, "version", "not a whole number"},
		{"name bad", func(t *testing.T) string { return replace(t, "name: t", "name: Big Name") }, 2, "name", "lowercase"},
		{"description missing", func(t *testing.T) string { return replace(t, "description: a test drill\n", "") }, 1, "description", "required"},
		{"time_limit missing", func(t *testing.T) string { return replace(t, "time_limit: 1m\n", "") }, 1, "time_limit", "required"},
		{"time_limit too long", func(t *testing.T) string { return replace(t, "time_limit: 1m", "time_limit: 2h") }, 18, "time_limit", "longer than the most allowed"},
		{"faults exceed time_limit", func(t *testing.T) string { return replace(t, "time_limit: 1m", "time_limit: 9s") }, 18, "time_limit", "faults' durations together (10s)"},
		{"waits exceed time_limit", func(t *testing.T) string { return replace(t, "timeout: 5s", "timeout: 61s") }, 18, "time_limit", "the run can take: 1m1s"},
		{"url not http", func(t *testing.T) string { return replace(t, "url: http://${vip}:8080/health", "url: ftp://x/") }, 6, "steady_state.probe.url", "http:// or https://"},
		{"url missing", func(t *testing.T) string {
			return replace(t, "    url: http://${vip}:8080/health\n", "    method: GET\n")
		}, 6, "steady_state.probe.url", "required"},
		{"method bad", func(t *testing.T) string {
			return replace(t, "    url: http://${vip}:8080/health\n", "    url: http://${vip}:8080/health\n    method: DELETE\n")
		}, 7, "steady_state.probe.method", "not one of GET"},
		{"body with GET", func(t *testing.T) string {
			return replace(t, "    url: http://${vip}:8080/health\n", "    url: http://${vip}:8080/health\n    body: '{}'\n")
		}, 7, "steady_state.probe.body", "needs method POST or PUT"},
		{"expect_status out of range", func(t *testing.T) string {
			return replace(t, "    url: http://${vip}:8080/health\n", "    url: http://${vip}:8080/health\n    expect_status: 999\n")
		}, 7, "steady_state.probe.expect_status", "out of range"},
		{"interval too short", func(t *testing.T) string {
			return replace(t, "    url: http://${vip}:8080/health\n", "    url: http://${vip}:8080/health\n    interval: 1ms\n")
		}, 7, "steady_state.probe.interval", "shorter than 5ms"},
		{"from bad", func(t *testing.T) string {
			return replace(t, "    url: http://${vip}:8080/health\n", "    url: http://${vip}:8080/health\n    from: 'no such/node'\n")
		}, 7, "steady_state.probe.from", "not active, standby, witness or a node name"},
		{"arp_watch not bool", func(t *testing.T) string {
			return replace(t, "  probe:\n", "  arp_watch: maybe\n  probe:\n")
		}, 5, "steady_state.arp_watch", "not true or false"},
		{"steady_state missing", func(t *testing.T) string {
			return replace(t, "steady_state:\n  probe:\n    url: http://${vip}:8080/health\n", "")
		}, 1, "steady_state", "required"},
		{"unknown precondition", func(t *testing.T) string { return minimal + "preconditions: [quorum, sunny]\n" }, 19, "preconditions[1]", `unknown precondition "sunny"`},
		{"precondition twice", func(t *testing.T) string { return minimal + "preconditions: [quorum, quorum]\n" }, 19, "preconditions[1]", "listed twice"},
		{"unknown fault", func(t *testing.T) string { return replace(t, "fault: agent-crash", "fault: meteor") }, 8, "steps[0].fault", `unknown fault "meteor"`},
		{"target missing", func(t *testing.T) string { return replace(t, "    target: active\n", "") }, 8, "steps[0].target", "required"},
		{"gpu fault on witness", func(t *testing.T) string {
			return replace(t, "fault: agent-crash\n    target: active", "fault: gpu-fail\n    target: witness")
		}, 9, "steps[0].target", "needs a GPU node"},
		{"partition without from", func(t *testing.T) string { return replace(t, "fault: agent-crash", "fault: partition") }, 8, "steps[0].from", "required"},
		{"partition from itself", func(t *testing.T) string {
			return replace(t, "fault: agent-crash\n    target: active\n", "fault: partition\n    target: active\n    from: [standby, active]\n")
		}, 10, "steps[0].from[1]", "the target itself"},
		{"partition from not a list", func(t *testing.T) string {
			return replace(t, "fault: agent-crash\n    target: active\n", "fault: partition\n    target: active\n    from: standby\n")
		}, 10, "steps[0].from", "want a list"},
		{"from on another fault", func(t *testing.T) string {
			return replace(t, "    target: active\n", "    target: active\n    from: [standby]\n")
		}, 10, "steps[0].from", "only a partition fault takes from"},
		{"planned-failover without to", func(t *testing.T) string {
			return replace(t, "fault: agent-crash\n    target: active\n", "fault: planned-failover\n")
		}, 8, "steps[0].to", "required"},
		{"planned-failover with target", func(t *testing.T) string {
			return replace(t, "fault: agent-crash\n", "fault: planned-failover\n    to: standby\n")
		}, 10, "steps[0].target", "acts on the active node"},
		{"planned-failover to witness", func(t *testing.T) string {
			return replace(t, "fault: agent-crash\n    target: active\n", "fault: planned-failover\n    to: witness\n")
		}, 9, "steps[0].to", "cannot take the role"},
		{"check name bad", func(t *testing.T) string {
			return replace(t, "fault: agent-crash\n    target: active\n", "fault: check-fail\n    target: active\n    check: 'a b'\n")
		}, 10, "steps[0].check", "not a check name"},
		{"service-errors status", func(t *testing.T) string {
			return replace(t, "fault: agent-crash\n    target: active\n", "fault: service-errors\n    target: active\n    status: 200\n")
		}, 10, "steps[0].status", "out of range (400-599)"},
		{"step with two kinds", func(t *testing.T) string {
			return replace(t, "    duration: 10s\n", "    duration: 10s\n    wait: 1s\n")
		}, 8, "steps[0]", "not fault and wait"},
		{"step with no kind", func(t *testing.T) string { return replace(t, "fault: agent-crash", "falt: agent-crash") }, 8, "steps[0]", "needs one of fault, wait or expect"},
		{"step not a mapping", func(t *testing.T) string {
			return replace(t, "  - wait:\n      until: {holder: standby}\n      timeout: 5s\n", "  - pause\n")
		}, 11, "steps[1]", "want a mapping"},
		{"wait until without timeout", func(t *testing.T) string { return replace(t, "      timeout: 5s\n", "") }, 12, "steps[1].wait.timeout", "required"},
		{"wait with for and until", func(t *testing.T) string {
			return replace(t, "      timeout: 5s\n", "      timeout: 5s\n      for: 1s\n")
		}, 12, "steps[1].wait.until", "not both"},
		{"wait empty", func(t *testing.T) string {
			return replace(t, "  - wait:\n      until: {holder: standby}\n      timeout: 5s\n", "  - wait: {}\n")
		}, 11, "steps[1].wait", "needs a duration"},
		{"wait bad duration", func(t *testing.T) string {
			return replace(t, "  - wait:\n      until: {holder: standby}\n      timeout: 5s\n", "  - wait: soon\n")
		}, 11, "steps[1].wait", `"soon" is not a duration`},
		{"condition unknown key", func(t *testing.T) string { return replace(t, "{holder: standby}", "{leader: standby}") }, 12, "steps[1].wait.until.leader", "unknown key"},
		{"condition empty", func(t *testing.T) string { return replace(t, "{holder: standby}", "{}") }, 12, "steps[1].wait.until", "at least one of"},
		{"condition holder witness", func(t *testing.T) string { return replace(t, "{holder: standby}", "{holder: witness}") }, 12, "steps[1].wait.until.holder", "never holds"},
		{"expect step", func(t *testing.T) string {
			return replace(t, "  - wait:\n      until: {holder: standby}\n      timeout: 5s\n", "  - expect: {steady_state: perhaps}\n")
		}, 11, "steps[1].expect.steady_state", "not true or false"},
		{"no fault", func(t *testing.T) string {
			return replace(t, "  - fault: agent-crash\n    target: active\n    duration: 10s\n", "")
		}, 8, "steps", "no fault"},
		{"steps empty", func(t *testing.T) string {
			return replace(t, "  - fault: agent-crash\n    target: active\n    duration: 10s\n  - wait:\n      until: {holder: standby}\n      timeout: 5s\n", "  []\n")
		}, 8, "steps", "at least one step"},
		{"unknown expectation", func(t *testing.T) string { return replace(t, "  - outage-max: 1s\n", "  - outage-maximum: 1s\n") }, 17, "expectations[1].outage-maximum", "unknown expectation"},
		{"two expectations in one item", func(t *testing.T) string {
			return replace(t, "  - outage-max: 1s\n", "  - outage-max: 1s\n    failed-requests-max: 3\n")
		}, 17, "expectations[1]", "one expectation per item"},
		{"holder-becomes without within", func(t *testing.T) string { return replace(t, "    within: 1s\n", "") }, 15, "expectations[0].within", "required"},
		{"within on another expectation", func(t *testing.T) string {
			return replace(t, "  - outage-max: 1s\n", "  - outage-max: 1s\n    within: 1s\n")
		}, 18, "expectations[1].within", "unknown key"},
		{"within longer than time_limit", func(t *testing.T) string { return replace(t, "within: 1s", "within: 2m") }, 16, "expectations[0].within", "longer than time_limit"},
		{"after out of range", func(t *testing.T) string { return replace(t, "    within: 1s\n", "    within: 1s\n    after: 5\n") }, 17, "expectations[0].after", "steps[5] does not exist"},
		{"after not a fault", func(t *testing.T) string { return replace(t, "    within: 1s\n", "    within: 1s\n    after: 1\n") }, 17, "expectations[0].after", "steps[1] is a wait, not a fault"},
		{"after not a number", func(t *testing.T) string { return replace(t, "    within: 1s\n", "    within: 1s\n    after: first\n") }, 17, "expectations[0].after", "not a whole number"},
		{"outage-max bad", func(t *testing.T) string { return replace(t, "outage-max: 1s", "outage-max: fast") }, 17, "expectations[1].outage-max", `"fast" is not a duration`},
		{"failed-requests-max negative", func(t *testing.T) string {
			return replace(t, "  - outage-max: 1s\n", "  - failed-requests-max: -1\n")
		}, 17, "expectations[1].failed-requests-max", "out of range"},
		{"never-two-holders false", func(t *testing.T) string {
			return replace(t, "  - outage-max: 1s\n", "  - never-two-holders: false\n")
		}, 17, "expectations[1].never-two-holders", "write true"},
		{"never-two-holders without arp", func(t *testing.T) string {
			return replace(t, "  - outage-max: 1s\n", "  - never-two-holders: true\n") + "" // arp_watch set below
		}, 0, "", ""},
		{"history-reason bad regexp", func(t *testing.T) string {
			return replace(t, "  - outage-max: 1s\n", "  - history-reason: 'holder-lost:(node1'\n")
		}, 17, "expectations[1].history-reason", "not a regular expression: missing closing )"},
		{"expectations empty", func(t *testing.T) string {
			return replace(t, "  - holder-becomes: standby\n    within: 1s\n  - outage-max: 1s\n", "  []\n")
		}, 15, "expectations", "at least one expectation"},
		{"abort unknown key", func(t *testing.T) string { return minimal + "abort:\n  operator_bored: true\n" }, 20, "abort.operator_bored", "unknown key"},
		{"abort lost_for too long", func(t *testing.T) string { return minimal + "abort:\n  steady_state_lost_for: 2m\n" }, 20, "abort.steady_state_lost_for", "longer than time_limit"},
		{"alias", func(t *testing.T) string {
			return replace(t, "    duration: 10s\n", "    duration: &d 10s\n") + "abort: {steady_state_lost_for: *d}\n"
		}, 19, "", "aliases (*d) are not allowed"},
		{"not a mapping", func(t *testing.T) string { return "- a\n- b\n" }, 1, "", "want a mapping"},
		{"two documents", func(t *testing.T) string { return minimal + "---\nversion: 1\n" }, 19, "", "more than one YAML document"},
		{"syntax error", func(t *testing.T) string { return replace(t, "name: t\n", "name: [t\n") }, 0, "", "not YAML"},
		{"empty", func(t *testing.T) string { return "" }, 0, "", "empty runbook"},
		{"key not a word", func(t *testing.T) string { return minimal + "[a]: b\n" }, 19, "", "a key must be a plain word"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src(t)
			if tc.name == "never-two-holders without arp" {
				src = strings.Replace(src, "  probe:\n", "  arp_watch: false\n  probe:\n", 1)
				tc.line, tc.path, tc.contains = 18, "expectations[1].never-two-holders", "needs steady_state.arp_watch: true"
			}
			rb, err := Parse([]byte(src))
			if err == nil {
				t.Fatalf("parsed: %+v", rb)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not a *FieldError", err, err)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %T is not Errors", err)
			}
			var match *FieldError
			for _, e := range es {
				if e.Path == tc.path && strings.Contains(e.Msg, tc.contains) {
					match = e
					break
				}
			}
			if match == nil {
				t.Fatalf("no error at %q containing %q in:\n%v", tc.path, tc.contains, err)
			}
			if tc.line != 0 && match.Line != tc.line {
				t.Errorf("line %d, want %d: %v", match.Line, tc.line, match)
			}
			want := tc.path + ": "
			if tc.path == "" {
				want = ""
			}
			if tc.line != 0 {
				want = fmt.Sprintf("line %d: %s", tc.line, want)
			}
			if !strings.HasPrefix(match.Error(), want) {
				t.Errorf("error %q does not start with %q", match.Error(), want)
			}
		})
	}
}

func TestParse_ReportsEveryError(t *testing.T) {
	src := strings.Replace(strings.Replace(minimal, "duration: 10s", "duration: 5x", 1), "outage-max: 1s", "outage-max: 1y", 1)
	_, err := Parse([]byte(src))
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
	if got := err.Error(); got != "line 10: steps[0].duration: \"5x\" is not a duration (for example 500ms, 30s, 2m)\nline 17: expectations[1].outage-max: \"1y\" is not a duration (for example 500ms, 30s, 2m)" {
		t.Errorf("error text:\n%s", got)
	}
}

func TestParse_TooLarge(t *testing.T) {
	_, err := Parse(make([]byte, MaxSize+1))
	if err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("err = %v", err)
	}
}

func TestWorstCase_FaultsRunInTheBackground(t *testing.T) {
	rb, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	// agent-crash 10s from t=0, wait up to 5s: the fault's end is last.
	if got := rb.WorstCase(); got != 10*time.Second {
		t.Errorf("WorstCase = %s, want 10s", got)
	}
}
